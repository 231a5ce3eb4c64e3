"""What one running server knows: its limits (:class:`ServeConfig`) and its parts (:class:`ServerState`).

``create_app`` builds one :class:`ServerState` and hands it to every route handler of
:mod:`llmnotes.serve.routes`. A test can build one the same way (``ServerState.create(model,
tokenizer)``) and call a single handler with it, without starting the app.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Sequence

from llmnotes.prompting import chat_template_for
from llmnotes.serve.engine import Engine, ResponseCache
from llmnotes.serve.limits import Admission, RateLimiter
from llmnotes.serve.metrics import ServeMetrics
from llmnotes.tokenizer import eos_id_of


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


@dataclass
class ServerState:
    """The parts every route handler shares: the engine, the limits, the caches and the metrics.

    Attributes:
        engine: runs the decode loop (one request at a time per worker thread).
        tokenizer: encodes prompts and chat turns.
        config: the server's limits and switches.
        model_name: the name clients pass as ``model`` and ``/v1/models`` lists.
        keys: the accepted API keys (empty: no authentication).
        chat_template: messages -> prompt text; chat_stop: stop strings added to every chat request.
        context_length: the model's context length (``config.block_size``), in tokens.
        max_tokens_limit: the largest ``max_tokens`` a request may ask for.
        responses: greedy answers kept for identical requests.
        admission: the generation slots and the bounded queue in front of them.
        limiter: requests per second per key (None: no limit); auth_failures: failed key checks
            per second per address (None without keys).
        metrics: Prometheus counters and histograms.
        executor: the worker threads the decode loops run in.
        ready: True once the warm-up generation has run (``/health`` says 200).
        seconds_per_request: a moving average of generation time, for ``Retry-After``.
        background: generation tasks still running (kept referenced so they are not collected).
    """

    engine: Engine
    tokenizer: Any
    config: ServeConfig
    model_name: str
    keys: list[str]
    chat_template: Callable[[list[dict[str, str]]], str]
    chat_stop: list[str]
    context_length: int
    max_tokens_limit: int
    responses: ResponseCache
    admission: Admission
    limiter: RateLimiter | None
    auth_failures: RateLimiter | None
    metrics: ServeMetrics
    executor: ThreadPoolExecutor
    ready: bool = False
    seconds_per_request: float = 1.0
    background: set[asyncio.Task] = field(default_factory=set)

    @classmethod
    def create(cls, model: Any, tokenizer: Any, *, model_name: str = "llmnotes",
               api_key: str | Sequence[str] | None = None,
               chat_template: Callable[[list[dict[str, str]]], str] | None = None,
               chat_stop: Sequence[str] | None = None, eos_id: int | None = None,
               **options: Any) -> "ServerState":
        """Check the arguments of :func:`llmnotes.serve.create_app` and build the server's parts."""
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
        context_length = model.config.block_size
        if chat_template is None:
            chat_template, default_stop = chat_template_for(tokenizer)
            chat_stop = default_stop if chat_stop is None else chat_stop

        model.eval()
        engine = Engine(model, tokenizer, eos_id=eos_id_of(tokenizer) if eos_id is None else eos_id,
                        prefix_cache=cfg.prefix_cache)
        admission = Admission(cfg.max_concurrent, cfg.max_queue)
        metrics = ServeMetrics()
        metrics.active.set_function(lambda: admission.active)
        metrics.queued.set_function(lambda: admission.waiting)
        return cls(
            engine=engine, tokenizer=tokenizer, config=cfg, model_name=model_name, keys=keys,
            chat_template=chat_template, chat_stop=list(chat_stop or []),
            context_length=context_length,
            max_tokens_limit=min(cfg.max_tokens_limit or context_length, context_length - 1),
            responses=ResponseCache(cfg.response_cache_size), admission=admission,
            limiter=RateLimiter(cfg.rate_limit, cfg.rate_burst) if cfg.rate_limit else None,
            # Failed key checks are limited per address on their own, so guessing is slow even
            # when no request rate limit is configured.
            auth_failures=RateLimiter(cfg.auth_failure_rate, cfg.auth_failure_burst) if keys else None,
            metrics=metrics,
            executor=ThreadPoolExecutor(max_workers=cfg.max_concurrent, thread_name_prefix="llmnotes-generate"))
