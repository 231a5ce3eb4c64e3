"""The HTTP routes, one function per route, each taking the server's :class:`ServerState` first.

====================================  ==========================================================
:func:`completions`                   ``POST /v1/completions``
:func:`chat_completions`              ``POST /v1/chat/completions``
:func:`models`                        ``GET /v1/models``
:func:`health`                        ``GET /health``
:func:`metrics`                       ``GET /metrics``
:func:`openapi_schema`                ``GET /openapi.json``
:func:`index`                         ``GET /`` (the chat page)
====================================  ==========================================================

A handler is an ordinary ``async`` function of ``(state, request)``, so a test can call one on
its own: ``await models(ServerState.create(model, tokenizer), request)``. :func:`add_routes`
binds them to a FastAPI app. The checks every ``/v1`` request passes (API key, rate limit, body
size and JSON, prompt length) are here too; running the decode loop in a worker thread and
streaming its text as server-sent events is :mod:`llmnotes.serve.streaming`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse

from llmnotes.serve.metrics import RequestRecord
from llmnotes.serve.protocol import (APIError, GenerationRequest, ResponseWriter, parse_chat_request,
                                     parse_completion_request)
from llmnotes.serve.state import ServerState
from llmnotes.serve.streaming import (SSE_HEADERS, admit_unless_gone, answer, from_queue, replay,
                                      start_generation, store_when_done, stream_events, timeout_error)
from llmnotes.tokenizer import encode_text

WEB_DIR = Path(__file__).resolve().parents[1] / "assets" / "web"  # the chat page
log = logging.getLogger("llmnotes.serve")

# ---------------------------------------------------------------------------------------------
# The checks in front of every request
# ---------------------------------------------------------------------------------------------


def error_response(err: APIError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


def authorize(state: ServerState, request: Request) -> str:
    """Check the bearer key; return the rate-limit identity (the key's hash, or the address)."""
    if not state.keys:
        return "addr:" + (request.client.host if request.client else "unknown")
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    for k in state.keys:
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


def gate(state: ServerState, request: Request) -> str:
    """Authorize and rate-limit a /v1 request; return its identity. A failed key check counts
    against the client's address, so wrong keys are throttled (429) like requests are."""
    cfg = state.config
    address = "addr:" + (request.client.host if request.client else "unknown")
    try:
        identity = authorize(state, request)
    except APIError:
        for lim, what in ((state.auth_failures, f"at most {cfg.auth_failure_burst} failed API key checks "
                           f"at once, then {cfg.auth_failure_rate:g}/s, per address"),
                          (state.limiter, f"at most {cfg.rate_limit} requests/s per client")):
            wait = lim.check(address) if lim is not None else 0.0
            if wait > 0:
                raise rate_limited(wait, what) from None
        raise
    if state.limiter is not None:
        wait = state.limiter.check(identity)
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


async def read_json(state: ServerState, request: Request) -> Any:
    cfg = state.config
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


def prompt_ids(state: ServerState, req: GenerationRequest) -> list[int]:
    """The request's prompt as token ids, checked against the vocabulary and the context length."""
    engine, n_ctx = state.engine, state.context_length
    if req.kind == "chat":
        try:
            text = state.chat_template(req.messages)
        except ValueError as err:  # e.g. a role marker that would forge a turn
            raise APIError(400, str(err), "invalid_request_error", "messages", "invalid_value") from None
        ids = encode_text(state.tokenizer, text)  # user text: no special tokens
        req.params.stop = list(dict.fromkeys(req.params.stop + state.chat_stop))[:8]
    elif isinstance(req.prompt, str):
        ids = encode_text(state.tokenizer, req.prompt)
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
    room = n_ctx - len(ids)
    if req.kind == "chat" and not req.max_tokens_given:
        req.params.max_tokens = max(1, min(state.config.chat_max_tokens, room, state.max_tokens_limit))
    if len(ids) + req.params.max_tokens > n_ctx:
        param = "messages" if req.kind == "chat" else "prompt"
        raise APIError(400, f"This model's maximum context length is {n_ctx} tokens; the "
                       f"prompt has {len(ids)} and max_tokens asks for {req.params.max_tokens}. "
                       "Shorten the prompt or lower max_tokens.", "invalid_request_error", param,
                       "context_length_exceeded")
    return ids


# ---------------------------------------------------------------------------------------------
# The two generation routes
# ---------------------------------------------------------------------------------------------


async def generation(state: ServerState, request: Request, kind: str) -> Response:
    """Answer a completion (``kind="completion"``) or chat request: check it, answer a repeated
    greedy request from the response cache, else wait for a slot and run the decode loop."""
    cfg, model_name = state.config, state.model_name
    endpoint = "/v1/chat/completions" if kind == "chat" else "/v1/completions"
    rec = RequestRecord(endpoint, state.metrics)
    try:
        gate(state, request)
        body = await read_json(state, request)
        parse = parse_chat_request if kind == "chat" else parse_completion_request
        req = parse(body, model_name=model_name, max_tokens_limit=state.max_tokens_limit,
                    max_prompt_chars=cfg.max_prompt_chars,
                    default_max_tokens=cfg.chat_max_tokens if kind == "chat" else cfg.default_max_tokens)
        ids = prompt_ids(state, req)
        rec.prompt_tokens = len(ids)
        out = ResponseWriter(kind, rec.id, rec.created, model_name, req.params.logprobs is not None)
        key = None
        if req.params.greedy and cfg.response_cache_size > 0:
            key = (tuple(ids), req.params.cache_key())
            cached = state.responses.get(key)
            state.metrics.response_cache.labels("hit" if cached else "miss").inc()
            if cached is not None:
                rec.cached, rec.first_text_at = True, time.monotonic()
                if req.stream:
                    return StreamingResponse(stream_events(state, req, rec, out, replay(cached), None, None),
                                             media_type="text/event-stream", headers=SSE_HEADERS)
                rec.account(cached)
                rec.finish(200)
                return answer(out, rec, cached)
        if not await admit_unless_gone(state, request):
            rec.finish(499, "client_disconnected")
            return Response(status_code=499)
        task, queue, cancel = start_generation(state, req, rec, ids)
        if key is not None:
            task.add_done_callback(store_when_done(state, key))
        if req.stream:
            return StreamingResponse(stream_events(state, req, rec, out, from_queue(queue), task, cancel),
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
            raise timeout_error(state)
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


async def completions(state: ServerState, request: Request) -> Response:
    return await generation(state, request, "completion")


async def chat_completions(state: ServerState, request: Request) -> Response:
    return await generation(state, request, "chat")


# ---------------------------------------------------------------------------------------------
# The other routes
# ---------------------------------------------------------------------------------------------


async def models(state: ServerState, request: Request) -> Any:
    try:
        gate(state, request)
    except APIError as err:
        return error_response(err)
    return {"object": "list", "data": [{"id": state.model_name, "object": "model", "created": 0,
                                        "owned_by": "llmnotes", "context_length": state.context_length}]}


async def health(state: ServerState, request: Request) -> Any:
    if not state.ready:
        return JSONResponse({"status": "loading"}, status_code=503)
    return {"status": "ok", "model": state.model_name}


async def metrics(state: ServerState, request: Request) -> Response:
    """Prometheus metrics; behind the API key when one is set (scrape with a bearer token)."""
    from prometheus_client import CONTENT_TYPE_LATEST

    try:
        gate(state, request)
    except APIError as err:
        return error_response(err)
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


async def openapi_schema(state: ServerState, request: Request) -> Response:
    """The API's OpenAPI schema; behind the API key when one is set."""
    try:
        gate(state, request)
    except APIError as err:
        return error_response(err)
    return JSONResponse(request.app.openapi())


async def index(state: ServerState, request: Request) -> Response:
    return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})


Handler = Callable[[ServerState, Request], Awaitable[Any]]

# (method, path, handler, route name, listed in the OpenAPI schema). The route names are the ones
# the schema's operation ids are made from, so they stay as they were.
ROUTES: list[tuple[str, str, Handler, str, bool]] = [
    ("POST", "/v1/completions", completions, "completions", True),
    ("POST", "/v1/chat/completions", chat_completions, "chat_completions", True),
    ("GET", "/v1/models", models, "models", True),
    ("GET", "/health", health, "health", True),
    ("GET", "/metrics", metrics, "metrics_endpoint", True),
    # /openapi.json is served here, behind the API key like every route but / and /health.
    ("GET", "/openapi.json", openapi_schema, "openapi_schema", False),
    ("GET", "/", index, "index", True),
]


def bind(handler: Handler, state: ServerState) -> Callable[[Request], Awaitable[Any]]:
    """``handler`` as a FastAPI endpoint of the request alone, with ``state`` filled in."""
    async def endpoint(request: Request):  # no return annotation: FastAPI would take it as a response model
        return await handler(state, request)

    endpoint.__doc__ = handler.__doc__  # FastAPI shows it as the route's description
    return endpoint


def add_routes(app: FastAPI, state: ServerState) -> None:
    for method, path, handler, name, listed in ROUTES:
        app.add_api_route(path, bind(handler, state), methods=[method], name=name, include_in_schema=listed)
