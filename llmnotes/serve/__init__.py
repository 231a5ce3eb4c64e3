"""Serving: an OpenAI-compatible HTTP API (``/v1/completions``, ``/v1/chat/completions``) for a model.

* :mod:`~llmnotes.serve.app` -- ``create_app`` (the FastAPI app), ``load_model``;
* :mod:`~llmnotes.serve.routes` -- one handler per route, each a function of ``(state, request)``;
* :mod:`~llmnotes.serve.state` -- ``ServeConfig`` (limits, switches) and ``ServerState`` (what handlers share);
* :mod:`~llmnotes.serve.streaming` -- the worker thread, the queue slot, server-sent events;
* :mod:`~llmnotes.serve.engine` -- the generation engine: streaming text, prefix and response caches;
* :mod:`~llmnotes.serve.protocol` -- request validation and response shapes (OpenAI's wire format);
* :mod:`~llmnotes.serve.limits` -- rate limits and the bounded queue;
* :mod:`~llmnotes.serve.metrics` -- Prometheus metrics.

The ``llmnotes serve`` command is ``llmnotes/cli/serve.py``.
"""

from llmnotes.serve.app import SSE_HEADERS, WEB_DIR, BackgroundServer, ServeConfig, ServerState, create_app, load_model
from llmnotes.serve.engine import Delta, Engine, ResponseCache, Result, TextStream, common_prefix
from llmnotes.serve.limits import Admission, QueueFull, QueueTimeout, RateLimiter, TokenBucket
from llmnotes.serve.metrics import RequestRecord, ServeMetrics
from llmnotes.serve.protocol import (APIError, GenerationRequest, ResponseWriter, SamplingParams, bad_request,
                                     logprobs_json, parse_chat_request, parse_completion_request, sse)

__all__ = [
    "create_app", "ServeConfig", "ServerState", "load_model", "BackgroundServer", "WEB_DIR", "SSE_HEADERS",
    "Engine", "TextStream", "Delta", "Result", "ResponseCache", "common_prefix",
    "APIError", "SamplingParams", "GenerationRequest", "ResponseWriter", "parse_completion_request",
    "parse_chat_request", "bad_request", "logprobs_json", "sse",
    "Admission", "QueueFull", "QueueTimeout", "RateLimiter", "TokenBucket",
    "ServeMetrics", "RequestRecord",
]
