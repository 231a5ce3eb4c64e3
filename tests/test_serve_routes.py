"""The server's route handlers called one at a time: no app, no HTTP server, no lifespan.

Each handler of :mod:`llmnotes.serve.routes` is a function of ``(state, request)``; here the
state is built with ``ServerState.create`` and the request is a bare ASGI request, so a failure
points at one handler rather than at the whole app.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
sys.path.insert(0, str(Path(__file__).parent))  # pytest-markdown-docs imports test files without it
from serve_fixtures import nano_model, reference_greedy, tokenizer  # noqa: E402
from starlette.requests import Request  # noqa: E402

from llmnotes.serve import routes  # noqa: E402
from llmnotes.serve.protocol import APIError, parse_completion_request  # noqa: E402
from llmnotes.serve.state import ServerState  # noqa: E402


def request(method: str, path: str, body: object = None, key: str | None = None) -> Request:
    """An ASGI request as uvicorn would hand it over: headers, a client address, one body message,
    then a receive that waits (the client stays connected)."""
    raw = b"" if body is None else json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    if key is not None:
        headers.append((b"authorization", f"Bearer {key}".encode()))
    messages = [{"type": "http.request", "body": raw, "more_body": False}]

    async def receive():
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # never disconnects

    scope = {"type": "http", "method": method, "path": path, "headers": headers, "query_string": b"",
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000), "scheme": "http"}
    return Request(scope, receive)


def decoded(response) -> dict:
    return json.loads(response.body)


@pytest.fixture(scope="module")
def model():
    return nano_model(block_size=64)


def test_health_answers_503_until_the_state_is_ready(model):
    state = ServerState.create(model, tokenizer(), model_name="nano")
    before = asyncio.run(routes.health(state, request("GET", "/health")))
    assert before.status_code == 503 and decoded(before) == {"status": "loading"}
    state.ready = True
    assert asyncio.run(routes.health(state, request("GET", "/health"))) == {"status": "ok", "model": "nano"}


def test_models_checks_the_key_and_reports_the_context_length(model):
    state = ServerState.create(model, tokenizer(), model_name="nano", api_key="sesame")
    refused = asyncio.run(routes.models(state, request("GET", "/v1/models", key="wrong")))
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert decoded(refused)["error"]["code"] == "invalid_api_key"
    listed = asyncio.run(routes.models(state, request("GET", "/v1/models", key="sesame")))
    assert listed["data"][0]["id"] == "nano" and listed["data"][0]["context_length"] == 64


def test_completions_handler_alone_matches_the_reference_greedy_decode(model):
    state = ServerState.create(model, tokenizer(), model_name="nano")
    body = {"model": "nano", "prompt": "The model", "max_tokens": 8, "temperature": 0}
    try:
        response = asyncio.run(routes.completions(state, request("POST", "/v1/completions", body)))
    finally:
        state.executor.shutdown(wait=True)
    assert response.status_code == 200, response.body
    out = decoded(response)
    assert out["object"] == "text_completion" and out["model"] == "nano"
    assert out["choices"][0]["text"] == reference_greedy(model, tokenizer(), "The model", 8)
    assert state.admission.active == 0 and len(state.responses) == 1  # the slot freed, the answer kept


def test_completions_handler_turns_a_bad_body_into_an_openai_error(model):
    state = ServerState.create(model, tokenizer(), model_name="nano")
    response = asyncio.run(routes.completions(state, request("POST", "/v1/completions", ["not", "an", "object"])))
    assert response.status_code == 400 and decoded(response)["error"]["type"] == "invalid_request_error"
    assert state.admission.active == 0 and len(state.responses) == 0  # never reached the engine


def test_prompt_ids_refuses_a_prompt_longer_than_the_context(model):
    state = ServerState.create(model, tokenizer(), model_name="nano")
    req = parse_completion_request({"model": "nano", "prompt": list(range(60)), "max_tokens": 10},
                                   model_name="nano", max_tokens_limit=state.max_tokens_limit,
                                   max_prompt_chars=1000, default_max_tokens=16)
    with pytest.raises(APIError) as err:
        routes.prompt_ids(state, req)
    assert err.value.status == 400 and err.value.code == "context_length_exceeded"
    assert "maximum context length is 64 tokens; the prompt has 60 and max_tokens asks for 10" in str(err.value.body())
