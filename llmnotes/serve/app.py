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

Run it with ``llmnotes serve`` (``llmnotes/cli/serve.py``). This module wires the app together;
the pieces live beside it: :mod:`llmnotes.serve.routes` (one handler per route, testable one
at a time), :mod:`llmnotes.serve.state` (``ServeConfig`` and the ``ServerState`` every handler
shares), :mod:`llmnotes.serve.streaming` (the worker thread, the queue, server-sent events),
:mod:`llmnotes.serve.protocol` (request validation, response shapes),
:mod:`llmnotes.serve.engine` (the decode loop, streaming text, prefix and response caches),
:mod:`llmnotes.serve.limits` (rate limits, the bounded queue) and :mod:`llmnotes.serve.metrics`
(Prometheus metrics, the per-request log line).
"""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Callable, Sequence

try:
    from fastapi import FastAPI
    from fastapi.staticfiles import StaticFiles
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError("llmnotes.serve needs FastAPI, uvicorn and prometheus-client: "
                      "pip install 'llmnotes[serve]'") from err

from llmnotes.serve.protocol import SamplingParams
from llmnotes.serve.routes import WEB_DIR, add_routes
from llmnotes.serve.state import ServeConfig, ServerState
from llmnotes.serve.streaming import SSE_HEADERS

__all__ = ["create_app", "ServeConfig", "ServerState", "BackgroundServer", "load_model", "WEB_DIR",
           "SSE_HEADERS"]


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
    state = ServerState.create(model, tokenizer, model_name=model_name, api_key=api_key,
                               chat_template=chat_template, chat_stop=chat_stop, eos_id=eos_id, **options)
    # openapi_url=None: /openapi.json is one of the routes, behind the API key like every route
    # but / and /health.
    app = FastAPI(title="llmnotes", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.server = state
    app.state.engine, app.state.config, app.state.metrics = state.engine, state.config, state.metrics
    app.state.response_cache, app.state.admission = state.responses, state.admission
    add_routes(app, state)
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    return app


@asynccontextmanager
async def lifespan(app: FastAPI):
    """Warm up (first-call allocations, lazy imports) before ``/health`` says the server is ready."""
    state: ServerState = app.state.server
    await asyncio.get_running_loop().run_in_executor(
        state.executor, lambda: state.engine.generate([0], SamplingParams(max_tokens=1, temperature=0.0)))
    state.ready = True
    yield
    state.ready = False
    state.executor.shutdown(wait=False, cancel_futures=True)


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
        from llmnotes.quantize import QuantizedLayer, quantize_model

        if any(isinstance(m, QuantizedLayer) for m in model.modules()):
            raise ValueError(f"--model {model_dir!r} is already quantized; drop --quantize")
        calibration = None
        if quantize in ("llm.int8", "gptq"):  # they look at real activations
            from llmnotes.quantize import corpus_ids

            calibration = corpus_ids(tokenizer, 1, 16, min(256, model.config.block_size))[1].to(model.device)
        model = quantize_model(model, quantize, calibration=calibration)
    return model.eval().prepare_for_decode(), tokenizer, name  # the server only decodes
