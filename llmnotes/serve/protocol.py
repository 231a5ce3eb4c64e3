"""The OpenAI wire format: validate a request body, shape the response.

The server (:mod:`llmnotes.serve`) reads the JSON body itself and hands it to
:func:`parse_completion_request` or :func:`parse_chat_request`, which either return a typed
request or raise :class:`APIError`. An ``APIError`` becomes the JSON body OpenAI's API sends for
errors, ``{"error": {"message", "type", "param", "code"}}``, which the official ``openai``
client turns into ``BadRequestError``, ``AuthenticationError``, ``RateLimitError``, ...

Validating by hand (rather than with pydantic models) keeps every message in one place and in
one style: it names the field, the value received and what is allowed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


class APIError(Exception):
    """An error the client should see, as OpenAI's API reports it.

    Args:
        status: HTTP status code (400 bad request, 401 bad key, 404, 413, 429, 503, ...).
        message: a sentence saying what was wrong and how to fix it.
        type: OpenAI's error type, e.g. ``"invalid_request_error"``.
        param: the request field at fault, or ``None``.
        code: a short machine-readable code, or ``None``.
        headers: extra response headers (``Retry-After`` for 429/503).
    """

    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type = status, message, type
        self.param, self.code, self.headers = param, code, headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(param: str, message: str, code: str = "invalid_value") -> APIError:
    return APIError(400, message, "invalid_request_error", param, code)


# ---------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------


@dataclass
class SamplingParams:
    """How to pick the next tokens; the engine (:mod:`llmnotes.serve.engine`) reads these."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logprobs: int | None = None  # None: off; k >= 0: the chosen token's log-prob and the top k

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def to_config(self, eos_id: int | None = None):
        """These settings as the decode loop's :class:`~llmnotes.sampling.GenerationConfig`.

        ``stop`` is left out: the engine matches stop sequences on the streamed text (so none
        reaches the client). ``top_p == 1`` means no filter. The penalties count the reply's
        tokens only, as OpenAI's do (the loop counts the tokens after the prompt).
        """
        from llmnotes.sampling import GenerationConfig

        return GenerationConfig(max_new_tokens=self.max_tokens, temperature=self.temperature,
                                top_p=self.top_p if self.top_p < 1.0 else None,
                                frequency_penalty=self.frequency_penalty,
                                presence_penalty=self.presence_penalty, eos_id=eos_id, seed=self.seed)

    def cache_key(self) -> tuple:
        """Everything that changes a greedy answer (the seed does not: greedy ignores it)."""
        return (self.max_tokens, self.top_p, tuple(self.stop), self.presence_penalty,
                self.frequency_penalty, self.logprobs)


@dataclass
class GenerationRequest:
    """A validated ``/v1/completions`` or ``/v1/chat/completions`` request."""

    kind: str  # "completion" or "chat"
    model: str
    prompt: str | list[int]  # text, or token ids (completions only)
    params: SamplingParams
    stream: bool = False
    include_usage: bool = False  # stream_options.include_usage: a last chunk with token counts
    messages: list[dict[str, str]] | None = None
    max_tokens_given: bool = False  # False: the server picks max_tokens (chat default)


_MISSING = object()


def _number(body: dict, name: str, default: float, low: float, high: float,
            low_open: bool = False) -> float:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad_request(name, f"{name} must be a number, got {value!r}", "invalid_type")
    ok = (low < value if low_open else low <= value) and value <= high
    if not ok:
        lo = "(" if low_open else "["
        raise bad_request(name, f"{name} must be in {lo}{low:g}, {high:g}], got {value!r}")
    return float(value)


def _integer(body: dict, name: str, default: Any, low: int, high: int) -> Any:
    value = body.get(name, default)
    if value is None or value is default:
        return default  # null means "not given", as for every other field
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(name, f"{name} must be an integer, got {value!r}", "invalid_type")
    if not low <= value <= high:
        raise bad_request(name, f"{name} must be an integer in [{low}, {high}], got {value}")
    return value


def _boolean(body: dict, name: str, default: bool) -> bool:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad_request(name, f"{name} must be true or false, got {value!r}", "invalid_type")
    return value


def _stop(body: dict, max_chars: int) -> list[str]:
    value = body.get("stop")
    if value is None:
        return []
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise bad_request("stop", f"stop must be a string or a list of strings, got {value!r}", "invalid_type")
    if len(stops) > 4:
        raise bad_request("stop", f"stop may hold at most 4 sequences (as OpenAI's API), got {len(stops)}")
    for s in stops:
        if not s or len(s) > max_chars:
            raise bad_request("stop", f"each stop sequence must have 1 to {max_chars} characters, got {s!r}")
    return stops


def _common(body: Any, model_name: str, max_tokens_limit: int, default_max_tokens: int,
            ) -> tuple[SamplingParams, bool, bool, bool]:
    if not isinstance(body, dict):
        raise bad_request(None, f"the request body must be a JSON object, got {type(body).__name__}",
                          "invalid_type")
    model = body.get("model", _MISSING)
    if model is _MISSING or not isinstance(model, str):
        raise bad_request("model", f"model is required and must be a string, e.g. {model_name!r}",
                          "missing_required_parameter" if model is _MISSING else "invalid_type")
    if model != model_name:
        raise APIError(404, f"The model {model!r} does not exist; this server serves {model_name!r} "
                       "(see GET /v1/models)", "invalid_request_error", "model", "model_not_found")
    n = _integer(body, "n", 1, 1, 1_000_000)
    if n != 1:
        raise bad_request("n", f"n must be 1 (this server makes one choice per request), got {n}")
    best_of = body.get("best_of")
    if best_of not in (None, 1):
        raise bad_request("best_of", f"best_of must be 1 or absent, got {best_of!r}")
    stream = _boolean(body, "stream", False)
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not isinstance(options, dict):
            raise bad_request("stream_options", f"stream_options must be an object, got {options!r}", "invalid_type")
        if not stream:
            raise bad_request("stream_options", "stream_options is only allowed with stream=true")
        include_usage = _boolean(options, "include_usage", False)
    # max_completion_tokens is the newer name of max_tokens in the chat API.
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    given = body.get(key) is not None
    max_tokens = _integer(body, key, default_max_tokens, 1, max_tokens_limit)
    params = SamplingParams(
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0, low_open=True),
        stop=_stop(body, max_chars=200),
        seed=_integer(body, "seed", None, -(2**63), 2**63 - 1),
        presence_penalty=_number(body, "presence_penalty", 0.0, -2.0, 2.0),
        frequency_penalty=_number(body, "frequency_penalty", 0.0, -2.0, 2.0),
    )
    return params, stream, include_usage, given


def parse_completion_request(body: Any, *, model_name: str, max_tokens_limit: int,
                             max_prompt_chars: int, default_max_tokens: int = 16) -> GenerationRequest:
    """Validate a ``POST /v1/completions`` body (OpenAI's legacy completions API)."""
    params, stream, include_usage, given = _common(body, model_name, max_tokens_limit, default_max_tokens)
    prompt = body.get("prompt", _MISSING)
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # the client may wrap a single prompt in a list
    if prompt is _MISSING:
        raise bad_request("prompt", "prompt is required: a string (or a list of token ids)",
                          "missing_required_parameter")
    if isinstance(prompt, str):
        if len(prompt) > max_prompt_chars:
            raise bad_request("prompt", f"prompt has {len(prompt)} characters; the limit is "
                              f"{max_prompt_chars}", "prompt_too_long")
    elif isinstance(prompt, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        pass  # token ids: range-checked against the vocabulary by the server
    else:
        raise bad_request("prompt", "prompt must be a string or a list of token ids (one prompt per "
                          f"request), got {type(prompt).__name__}", "invalid_type")
    if body.get("echo"):
        raise bad_request("echo", "echo is not supported by this server; leave it false")
    params.logprobs = _integer(body, "logprobs", None, 0, 5)
    return GenerationRequest("completion", body["model"], prompt, params, stream, include_usage,
                             max_tokens_given=given)


def parse_chat_request(body: Any, *, model_name: str, max_tokens_limit: int,
                       max_prompt_chars: int, default_max_tokens: int) -> GenerationRequest:
    """Validate a ``POST /v1/chat/completions`` body."""
    params, stream, include_usage, given = _common(body, model_name, max_tokens_limit, default_max_tokens)
    messages = body.get("messages", _MISSING)
    if messages is _MISSING:
        raise bad_request("messages", "messages is required: a list of {role, content} objects",
                          "missing_required_parameter")
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages", f"messages must be a non-empty list, got {messages!r}", "invalid_type")
    clean, total = [], 0
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise bad_request(where, f"{where} must be an object with role and content", "invalid_type")
        role, content = m.get("role"), m.get("content")
        if role == "developer":  # OpenAI's newer name for the system role
            role = "system"
        if role not in ("system", "user", "assistant"):
            raise bad_request(f"{where}.role", f"{where}.role must be 'system', 'user' or 'assistant', got {role!r}")
        if isinstance(content, list):  # content parts: only text parts are understood here
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                       for p in content):
                raise bad_request(f"{where}.content", f"{where}.content parts must all be "
                                  "{'type': 'text', 'text': ...}; this model reads text only")
            content = "".join(p["text"] for p in content)
        if not isinstance(content, str):
            raise bad_request(f"{where}.content", f"{where}.content must be a string, got {content!r}", "invalid_type")
        total += len(content)
        clean.append({"role": role, "content": content})
    if total > max_prompt_chars:
        raise bad_request("messages", f"the messages hold {total} characters; the limit is {max_prompt_chars}",
                          "prompt_too_long")
    logprobs = _boolean(body, "logprobs", False)
    top = _integer(body, "top_logprobs", None, 0, 20)
    if top is not None and not logprobs:
        raise bad_request("top_logprobs", "top_logprobs needs logprobs=true")
    params.logprobs = (top or 0) if logprobs else None
    return GenerationRequest("chat", body["model"], "", params, stream, include_usage, clean, given)


# ---------------------------------------------------------------------------------------------
# Responses
# ---------------------------------------------------------------------------------------------


def logprobs_json(kind: str, items: list, offset: int = 0) -> dict:
    """Log-probs in OpenAI's shape. ``items`` have ``.token``, ``.logprob``, ``.top`` [(str, float)].

    Chat: ``{"content": [{token, logprob, bytes, top_logprobs: [...]}]}``. Completions (legacy):
    parallel lists ``tokens``, ``token_logprobs``, ``top_logprobs`` (dicts keyed by token text,
    so tokens that print alike share a key) and ``text_offset`` (character offsets from ``offset``).
    """
    if kind == "chat":
        return {"content": [{"token": t.token, "logprob": t.logprob, "bytes": list(t.token.encode()),
                             "top_logprobs": [{"token": s, "logprob": v, "bytes": list(s.encode())}
                                              for s, v in t.top]} for t in items]}
    offsets, pos = [], offset
    for t in items:
        offsets.append(pos)
        pos += len(t.token)
    return {"tokens": [t.token for t in items], "token_logprobs": [t.logprob for t in items],
            "top_logprobs": [dict(t.top) for t in items], "text_offset": offsets}


@dataclass
class ResponseWriter:
    """Writes one request's answer as OpenAI's API does: a whole response or stream chunks.

    Args:
        kind: ``"completion"`` (object ``text_completion``) or ``"chat"`` (``chat.completion``,
            chunks ``chat.completion.chunk``).
        id: the response id; every chunk of a stream repeats it.
        created: Unix time of the request.
        model: the served model's name.
        logprobs: whether the request asked for log-probs.
    """

    kind: str
    id: str
    created: int
    model: str
    logprobs: bool = False

    def _envelope(self, obj: str, choices: list, **extra: Any) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "choices": choices, **extra}

    def response(self, text: str, finish_reason: str, items: list, usage: dict[str, int]) -> dict:
        """The non-streaming body."""
        lp = logprobs_json(self.kind, items) if self.logprobs else None
        if self.kind == "chat":
            choice = {"index": 0, "message": {"role": "assistant", "content": text},
                      "logprobs": lp, "finish_reason": finish_reason}
            return self._envelope("chat.completion", [choice], usage=usage)
        choice = {"index": 0, "text": text, "logprobs": lp, "finish_reason": finish_reason}
        return self._envelope("text_completion", [choice], usage=usage)

    def chunk(self, text: str | None, items: list | None = None, finish_reason: str | None = None,
              offset: int = 0, role: bool = False) -> str:
        """One server-sent event: ``data: {json}`` and a blank line.

        Chat streams start with a chunk carrying only ``role`` and end with an empty ``delta``
        carrying ``finish_reason``; completion chunks always carry ``text``.
        """
        lp = logprobs_json(self.kind, items, offset) if (items and self.logprobs) else None
        if self.kind == "chat":
            delta = {"role": "assistant", "content": ""} if role else ({} if text is None else {"content": text})
            choice = {"index": 0, "delta": delta, "logprobs": lp, "finish_reason": finish_reason}
            return sse(self._envelope("chat.completion.chunk", [choice]))
        choice = {"index": 0, "text": text or "", "logprobs": lp, "finish_reason": finish_reason}
        return sse(self._envelope("text_completion", [choice]))

    def usage_chunk(self, usage: dict[str, int]) -> str:
        """The last event of a stream with ``stream_options.include_usage``: no choices, the counts."""
        obj = "chat.completion.chunk" if self.kind == "chat" else "text_completion"
        return sse(self._envelope(obj, [], usage=usage))


def sse(data: Any) -> str:
    """One server-sent event carrying ``data`` as JSON (the stream ends with ``sse("[DONE]")``)."""
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"
