"""An OpenAI-compatible HTTP server for a llmnotes GPT, and the chat page that talks to it.

``create_app(model, tokenizer, model_name=...)`` returns a FastAPI app with:

========================  =====================================================================
``POST /v1/completions``       text in, text out (OpenAI's completions API), optional streaming
``POST /v1/chat/completions``  messages in, a reply out, rendered with a chat template
``GET /v1/models``             the one model served
``GET /health``                200 once the model is loaded and warmed up, 503 before
``GET /metrics``               Prometheus counters and histograms
``GET /``                      the chat page (``llmnotes/assets/web``)
========================  =====================================================================

Streaming uses server-sent events, as OpenAI's API does: one ``data: {json}\\n\\n`` event per
piece of text, then ``data: [DONE]\\n\\n``. The official ``openai`` client works unchanged.

**Concurrency: serialised by default.** Each request's decode loop runs in a worker thread (the
event loop stays free to accept, queue and stream), and at most ``max_concurrent`` loops run at
once (default 1) while up to ``max_queue`` requests wait. A batch-1 decode step on a small
model is dominated by per-step overhead, so one loop at a time loses little and keeps latency
predictable; real engines (vLLM, TGI) instead batch many requests into every step ("continuous
batching"). ``max_concurrent > 1`` runs several loops in parallel threads.

Run it with ``llmnotes serve`` (see :func:`add_serve_arguments`). The pieces live beside it:
:mod:`llmnotes.serve.protocol` (request validation, chat templates, response shapes),
:mod:`llmnotes.serve.engine` (the decode loop, streaming text, prefix and response caches),
:mod:`llmnotes.serve.limits` (rate limits, the bounded queue) and :mod:`llmnotes.serve.metrics`
(Prometheus metrics, the per-request log line).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Sequence

try:
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
    from fastapi.staticfiles import StaticFiles
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError("llmnotes.serve needs FastAPI, uvicorn and prometheus-client: "
                      "pip install 'llmnotes[serve]'") from err

from llmnotes.serve.engine import Delta, Engine, ResponseCache, Result
from llmnotes.serve.limits import Admission, QueueFull, QueueTimeout, RateLimiter
from llmnotes.serve.metrics import RequestRecord, ServeMetrics
from llmnotes.prompting import chat_template_for
from llmnotes.serve.protocol import (APIError, GenerationRequest, ResponseWriter, SamplingParams,
                                     parse_chat_request, parse_completion_request, sse)
from llmnotes.tokenizer import encode_text, eos_id_of

WEB_DIR = Path(__file__).resolve().parents[1] / "assets" / "web"
log = logging.getLogger("llmnotes.serve")


@dataclass
class ServeConfig:
    """The server's limits and switches (every ``create_app`` keyword beyond the first three).

    Attributes:
        max_tokens_limit: largest ``max_tokens`` a request may ask for (None: the context length).
        default_max_tokens: ``max_tokens`` of a completion request that gives none (OpenAI: 16).
        chat_max_tokens: ``max_tokens`` of a chat request that gives none (capped by the context).
        max_prompt_chars: longest prompt (or all messages together), in characters.
        max_body_bytes: largest request body; larger ones get 413.
        max_concurrent: generations running at once (each in its own worker thread).
        max_queue: requests allowed to wait for a generation slot; more get 503.
        queue_timeout: seconds a request may wait for a slot before it gets 503.
        request_timeout: seconds a generation may run before it is stopped.
        rate_limit: requests per second per API key (or client address); None disables it.
        rate_burst: requests a key may make at once before the rate applies.
        response_cache_size: greedy answers kept for identical requests (0 disables the cache).
        prefix_cache: reuse the KV cache of the previous request's common prompt prefix.
        body_timeout: seconds a client may take to send its request body; a stalled upload
            gets 408 and its connection is closed instead of being held open forever.
        auth_failure_rate, auth_failure_burst: with an API key set, failed key checks allowed
            per second (and at once) per client address; more get 429, so keys cannot be guessed
            at speed. Applies whether or not ``rate_limit`` is set.
    """

    max_tokens_limit: int | None = None
    default_max_tokens: int = 16
    chat_max_tokens: int = 128
    max_prompt_chars: int = 20_000
    max_body_bytes: int = 1_000_000
    max_concurrent: int = 1
    max_queue: int = 64
    queue_timeout: float = 30.0
    request_timeout: float = 120.0
    rate_limit: float | None = None
    rate_burst: int = 20
    response_cache_size: int = 256
    prefix_cache: bool = True
    body_timeout: float = 10.0
    auth_failure_rate: float = 1.0
    auth_failure_burst: int = 10

    def __post_init__(self) -> None:
        for name in ("default_max_tokens", "chat_max_tokens", "max_prompt_chars", "max_body_bytes",
                     "max_concurrent", "rate_burst", "auth_failure_burst"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("queue_timeout", "request_timeout", "body_timeout", "auth_failure_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if self.max_tokens_limit is not None and (not isinstance(self.max_tokens_limit, int)
                                                  or self.max_tokens_limit < 1):
            raise ValueError(f"max_tokens_limit must be an integer >= 1 or None, got {self.max_tokens_limit!r}")
        if self.rate_limit is not None and not (isinstance(self.rate_limit, (int, float)) and self.rate_limit > 0):
            raise ValueError(f"rate_limit must be a positive number of requests per second or None, "
                             f"got {self.rate_limit!r}")
        if isinstance(self.max_queue, bool) or not isinstance(self.max_queue, int) or self.max_queue < 0:
            raise ValueError(f"max_queue must be an integer >= 0, got {self.max_queue!r}")
        if isinstance(self.response_cache_size, bool) or not isinstance(self.response_cache_size, int) \
                or self.response_cache_size < 0:
            raise ValueError(f"response_cache_size must be an integer >= 0, got {self.response_cache_size!r}")


def create_app(model: Any, tokenizer: Any, *, model_name: str = "llmnotes",
               api_key: str | Sequence[str] | None = None,
               chat_template: Callable[[list[dict[str, str]]], str] | None = None,
               chat_stop: Sequence[str] | None = None, eos_id: int | None = None,
               **options: Any):
    """Build the FastAPI app serving ``model`` (a :class:`llmnotes.GPT`) with ``tokenizer``.

    Args:
        model_name: the name clients pass as ``model`` and ``/v1/models`` lists.
        api_key: a key (or several) clients must send as ``Authorization: Bearer <key>``;
            None serves without authentication (fine on 127.0.0.1, not on a network).
        chat_template: messages -> prompt; default: the tokenizer's own
            ``apply_chat_template`` if it has one, else :class:`llmnotes.prompting.ChatTemplate`.
        chat_stop: stop strings added to every chat request (default: the template's).
        eos_id: the end-of-text token id (default: the tokenizer's ``<|endoftext|>``).
        **options: :class:`ServeConfig` fields (limits, queue, rate limit, caches).
    """
    if not callable(getattr(model, "make_cache", None)) or not hasattr(getattr(model, "config", None), "block_size"):
        raise TypeError(f"model must be a llmnotes GPT (with .config and .make_cache), got {type(model).__name__}")
    if not (callable(getattr(tokenizer, "encode", None)) and callable(getattr(tokenizer, "decode", None))):
        raise TypeError(f"tokenizer must have encode(str) and decode(ids), got {type(tokenizer).__name__}")
    known = {f.name for f in fields(ServeConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"create_app() got unknown option(s) {unknown}; known: {sorted(known)}")
    cfg = ServeConfig(**options)
    if not isinstance(model_name, str) or not model_name:
        raise ValueError(f"model_name must be a non-empty string, got {model_name!r}")
    keys = [api_key] if isinstance(api_key, str) else list(api_key or [])
    if any(not isinstance(k, str) or not k for k in keys):
        raise ValueError("api_key must be a non-empty string (or a list of them) or None")
    block_size = model.config.block_size
    max_tokens_limit = min(cfg.max_tokens_limit or block_size, block_size - 1)
    if chat_template is None:
        chat_template, default_stop = chat_template_for(tokenizer)
        chat_stop = default_stop if chat_stop is None else chat_stop
    chat_stop = list(chat_stop or [])

    model.eval()
    engine = Engine(model, tokenizer, eos_id=eos_id_of(tokenizer) if eos_id is None else eos_id,
                    prefix_cache=cfg.prefix_cache)
    responses = ResponseCache(cfg.response_cache_size)
    admission = Admission(cfg.max_concurrent, cfg.max_queue)
    limiter = RateLimiter(cfg.rate_limit, cfg.rate_burst) if cfg.rate_limit else None
    # Failed key checks are limited per address on their own, so guessing is slow even when no
    # request rate limit is configured.
    auth_failures = RateLimiter(cfg.auth_failure_rate, cfg.auth_failure_burst) if keys else None
    metrics = ServeMetrics()
    metrics.active.set_function(lambda: admission.active)
    metrics.queued.set_function(lambda: admission.waiting)
    executor = ThreadPoolExecutor(max_workers=cfg.max_concurrent, thread_name_prefix="llmnotes-generate")
    state = {"ready": False, "seconds_per_request": 1.0}
    background: set[asyncio.Task] = set()

    @asynccontextmanager
    async def lifespan(app):
        # Warm up (first-call allocations, lazy imports) before /health says we are ready.
        await asyncio.get_running_loop().run_in_executor(
            executor, lambda: engine.generate([0], SamplingParams(max_tokens=1, temperature=0.0)))
        state["ready"] = True
        yield
        state["ready"] = False
        executor.shutdown(wait=False, cancel_futures=True)

    # /openapi.json is served below, behind the API key like every route but / and /health.
    app = FastAPI(title="llmnotes", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.engine, app.state.config, app.state.metrics = engine, cfg, metrics
    app.state.response_cache, app.state.admission = responses, admission

    # -- helpers ---------------------------------------------------------------------------

    def error_response(err: APIError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    def authorize(request: Request) -> str:
        """Check the bearer key; return the rate-limit identity (the key's hash, or the address)."""
        if not keys:
            return "addr:" + (request.client.host if request.client else "unknown")
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        for k in keys:
            # compare_digest takes the same time wherever the strings differ (no timing oracle).
            if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), k.encode()):
                return "key:" + hashlib.sha256(k.encode()).hexdigest()[:16]
        what = "no API key was sent" if not header else "the API key is not valid"
        raise APIError(401, f"Unauthorized: {what}. Send 'Authorization: Bearer <key>' with the key "
                       "the server was started with (--api-key).", "invalid_request_error", None,
                       "invalid_api_key", {"WWW-Authenticate": "Bearer"})

    def rate_limited(wait: float, what: str) -> APIError:
        retry = str(max(1, round(wait + 0.5)))
        return APIError(429, f"Rate limit reached: {what}. Retry after {retry} s.", "requests", None,
                        "rate_limit_exceeded", {"Retry-After": retry})

    def gate(request: Request) -> str:
        """Authorize and rate-limit a /v1 request; return its identity. A failed key check counts
        against the client's address, so wrong keys are throttled (429) like requests are."""
        address = "addr:" + (request.client.host if request.client else "unknown")
        try:
            identity = authorize(request)
        except APIError:
            for lim, what in ((auth_failures, f"at most {cfg.auth_failure_burst} failed API key checks "
                               f"at once, then {cfg.auth_failure_rate:g}/s, per address"),
                              (limiter, f"at most {cfg.rate_limit} requests/s per client")):
                wait = lim.check(address) if lim is not None else 0.0
                if wait > 0:
                    raise rate_limited(wait, what) from None
            raise
        if limiter is not None:
            wait = limiter.check(identity)
            if wait > 0:
                raise rate_limited(wait, f"at most {cfg.rate_limit:g} requests/s (burst {cfg.rate_burst}) per key")
        return identity

    async def read_body(request: Request, limit: int) -> bytes:
        too_big = APIError(413, f"The request body is larger than the limit of {limit} bytes; "
                           "send a shorter prompt", "invalid_request_error", None, "request_too_large")
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and len(length) < 20 and int(length) > limit:
            raise too_big
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_big
        return bytes(body)

    async def read_json(request: Request) -> Any:
        try:
            body = await asyncio.wait_for(read_body(request, cfg.max_body_bytes), cfg.body_timeout)
        except asyncio.TimeoutError:
            raise APIError(408, f"The request body did not arrive within {cfg.body_timeout:g} s; send "
                           "it in one go", "invalid_request_error", None, "request_timeout",
                           {"Connection": "close"}) from None
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise APIError(400, f"The request body is not valid JSON ({err}); send a JSON object",
                           "invalid_request_error", None, "invalid_json") from None
        except RecursionError:
            raise APIError(400, "The request body is nested too deeply; send a flat JSON object",
                           "invalid_request_error", None, "invalid_json") from None
        except ValueError as err:  # e.g. an integer with more digits than Python converts
            raise APIError(400, f"The request body holds a value that cannot be read ({str(err).split(';')[0]})",
                           "invalid_request_error", None, "invalid_json") from None

    def prompt_ids(req: GenerationRequest) -> list[int]:
        if req.kind == "chat":
            try:
                text = chat_template(req.messages)
            except ValueError as err:  # e.g. a role marker that would forge a turn
                raise APIError(400, str(err), "invalid_request_error", "messages", "invalid_value") from None
            ids = encode_text(tokenizer, text)  # user text: no special tokens
            req.params.stop = list(dict.fromkeys(req.params.stop + chat_stop))[:8]
        elif isinstance(req.prompt, str):
            ids = encode_text(tokenizer, req.prompt)
        else:
            ids = list(req.prompt)
            bad = [t for t in ids if not 0 <= t < engine.vocab_size]
            if bad:
                raise APIError(400, f"prompt token ids must be in [0, {engine.vocab_size}), got {bad[0]}",
                               "invalid_request_error", "prompt", "invalid_value")
        if not ids:
            if engine.eos_id is None:
                raise APIError(400, "prompt is empty; send at least one character",
                               "invalid_request_error", "prompt", "invalid_value")
            ids = [engine.eos_id]  # an empty prompt starts from end-of-text, as GPT-2 does
        room = block_size - len(ids)
        if req.kind == "chat" and not req.max_tokens_given:
            req.params.max_tokens = max(1, min(cfg.chat_max_tokens, room, max_tokens_limit))
        if len(ids) + req.params.max_tokens > block_size:
            param = "messages" if req.kind == "chat" else "prompt"
            raise APIError(400, f"This model's maximum context length is {block_size} tokens; the "
                           f"prompt has {len(ids)} and max_tokens asks for {req.params.max_tokens}. "
                           "Shorten the prompt or lower max_tokens.", "invalid_request_error", param,
                           "context_length_exceeded")
        return ids

    # -- generation --------------------------------------------------------------------------

    def start_generation(req: GenerationRequest, rec: RequestRecord, ids: list[int]):
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
                    executor, engine.generate, ids, req.params, on_delta, cancel,
                    time.monotonic() + cfg.request_timeout)
                state["seconds_per_request"] = 0.8 * state["seconds_per_request"] + 0.2 * (time.monotonic() - t)
                queue.put_nowait(("done", result))
                return result
            except BaseException as err:
                queue.put_nowait(("error", err))
                raise
            finally:
                await admission.release()  # only once the thread is really done with the model

        task = asyncio.create_task(run())
        background.add(task)
        task.add_done_callback(background.discard)
        return task, queue, cancel

    async def admit() -> None:
        retry = str(admission.retry_after(state["seconds_per_request"]))
        try:
            await admission.acquire(cfg.queue_timeout)
        except QueueFull:
            raise APIError(503, f"The server is busy: {admission.active} generations are running and "
                           f"{admission.waiting} are queued (the limit). Retry after {retry} s.",
                           "server_error", None, "queue_full", {"Retry-After": retry}) from None
        except QueueTimeout:
            raise APIError(503, f"No generation slot became free within {cfg.queue_timeout} s. Retry later.",
                           "server_error", None, "queue_timeout", {"Retry-After": retry}) from None

    async def admit_unless_gone(request: Request) -> bool:
        """Wait for a slot; give up (False) if the client disconnects while queued."""
        waiting = asyncio.ensure_future(admit())
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
                await admission.release()  # the slot came free just as we gave up: hand it on
                return False

    def timeout_error() -> APIError:
        return APIError(504, f"Generation stopped after request_timeout={cfg.request_timeout} s; "
                        "ask for fewer tokens", "server_error", None, "timeout")

    async def stream_events(req: GenerationRequest, rec: RequestRecord, out: ResponseWriter, source,
                            task: asyncio.Task | None, cancel: threading.Event | None):
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
                        yield sse(timeout_error().body())  # the openai client raises it as an APIError
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

    async def handle(request: Request, kind: str):
        endpoint = "/v1/chat/completions" if kind == "chat" else "/v1/completions"
        rec = RequestRecord(endpoint, metrics)
        try:
            gate(request)
            body = await read_json(request)
            parse = parse_chat_request if kind == "chat" else parse_completion_request
            req = parse(body, model_name=model_name, max_tokens_limit=max_tokens_limit,
                        max_prompt_chars=cfg.max_prompt_chars,
                        default_max_tokens=cfg.chat_max_tokens if kind == "chat" else cfg.default_max_tokens)
            ids = prompt_ids(req)
            rec.prompt_tokens = len(ids)
            out = ResponseWriter(kind, rec.id, rec.created, model_name, req.params.logprobs is not None)
            key = None
            if req.params.greedy and cfg.response_cache_size > 0:
                key = (tuple(ids), req.params.cache_key())
                cached = responses.get(key)
                metrics.response_cache.labels("hit" if cached else "miss").inc()
                if cached is not None:
                    rec.cached, rec.first_text_at = True, time.monotonic()
                    if req.stream:
                        return StreamingResponse(stream_events(req, rec, out, replay(cached), None, None),
                                                 media_type="text/event-stream", headers=SSE_HEADERS)
                    rec.account(cached)
                    rec.finish(200)
                    return answer(out, rec, cached)
            if not await admit_unless_gone(request):
                rec.finish(499, "client_disconnected")
                return Response(status_code=499)
            task, queue, cancel = start_generation(req, rec, ids)
            if key is not None:
                task.add_done_callback(lambda t: _store(t, key))
            if req.stream:
                return StreamingResponse(stream_events(req, rec, out, from_queue(queue), task, cancel),
                                         media_type="text/event-stream", headers=SSE_HEADERS)
            # Not streaming: wait for the worker, but notice a client that hangs up meanwhile.
            while not task.done():
                await asyncio.wait({task}, timeout=0.05)
                if not task.done() and await request.is_disconnected():
                    cancel.set()
                    await asyncio.wait({task})
                    rec.account(task.result())
                    rec.finish(499, "client_disconnected")
                    return Response(status_code=499)
            result = task.result()
            rec.account(result)
            if result.finish_reason == "timeout":
                raise timeout_error()
            rec.finish(200)
            return answer(out, rec, result)
        except APIError as err:
            rec.finish(err.status, err.code or err.type)
            return error_response(err)
        except Exception:  # a bug, not the client's fault: log it, answer in OpenAI's format
            log.exception("request %s failed", rec.id)
            rec.finish(500, "server_error")
            return error_response(APIError(500, f"The server failed while handling request {rec.id}; "
                                           "see the server log", "server_error", None, "server_error"))

    def _store(task: asyncio.Task, key: Any) -> None:
        if not task.cancelled() and task.exception() is None:
            result = task.result()
            if result.finish_reason in ("stop", "length"):
                responses.put(key, result)

    # -- routes ------------------------------------------------------------------------------

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await handle(request, "completion")

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await handle(request, "chat")

    @app.get("/v1/models")
    async def models(request: Request):
        try:
            gate(request)
        except APIError as err:
            return error_response(err)
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0,
                                            "owned_by": "llmnotes", "context_length": block_size}]}

    @app.get("/health")
    async def health():
        if not state["ready"]:
            return JSONResponse({"status": "loading"}, status_code=503)
        return {"status": "ok", "model": model_name}

    @app.get("/metrics")
    async def metrics_endpoint(request: Request):
        """Prometheus metrics; behind the API key when one is set (scrape with a bearer token)."""
        from prometheus_client import CONTENT_TYPE_LATEST

        try:
            gate(request)
        except APIError as err:
            return error_response(err)
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_schema(request: Request):
        """The API's OpenAPI schema; behind the API key when one is set."""
        try:
            gate(request)
        except APIError as err:
            return error_response(err)
        return JSONResponse(app.openapi())

    @app.get("/")
    async def index():
        return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    return app


# Tell proxies not to buffer (nginx reads X-Accel-Buffering) and browsers not to cache the stream.
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class BackgroundServer:
    """Serve an app with uvicorn from a background thread on a free port (tests, pages, benchmarks).

    Example::

        with BackgroundServer(create_app(model, tokenizer, model_name="nano")) as server:
            print(server.url)  # http://127.0.0.1:<port>
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> None:
        self.app, self.host, self.port, self.log_level = app, host, port, log_level
        self.url = ""

    def __enter__(self) -> "BackgroundServer":
        import uvicorn

        config = uvicorn.Config(self.app, host=self.host, port=self.port, log_level=self.log_level,
                                lifespan="on", timeout_graceful_shutdown=3)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="llmnotes-uvicorn", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start; see the log above")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.port, self.url = port, f"http://{self.host}:{port}"
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


# ---------------------------------------------------------------------------------------------
# Loading what ``llmnotes serve --model`` names (the command itself is llmnotes/cli/serve.py)
# ---------------------------------------------------------------------------------------------


def load_model(model_dir: str | None, device: str | None = None, quantize: str | None = None):
    """(model, tokenizer, name) for ``--model``: a shipped name or a model, quantized-model or adapter
    directory (``llmnotes.load_pretrained``); ``None`` is the shipped tiny model. ``quantize``
    (one of ``llmnotes.quantize.METHODS``) quantizes a float model after loading it."""
    from llmnotes.pretrained import SHIPPED, load_pretrained
    from llmnotes.utils import pick_device

    model, tokenizer = load_pretrained(model_dir or "tiny", device=pick_device(device))
    if model_dir is None or (isinstance(model_dir, str) and model_dir in SHIPPED):
        name = f"llmnotes-{model_dir or 'tiny'}"
    else:
        name = Path(model_dir).resolve().name
    if quantize is not None:
        from llmnotes.quantize import QuantizedEmbedding, QuantizedLinear, quantize_model

        if any(isinstance(m, (QuantizedLinear, QuantizedEmbedding)) for m in model.modules()):
            raise ValueError(f"--model {model_dir!r} is already quantized; drop --quantize")
        calibration = None
        if quantize in ("llm.int8", "gptq"):  # they look at real activations
            from llmnotes.quantize import corpus_ids

            calibration = corpus_ids(tokenizer, 1, 16, min(256, model.config.block_size))[1].to(model.device)
        model = quantize_model(model, quantize, calibration=calibration)
    return model.eval().prepare_for_decode(), tokenizer, name  # the server only decodes
