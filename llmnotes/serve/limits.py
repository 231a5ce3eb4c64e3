"""Keeping a server alive under load: per-key rate limits and a bounded generation queue.

Two different questions, two mechanisms:

* **Is this client asking too often?** A token bucket per API key (or per client address when
  there are no keys): the bucket holds up to ``burst`` tokens, refills at ``rate`` tokens per
  second, and every request takes one. An empty bucket answers 429 with ``Retry-After`` set to
  the time until the next token.
* **Is the server busy?** At most ``max_concurrent`` generations run at once; up to
  ``max_queue`` more wait their turn. Past that, or after waiting ``queue_timeout`` seconds,
  the request is refused with 503 and ``Retry-After``: failing fast beats a queue that grows
  until every client times out.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import OrderedDict
from typing import Callable


class TokenBucket:
    """``burst`` tokens at most, refilled continuously at ``rate`` tokens per second."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
            raise ValueError(f"rate must be a positive number of requests per second, got {rate!r}")
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ValueError(f"burst must be an integer >= 1, got {burst!r}")
        self.rate, self.burst, self.clock = float(rate), burst, clock
        self.tokens = float(burst)
        self.stamp = clock()

    def take(self) -> float:
        """Take one token. Returns 0.0 on success, else the seconds until one is available."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """One :class:`TokenBucket` per key; the least recently seen keys are forgotten past ``max_keys``.

    Forgetting a key refills its bucket, which errs on the side of the client; bounding the table
    keeps a flood of distinct keys (or addresses) from growing memory without limit.
    """

    def __init__(self, rate: float, burst: int, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        TokenBucket(rate, burst, clock)  # validates the arguments
        self.rate, self.burst, self.max_keys, self.clock = rate, burst, max_keys, clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, key: str) -> float:
        """0.0 if ``key`` may make a request now, else the seconds it should wait."""
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, self.clock)
                while len(self._buckets) > self.max_keys:
                    self._buckets.popitem(last=False)
            self._buckets.move_to_end(key)
            return bucket.take()


class QueueFull(Exception):
    """No generation slot and no room to wait for one."""


class QueueTimeout(Exception):
    """Waited ``queue_timeout`` seconds for a generation slot without getting one."""


class Admission:
    """At most ``max_concurrent`` holders at once and at most ``max_queue`` waiting (asyncio side).

    ``await acquire(timeout)`` returns once the caller holds a slot, or raises :class:`QueueFull`
    at once when the queue is full, or :class:`QueueTimeout`. Every successful ``acquire`` must be
    paired with one ``release()``.
    """

    def __init__(self, max_concurrent: int, max_queue: int) -> None:
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or max_concurrent < 1:
            raise ValueError(f"max_concurrent must be an integer >= 1, got {max_concurrent!r}")
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 0:
            raise ValueError(f"max_queue must be an integer >= 0, got {max_queue!r}")
        self.max_concurrent, self.max_queue = max_concurrent, max_queue
        self.active = 0
        self.waiting = 0
        self._cond: asyncio.Condition | None = None  # made on first use, inside the server's loop

    async def acquire(self, timeout: float | None) -> None:
        if self._cond is None:
            self._cond = asyncio.Condition()
        async with self._cond:
            if self.active < self.max_concurrent and self.waiting == 0:
                self.active += 1
                return
            if self.waiting >= self.max_queue:
                raise QueueFull()
            self.waiting += 1
            try:
                # wait_for re-acquires the condition's lock before it raises, so counters stay right.
                await asyncio.wait_for(self._cond.wait_for(lambda: self.active < self.max_concurrent),
                                       timeout)
            except (asyncio.TimeoutError, TimeoutError):
                raise QueueTimeout() from None
            finally:
                self.waiting -= 1
            self.active += 1

    async def release(self) -> None:
        assert self._cond is not None and self.active > 0
        async with self._cond:
            self.active -= 1
            # Wake every waiter: each re-checks the condition under the lock, so exactly as many
            # proceed as there are free slots, and a waiter that timed out cannot swallow a wake-up.
            self._cond.notify_all()

    def retry_after(self, seconds_per_request: float) -> int:
        """A ``Retry-After`` guess: the time for the queue ahead to drain, at least one second."""
        ahead = (self.waiting + self.active) / self.max_concurrent
        return max(1, math.ceil(ahead * seconds_per_request))
