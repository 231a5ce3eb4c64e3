"""How much slower the math chapter's readable loops are than the libraries they teach.

Side by side in one run:
  * Gaussian elimination: ``llmnotes.linalg.solve`` (Python loops) vs ``numpy.linalg.solve`` (LAPACK).
  * Backprop: one forward + backward of a small MLP with scalar ``llmnotes.autograd.Value``
    vs the NumPy hand-written backward (``llmnotes.numpy_mlp``) vs ``torch.autograd``.

Every pair is checked to give the same answer before it is timed. Prints a Markdown section;
with ``--write`` it replaces the ``math`` section of ``benchmarks/RESULTS.md``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/math_chapter.py [--repeats 5] [--write]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
from pathlib import Path

import numpy as np
import torch

from llmnotes import linalg
from llmnotes.autograd import MLP, mse_loss
from llmnotes.numpy_mlp import MLPConfig, NumpyMLP, make_spirals
from llmnotes.utils import atomic_write_text
from timing import best_of


def bench_solve(repeats: int) -> list[str]:
    rows = ["| n | llmnotes.linalg.solve (s) | numpy.linalg.solve (s) | numpy speed-up |", "|---:|---:|---:|---:|"]
    rng = np.random.default_rng(0)
    for n in (25, 50, 100, 200):
        A, b = rng.standard_normal((n, n)), rng.standard_normal(n)
        np.testing.assert_allclose(linalg.solve(A, b), np.linalg.solve(A, b), rtol=1e-6, atol=1e-8)
        ours = best_of(lambda: linalg.solve(A, b), max(1, repeats if n <= 100 else 1))
        ref = best_of(lambda: np.linalg.solve(A, b), repeats * 20)
        rows.append(f"| {n} | {ours:.4f} | {ref:.6f} | {ours / ref:,.0f}x |")
    return rows


def bench_backprop(repeats: int) -> list[str]:
    X, y = make_spirals(20, 2, seed=0)  # 40 examples, 2 features
    H = 16
    # scalar Value MLP with regression-style MSE on the class id, same net in NumPy and torch
    vmlp = MLP(2, [H, 1], activation="tanh", seed=0)
    xs, ys = X.tolist(), [float(t) for t in y]

    def value_step():
        loss = mse_loss([vmlp(x) for x in xs], ys)
        vmlp.zero_grad()
        loss.backward()
        return loss

    W1 = torch.tensor([[p.data for p in n.w] for n in vmlp.layers[0].neurons], dtype=torch.float64).T.clone()
    b1 = torch.tensor([n.b.data for n in vmlp.layers[0].neurons], dtype=torch.float64)
    W2 = torch.tensor([[p.data for p in n.w] for n in vmlp.layers[1].neurons], dtype=torch.float64).T.clone()
    b2 = torch.tensor([n.b.data for n in vmlp.layers[1].neurons], dtype=torch.float64)
    params = [t.requires_grad_() for t in (W1, b1, W2, b2)]
    Xt, yt = torch.tensor(X), torch.tensor(ys, dtype=torch.float64)

    def torch_step():
        for p in params:
            p.grad = None
        loss = (((torch.tanh(Xt @ W1 + b1) @ W2 + b2).squeeze(1) - yt) ** 2).mean()
        loss.backward()
        return loss

    assert abs(value_step().data - torch_step().item()) < 1e-12
    np.testing.assert_allclose([p.grad for p in vmlp.layers[0].neurons[0].w], W1.grad[:, 0].numpy(), rtol=1e-9)

    nmlp = NumpyMLP(MLPConfig(2, H, 2), seed=0)  # softmax-CE head: same shapes, comparable work

    t_value = best_of(value_step, repeats)
    t_numpy = best_of(lambda: nmlp.loss_and_grads(X, y), repeats * 20)
    t_torch = best_of(torch_step, repeats * 20)
    return [
        f"One forward + backward of an MLP with 2 inputs and {H} tanh units on a batch of {len(X)}, float64 "
        f"(Value and torch: 1 output, MSE, identical numbers asserted; NumPy: 2 outputs, softmax cross-entropy):",
        "",
        "| implementation | seconds | vs torch |",
        "|---|---:|---:|",
        f"| `llmnotes.autograd.Value` (one Python object per number) | {t_value:.5f} | {t_value / t_torch:,.0f}x |",
        f"| `llmnotes.numpy_mlp` (hand-written backward, NumPy) | {t_numpy:.6f} | {t_numpy / t_torch:.1f}x |",
        f"| `torch.autograd` | {t_torch:.6f} | 1.0x |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(1)  # a fair fight with single-threaded Python loops on a shared machine

    lines = [
        "<!-- math:begin -->",
        "## Math chapter: readable loops vs libraries (`benchmarks/math_chapter.py`)",
        "",
        f"Command: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/math_chapter.py --repeats {args.repeats} --write`. Measured "
        f"{datetime.date.today()} on {platform.machine()}, {os.cpu_count()} cores, no GPU (best of "
        f"{args.repeats}+ runs; compare rows of one run). torch {torch.__version__} with 1 thread, "
        f"NumPy {np.__version__}. Every pair is asserted to agree before it is timed.",
        "",
        *bench_solve(args.repeats),
        "",
        *bench_backprop(args.repeats),
        "",
        "The loops are there to be read, not run at scale: the Python-level overhead per scalar "
        "operation, not the arithmetic, dominates.",
        "<!-- math:end -->",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        path = Path(__file__).with_name("RESULTS.md")
        old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
        pattern = re.compile(r"<!-- math:begin -->.*?<!-- math:end -->", re.S)
        new = pattern.sub(lambda _: text, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text + "\n"
        atomic_write_text(path, new)


if __name__ == "__main__":
    main()
