"""One generation behind the HTTP routes: a slot in the queue, a worker thread, and its text as events.

The route handlers of :mod:`llmnotes.serve.routes` call these with the server's
:class:`~llmnotes.serve.state.ServerState`:

* :func:`admit_unless_gone` waits for a generation slot (503 when the queue is full or the wait
  too long) and gives up if the client disconnects while queued;
* :func:`start_generation` runs the engine's decode loop in a worker thread; its text deltas
  arrive on an ``asyncio.Queue`` (the event loop stays free to accept and stream);
* :func:`stream_events` turns those deltas (or a cached result, :func:`replay`) into
  server-sent events, and logs the request once the worker has really stopped.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, Callable

from fastapi import Request
from fastapi.responses import JSONResponse

from llmnotes.serve.engine import Delta, Result
from llmnotes.serve.limits import QueueFull, QueueTimeout
from llmnotes.serve.metrics import RequestRecord
from llmnotes.serve.protocol import APIError, GenerationRequest, ResponseWriter, sse
from llmnotes.serve.state import ServerState

# Tell proxies not to buffer (nginx reads X-Accel-Buffering) and browsers not to cache the stream.
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
log = logging.getLogger("llmnotes.serve")


def start_generation(state: ServerState, req: GenerationRequest, rec: RequestRecord, ids: list[int]):
    """Run the decode loop in a worker thread; deltas arrive on the returned queue."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    cancel = threading.Event()

    def on_delta(d: Delta) -> None:  # called in the worker thread
        if rec.first_text_at is None and d.text:
            rec.first_text_at = time.monotonic()
        loop.call_soon_threadsafe(queue.put_nowait, ("delta", d))

    async def run() -> Result:
        t = time.monotonic()
        try:
            result = await loop.run_in_executor(
                state.executor, state.engine.generate, ids, req.params, on_delta, cancel,
                time.monotonic() + state.config.request_timeout)
            state.seconds_per_request = 0.8 * state.seconds_per_request + 0.2 * (time.monotonic() - t)
            queue.put_nowait(("done", result))
            return result
        except BaseException as err:
            queue.put_nowait(("error", err))
            raise
        finally:
            await state.admission.release()  # only once the thread is really done with the model

    task = asyncio.create_task(run())
    state.background.add(task)
    task.add_done_callback(state.background.discard)
    return task, queue, cancel


def store_when_done(state: ServerState, key: Any) -> Callable[[asyncio.Task], None]:
    """A done-callback that keeps a finished generation's result in the response cache."""
    def store(task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is None:
            result = task.result()
            if result.finish_reason in ("stop", "length"):
                state.responses.put(key, result)
    return store


async def admit(state: ServerState) -> None:
    admission, cfg = state.admission, state.config
    retry = str(admission.retry_after(state.seconds_per_request))
    try:
        await admission.acquire(cfg.queue_timeout)
    except QueueFull:
        raise APIError(503, f"The server is busy: {admission.active} generations are running and "
                       f"{admission.waiting} are queued (the limit). Retry after {retry} s.",
                       "server_error", None, "queue_full", {"Retry-After": retry}) from None
    except QueueTimeout:
        raise APIError(503, f"No generation slot became free within {cfg.queue_timeout} s. Retry later.",
                       "server_error", None, "queue_timeout", {"Retry-After": retry}) from None


async def admit_unless_gone(state: ServerState, request: Request) -> bool:
    """Wait for a slot; give up (False) if the client disconnects while queued."""
    waiting = asyncio.ensure_future(admit(state))
    while True:
        done, _ = await asyncio.wait({waiting}, timeout=0.1)
        if done:
            waiting.result()  # raises the 503 if the queue was full or the wait too long
            return True
        if await request.is_disconnected():
            waiting.cancel()
            try:
                await waiting
            except (asyncio.CancelledError, APIError):
                return False
            await state.admission.release()  # the slot came free just as we gave up: hand it on
            return False


def timeout_error(state: ServerState) -> APIError:
    return APIError(504, f"Generation stopped after request_timeout={state.config.request_timeout} s; "
                    "ask for fewer tokens", "server_error", None, "timeout")


async def stream_events(state: ServerState, req: GenerationRequest, rec: RequestRecord, out: ResponseWriter,
                        source, task: asyncio.Task | None, cancel: threading.Event | None):
    """SSE events from ``source``: an async iterator of ("delta"|"done"|"error", payload)."""
    status, code, offset = 200, None, 0
    try:
        if req.kind == "chat":
            yield out.chunk(None, role=True)
        async for kind, item in source:
            if kind == "delta":
                yield out.chunk(item.text, item.logprobs, offset=offset)
                offset += len(item.text)
            elif kind == "done":
                rec.account(item)
                if item.finish_reason == "timeout":
                    status, code = 504, "timeout"
                    yield sse(timeout_error(state).body())  # the openai client raises it as an APIError
                    return
                yield out.chunk(None if req.kind == "chat" else "", finish_reason=item.finish_reason)
                if req.include_usage:
                    yield out.usage_chunk(rec.usage())
                yield sse("[DONE]")
                return
            else:
                status, code = 500, "server_error"
                log.error("generation failed", exc_info=item)
                yield sse(APIError(500, "The server failed to generate", "server_error").body())
                return
    except (asyncio.CancelledError, GeneratorExit):
        status, code = 499, "client_disconnected"  # nginx's code for "client closed request"
        raise
    finally:
        if cancel is not None:
            cancel.set()  # a no-op after a normal end; stops the worker if the client left
        if task is not None and not task.done():
            # The client left mid-stream: log once the worker has stopped, with its real counts.
            def later(t: asyncio.Task) -> None:
                if not t.cancelled() and t.exception() is None:
                    rec.account(t.result())
                rec.finish(status, code)
            task.add_done_callback(later)
        else:
            rec.finish(status, code)


async def from_queue(queue: asyncio.Queue):
    while True:
        kind, item = await queue.get()
        yield kind, item
        if kind != "delta":
            return


async def replay(result: Result):
    for d in result.deltas:
        yield "delta", d
    yield "done", result


def answer(out: ResponseWriter, rec: RequestRecord, result: Result) -> JSONResponse:
    items = [t for d in result.deltas for t in d.logprobs]
    return JSONResponse(out.response(result.text, result.finish_reason, items, rec.usage()))
