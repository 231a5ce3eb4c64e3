"""Serving benchmark: throughput and time-to-first-token (TTFT) of ``llmnotes serve`` on localhost.

    python benchmarks/serve.py [--clients 1 8 32] [--requests 3] [--repeats 3] [--max-tokens 32] [--threads 1] [--write]

Three experiments, each comparing two server settings side by side in one run:

1. **Concurrency.** N clients each send ``--requests`` streaming completions (sampling, so no
   cache can answer). Peers: one generation at a time (``max_concurrent=1``, the default) vs
   two threads (``max_concurrent=2``), alternating, ``--repeats`` times each; the median run
   (by requests/s) is reported with its generated tokens/s and TTFT p50/p95.
2. **Response cache.** The same greedy request 30 times to a server with the LRU cache and to
   one without, alternating: latency of each.
3. **Prefix cache.** A 5-turn chat that re-sends the conversation every turn (as chat clients
   do): TTFT per turn with the KV cache of the shared prefix reused vs recomputed.

The model is the shipped tiny model when present (``load_pretrained("tiny")``), else a randomly
initialised one of the same shape (``--random``); speed does not depend on the weights.
``--write`` replaces this benchmark's section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime
import asyncio
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import httpx
import torch

from llmnotes import GPT, GPTConfig
from llmnotes.serve import BackgroundServer, create_app
from llmnotes.utils import atomic_write_text, pick_device

NAME = "bench"
RESULTS = Path(__file__).parent / "RESULTS.md"


def load(random_init: bool, device):
    from llmnotes.pretrained import load_pretrained
    from llmnotes.tokenizer import BPETokenizer

    if not random_init:
        try:
            model, tok = load_pretrained("tiny", device=device)
            return model, tok, "shipped tiny model"
        except (FileNotFoundError, ValueError):
            pass
    tok = BPETokenizer.from_pretrained(Path(__file__).parents[1] / "llmnotes" / "assets" / "tokenizer")
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("tiny", vocab_size=max(2048, tok.vocab_size))).to(device).eval()
    return model, tok, "tiny preset, random weights"


async def stream(client: httpx.AsyncClient, path: str, body: dict) -> tuple[float, float, int]:
    """(TTFT, total seconds, generated tokens) of one streaming request."""
    body = body | {"model": NAME, "stream": True, "stream_options": {"include_usage": True}}
    t0, ttft, tokens = time.perf_counter(), None, 0
    async with client.stream("POST", path, json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
            for c in event["choices"]:
                if ttft is None and (c.get("text") or (c.get("delta") or {}).get("content")):
                    ttft = time.perf_counter() - t0
    total = time.perf_counter() - t0
    return (ttft if ttft is not None else total), total, tokens


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


async def concurrency_run(url: str, clients: int, requests: int, max_tokens: int) -> dict:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        async def one(c):
            out = []
            for j in range(requests):
                body = {"prompt": f"Once upon a time, child {c} ", "max_tokens": max_tokens,
                        "temperature": 0.8, "seed": c * 1000 + j}
                out.append(await stream(client, "/v1/completions", body))
            return out

        t0 = time.perf_counter()
        rows = [r for rs in await asyncio.gather(*(one(c) for c in range(clients))) for r in rs]
        elapsed = time.perf_counter() - t0
    ttfts = [r[0] for r in rows]
    return {"req_s": len(rows) / elapsed, "tok_s": sum(r[2] for r in rows) / elapsed,
            "p50": pct(ttfts, 0.5), "p95": pct(ttfts, 0.95), "n": len(rows)}


async def repeated_run(urls: list[str], n: int) -> list[list[float]]:
    """Latency of the same greedy request sent ``n`` times to each server, alternating servers."""
    body = {"prompt": "The little fox and the old owl", "max_tokens": 32, "temperature": 0}
    out: list[list[float]] = [[] for _ in urls]
    clients = [httpx.AsyncClient(base_url=u, timeout=60) for u in urls]
    try:
        for _ in range(n):
            for i, client in enumerate(clients):
                out[i].append((await stream(client, "/v1/completions", body))[1])
    finally:
        for client in clients:
            await client.aclose()
    return out


async def chat_run(url: str, turns: int) -> list[float]:
    """TTFT of each turn of a chat that re-sends the whole conversation every turn.

    The assistant turns in the history are fixed sentences rather than the model's replies, so
    both peers see exactly the same prompts (and the prompt length grows the same way)."""
    system = ("You are a storyteller. You tell short, kind stories about a fox, an old owl and "
              "two rabbits who live by a wide river.")
    messages = [{"role": "system", "content": system}]
    ttfts = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        for t in range(turns):
            messages.append({"role": "user", "content": f"Tell me part {t + 1} of the story, please."})
            body = {"messages": messages, "max_tokens": 12, "temperature": 0.8, "seed": t}
            ttfts.append((await stream(client, "/v1/chat/completions", body))[0])
            messages.append({"role": "assistant", "content": "The fox ran to the river and met the old owl."})
    return ttfts


def serve(model, tok, **options):
    return BackgroundServer(create_app(model, tok, model_name=NAME, max_queue=256, **options))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--requests", type=int, default=3, help="requests per client")
    ap.add_argument("--repeats", type=int, default=3, help="runs per setting; the median is reported")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--turns", type=int, default=5, help="chat turns (the tiny model's context is 256 tokens)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (1: a batch-1 decode step of a small model is too "
                         "small to split, and spinning threads slow each other down on a busy CPU)")
    ap.add_argument("--random", action="store_true", help="random weights even if the tiny model is shipped")
    ap.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    model, tok, what = load(args.random, device)
    lines = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    say("| clients | max_concurrent | requests | req/s | tokens/s | TTFT p50 (ms) | TTFT p95 (ms) |")
    say("|---:|---:|---:|---:|---:|---:|---:|")
    peak = {}
    for clients in args.clients:
        runs = {1: [], 2: []}
        for _ in range(args.repeats):
            for mc in (1, 2):  # the two peers alternate, so load from elsewhere hits both alike
                with serve(model, tok, max_concurrent=mc, response_cache_size=0) as srv:
                    runs[mc].append(asyncio.run(concurrency_run(srv.url, clients, args.requests, args.max_tokens)))
        for mc, rs in runs.items():
            r = sorted(rs, key=lambda r: r["req_s"])[len(rs) // 2]  # the median run by throughput
            peak[mc] = r["req_s"]
            say(f"| {clients} | {mc} | {r['n']} | {r['req_s']:.1f} | {r['tok_s']:.0f} | "
                f"{r['p50'] * 1000:.0f} | {r['p95'] * 1000:.0f} |")
    say()
    say("| same greedy request x30 (32 tokens) | median latency (ms) | p95 (ms) |")
    say("|---|---:|---:|")
    with serve(model, tok, response_cache_size=256) as on, serve(model, tok, response_cache_size=0) as off:
        lat_on, lat_off = asyncio.run(repeated_run([on.url, off.url], 30))
    medians = {256: statistics.median(lat_on), 0: statistics.median(lat_off)}
    for lat, label in ((lat_on, "response cache on"), (lat_off, "response cache off")):
        say(f"| {label} | {statistics.median(lat) * 1000:.1f} | {pct(lat, 0.95) * 1000:.1f} |")
    say()
    say(f"| {args.turns}-turn chat | mean TTFT turns 2..{args.turns} (ms) | TTFT per turn (ms) |")
    say("|---|---:|---|")
    per_turn = {True: [], False: []}
    for _ in range(args.repeats):
        for on in (True, False):  # alternate the peers
            with serve(model, tok, prefix_cache=on, response_cache_size=0) as srv:
                per_turn[on].append(asyncio.run(chat_run(srv.url, args.turns)))
    later = {}
    for on, runs in per_turn.items():
        ttfts = [statistics.median(turn) for turn in zip(*runs)]  # per turn, the median over repeats
        later[on] = statistics.mean(ttfts[1:])
        say(f"| prefix cache {'on' if on else 'off'} | {later[on] * 1000:.1f} | "
            f"{', '.join(f'{t * 1000:.0f}' for t in ttfts)} |")
    say()
    say(f"Summary: the response cache answers a repeated greedy request {medians[0] / medians[256]:.0f}x "
        f"faster (median); the prefix cache cuts the mean TTFT of turns 2..{args.turns} by "
        f"{1 - later[True] / later[False]:.0%}; with {args.clients[-1]} clients, two generation threads "
        f"give {peak[2] / peak[1]:.2f}x the requests/s of one.")

    cmd = "python benchmarks/serve.py " + " ".join(sys.argv[1:])
    machine = f"{platform.machine()}, torch threads: {torch.get_num_threads()}, device: {device}"
    if device.type == "cuda":
        machine += f" ({torch.cuda.get_device_name()})"
    header = [
        "<!-- serve:begin -->",
        "## Serving (`benchmarks/serve.py`)",
        "",
        f"Command: `{cmd.strip()}`. Measured {datetime.date.today()} on {machine} (timings vary "
        f"between runs: compare rows of one run, not across runs). Model: {what} (4 layers, 192 dims, context 256). Client and server "
        "share the machine (localhost, httpx streaming clients). TTFT is measured by the client: "
        "request sent to first text received, queueing included.",
        "",
    ]
    if args.write:
        block = "\n".join(header + lines + ["<!-- serve:end -->"]) + "\n"
        text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
        if "<!-- serve:begin -->" in text:
            before, rest = text.split("<!-- serve:begin -->", 1)
            after = rest.split("<!-- serve:end -->", 1)[1].lstrip("\n")
            text = before + block + ("\n" + after if after else "")
        else:
            text = text.rstrip("\n") + "\n\n" + block
        atomic_write_text(RESULTS, text)
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
