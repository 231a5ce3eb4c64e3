"""The machine's matrix-multiply peak per dtype, at the shapes a GPT training step multiplies.

    python benchmarks/gemm_peak.py [--preset gpt2] [--batch 2] [--seq 128] [--threads 1] [--dtypes fp32 bf16]

A training step of a GPT is mostly matrix multiplies: for each weight (out, in) and ``M = B·T``
token rows, the forward ``X·Wᵀ`` (M×in by in×out), the input gradient ``dY·W`` and the weight
gradient ``dYᵀ·X``. This script times exactly those products (``torch.mm``, the operands laid
out as the autograd kernels see them) for every distinct weight shape of the preset, in fp32 and
bf16, interleaved, and reports GFLOP/s per product and:

* **peak**: the fastest product, the ceiling a training step is measured against
  (``benchmarks/model.py --roofline`` reports a step's model FLOP/s as a fraction of it);
* **GEMM-only step**: the step's products, each counted once per layer, timed back to back;
  its FLOP/s is what a step could reach if it did nothing but these multiplies.

FLOPs of an (M×K)·(K×N) product: 2·M·N·K. ``peaks(...)`` is importable.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmnotes import GPT, GPTConfig, qkernels  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def weight_shapes(config: GPTConfig) -> dict[tuple[int, int], int]:
    """(out, in) -> how many linear layers of that shape one forward pass uses."""
    with torch.device("meta"):
        model = GPT(config)
    counts: dict[tuple[int, int], int] = {}
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            counts[tuple(m.weight.shape)] = counts.get(tuple(m.weight.shape), 0) + 1
    return counts


def products(shapes: dict[tuple[int, int], int], rows: int) -> list[tuple[str, int, int, int, int]]:
    """(label, M, K, N, count): the three products per weight shape of a training step."""
    out = []
    for (n_out, n_in), count in shapes.items():
        out += [(f"fwd {n_out}x{n_in}", rows, n_in, n_out, count),       # X (M, in) · Wᵀ (in, out)
                (f"dX {n_out}x{n_in}", rows, n_out, n_in, count),        # dY (M, out) · W (out, in)
                (f"dW {n_out}x{n_in}", n_out, rows, n_in, count)]        # dYᵀ (out, M) · X (M, in)
    return out


def _operands(m: int, k: int, n: int, dtype: torch.dtype, label: str):
    # Lay the operands out as autograd passes them: Wᵀ is a transposed view in the forward,
    # dYᵀ a transposed view in the weight gradient.
    a = torch.randn(m, k, dtype=dtype) if not label.startswith("dW") else torch.randn(k, m, dtype=dtype).t()
    b = torch.randn(n, k, dtype=dtype).t() if label.startswith("fwd") else torch.randn(k, n, dtype=dtype)
    return a, b


def peaks(preset: str = "gpt2", batch: int = 2, seq: int = 128, dtypes=("fp32", "bf16"),
          rounds: int = 5) -> dict[str, dict]:
    """Per dtype: ``peak_gflops``, ``gemm_step_gflops`` and ``per_product`` {label: GFLOP/s}."""
    config = GPTConfig.from_preset(preset)
    prods = products(weight_shapes(config), batch * seq)
    ops = {(d, p[0]): _operands(p[1], p[2], p[3], DTYPES[d], p[0]) for d in dtypes for p in prods}
    times: dict[tuple[str, str], list[float]] = {key: [] for key in ops}
    for (a, b) in ops.values():
        torch.mm(a, b)  # warm-up: kernel selection, packing buffers
    for _ in range(rounds):
        for key, (a, b) in ops.items():  # interleaved: every product of every dtype per round
            t0 = time.perf_counter()
            torch.mm(a, b)
            times[key].append(time.perf_counter() - t0)
    result = {}
    for d in dtypes:
        per, flops, secs = {}, 0.0, 0.0
        for label, m, k, n, count in prods:
            t = statistics.median(times[(d, label)])
            per[label] = 2 * m * k * n / t / 1e9
            flops, secs = flops + count * 2 * m * k * n, secs + count * t
        result[d] = {"peak_gflops": max(per.values()), "gemm_step_gflops": flops / secs / 1e9, "per_product": per}
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="gpt2")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    res = peaks(args.preset, args.batch, args.seq, args.dtypes, args.rounds)
    print(f"CPU: {qkernels.cpu_line()}; torch {torch.__version__}")
    print(f"preset {args.preset}, M = {args.batch}x{args.seq} = {args.batch * args.seq} rows; GFLOP/s, median of {args.rounds}")
    labels = list(res[args.dtypes[0]]["per_product"])
    print("| product (weight out x in) | " + " | ".join(args.dtypes) + " |")
    print("|---|" + "---:|" * len(args.dtypes))
    for label in labels:
        print(f"| {label} | " + " | ".join(f"{res[d]['per_product'][label]:.0f}" for d in args.dtypes) + " |")
    print("| **peak** | " + " | ".join(f"**{res[d]['peak_gflops']:.0f}**" for d in args.dtypes) + " |")
    print("| GEMM-only step | " + " | ".join(f"{res[d]['gemm_step_gflops']:.0f}" for d in args.dtypes) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
