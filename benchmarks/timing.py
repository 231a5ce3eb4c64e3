"""Timing helpers shared by the benchmark scripts (run as `python benchmarks/<name>.py`)."""

from __future__ import annotations

import time


def best_of(fn, repeats: int) -> float:
    """Smallest wall time over ``repeats`` calls: the least disturbed by other jobs."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)
