"""A bounded load test: 64 concurrent clients x 5 streaming requests against the nano model.

Every answer is checked token for token against the oracle (greedy decoding without a cache), so
a mixed-up or truncated stream fails the test. Throughput and time-to-first-token are printed
(run with ``-s`` to see them), never asserted: speed depends on the machine.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))  # pytest-markdown-docs imports test files without it
from serve_fixtures import MODEL_NAME, nano_model, reference_greedy, tokenizer  # noqa: E402

from llmnotes.serve import BackgroundServer, create_app  # noqa: E402

CLIENTS, REQUESTS_EACH, MAX_TOKENS = 64, 5, 8
PROMPTS = [f"Request {i} says" for i in range(16)]


async def stream_once(client: httpx.AsyncClient, prompt: str) -> tuple[str, float, str | None]:
    """(text, seconds to the first text, finish_reason) of one streaming completion."""
    body = {"model": MODEL_NAME, "prompt": prompt, "max_tokens": MAX_TOKENS, "temperature": 0, "stream": True}
    t0, ttft, text, finish = time.perf_counter(), None, "", None
    async with client.stream("POST", "/v1/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choice = json.loads(line[6:])["choices"][0]
            if choice["text"] and ttft is None:
                ttft = time.perf_counter() - t0
            text += choice["text"]
            finish = choice["finish_reason"] or finish
    return text, ttft if ttft is not None else time.perf_counter() - t0, finish


async def run_clients(url: str) -> tuple[list, float]:
    results = []

    async def one_client(c: int, client: httpx.AsyncClient):
        for j in range(REQUESTS_EACH):
            prompt = PROMPTS[(c * REQUESTS_EACH + j) % len(PROMPTS)]
            try:
                results.append((prompt, *await stream_once(client, prompt)))
            except Exception as err:  # counted as a failure below
                results.append((prompt, err, None, None))

    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(one_client(c, client) for c in range(CLIENTS)))
        return results, time.perf_counter() - t0


def test_load_64_clients_x_5_streaming_requests():
    model, tok = nano_model(), tokenizer()
    expected = {p: reference_greedy(model, tok, p, MAX_TOKENS) for p in PROMPTS}
    app = create_app(model, tok, model_name=MODEL_NAME, response_cache_size=0, max_queue=CLIENTS)
    with BackgroundServer(app) as srv:
        results, elapsed = asyncio.run(run_clients(srv.url))
    failed = [r for r in results if not isinstance(r[1], str)]
    corrupted = [r for r in results if isinstance(r[1], str) and (r[1] != expected[r[0]] or r[3] is None)]
    assert len(results) == CLIENTS * REQUESTS_EACH
    assert not failed, failed[:3]
    assert not corrupted, corrupted[:3]
    ttfts = sorted(r[2] for r in results)
    p50, p95 = statistics.median(ttfts), ttfts[int(0.95 * (len(ttfts) - 1))]
    print(f"\nload: {len(results)} streaming requests from {CLIENTS} clients in {elapsed:.2f} s = "
          f"{len(results) / elapsed:.1f} req/s; TTFT p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms; "
          f"0 failed, 0 corrupted")
    assert elapsed < 60
