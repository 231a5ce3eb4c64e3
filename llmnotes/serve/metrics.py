"""What the server tells its operators: Prometheus metrics and one JSON log line per request.

Metrics live in a :class:`prometheus_client.CollectorRegistry` of their own, so two servers in one
process (tests, notebooks) never collide on metric names. The log line goes to the
``llmnotes.serve`` logger at INFO: ``{"event": "request", "id", "endpoint", "status", "error",
"prompt_tokens", "completion_tokens", "ttft_s", "total_s", "finish_reason", "cached",
"prefix_hit"}``. It holds sizes and timings, never the prompt or the API key.
"""

from __future__ import annotations

import json
import logging
import time
import uuid

log = logging.getLogger("llmnotes.serve")

# Seconds: fine steps where a small model answers, coarse ones up to a minute-long generation.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ServeMetrics:
    """The server's Prometheus metrics (``llmnotes_*``) in their own registry."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        r = self.registry = CollectorRegistry()
        self.requests = Counter("llmnotes_requests", "API requests by endpoint and HTTP status",
                                ["endpoint", "status"], registry=r)
        self.errors = Counter("llmnotes_errors", "Failed API requests by error code", ["code"], registry=r)
        self.prompt_tokens = Counter("llmnotes_prompt_tokens", "Prompt tokens of answered requests", registry=r)
        # Every generated token is counted, also those of a request the client then abandoned
        # (they cost the same compute): outcome="completed", "cancelled" (client left) or "failed".
        self.completion_tokens = Counter("llmnotes_completion_tokens", "Tokens generated, by request outcome",
                                         ["outcome"], registry=r)
        for outcome in ("completed", "cancelled", "failed"):
            self.completion_tokens.labels(outcome)  # present (at 0) from the start, "completed" first
        self.response_cache = Counter("llmnotes_response_cache_lookups", "Response cache lookups",
                                      ["result"], registry=r)
        self.prefix_tokens = Counter("llmnotes_prefix_cache_tokens",
                                     "Prompt tokens whose keys/values came from the prefix cache", registry=r)
        self.latency = Histogram("llmnotes_request_duration_seconds", "Time from request to last byte",
                                 ["endpoint"], buckets=BUCKETS, registry=r)
        self.ttft = Histogram("llmnotes_time_to_first_token_seconds", "Time from request to first text",
                              ["endpoint"], buckets=BUCKETS, registry=r)
        self.active = Gauge("llmnotes_active_generations", "Generations running now", registry=r)
        self.queued = Gauge("llmnotes_queued_requests", "Requests waiting for a generation slot", registry=r)

    def render(self) -> bytes:
        """The Prometheus text exposition format, for ``GET /metrics``."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class RequestRecord:
    """One API request's facts, gathered as it runs, counted and logged once by :meth:`finish`."""

    def __init__(self, endpoint: str, metrics: ServeMetrics) -> None:
        self.endpoint, self.metrics, self.t0 = endpoint, metrics, time.monotonic()
        self.id = ("chatcmpl-" if "chat" in endpoint else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.first_text_at: float | None = None  # time.monotonic() of the first text sent
        self.prompt_tokens = self.completion_tokens = self.prefix_hit = 0
        self.finish_reason: str | None = None
        self.cached = False
        self.done = False

    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}

    def account(self, result) -> None:
        """Take the counts of a finished generation (an :class:`llmnotes.serve.engine.Result`)."""
        self.completion_tokens, self.finish_reason = len(result.token_ids), result.finish_reason
        self.prefix_hit = result.prefix_hit
        self.metrics.prefix_tokens.inc(result.prefix_hit)

    def finish(self, status: int, code: str | None = None) -> None:
        """Count, time and log the request; later calls do nothing."""
        if self.done:
            return
        self.done = True
        m, total = self.metrics, time.monotonic() - self.t0
        m.requests.labels(self.endpoint, str(status)).inc()
        m.latency.labels(self.endpoint).observe(total)
        if code is not None:
            m.errors.labels(code).inc()
            outcome = "cancelled" if code == "client_disconnected" else "failed"
            m.completion_tokens.labels(outcome).inc(self.completion_tokens)
        else:
            m.prompt_tokens.inc(self.prompt_tokens)
            m.completion_tokens.labels("completed").inc(self.completion_tokens)
        ttft = None if self.first_text_at is None else self.first_text_at - self.t0
        if ttft is not None:
            m.ttft.labels(self.endpoint).observe(ttft)
        log.info(json.dumps({
            "event": "request", "id": self.id, "endpoint": self.endpoint, "status": status, "error": code,
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "ttft_s": None if ttft is None else round(ttft, 4), "total_s": round(total, 4),
            "finish_reason": self.finish_reason, "cached": self.cached, "prefix_hit": self.prefix_hit}))
