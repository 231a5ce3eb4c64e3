"""Loss curves of fp32 and bf16-master training, same data, same seed, side by side.

    python benchmarks/bf16_curve.py [--preset tiny] [--steps 300] [--batch 8] [--seq 128] [--threads 1]

Trains the preset from the same initial weights on the shipped corpus' train split twice with
``llmnotes.train.Trainer``: ``dtype="fp32"`` and ``dtype="bf16-master"`` (bf16 weights,
activations and gradients; fp32 master weights, see ``llmnotes/bf16.py``). Prints the largest
relative gap between the two training losses over the run, the gap averaged over the last 50
steps, both final validation losses on the val split, and the wall time of each run.
bf16-master runs twice, once with each attention kernel ``MasterWeights.choose_attention``
chooses between (fused SDPA, explicit softmax(QKᵀ/√d)V), so both are checked against fp32; a
second fp32 run from other initial weights shows how far two fp32 runs drift apart, the scale
against which the bf16 gaps are read.
``tests/test_bf16_train.py`` checks a 30-step version of this within 2%.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmnotes import GPT, GPTConfig, qkernels  # noqa: E402
from llmnotes.data import load_tokens  # noqa: E402
from llmnotes.train import TrainConfig, Trainer  # noqa: E402


def train(dtype: str, args, attention: str | None = None, init_seed: int = 0) -> tuple[list[float], float, float]:
    """(training losses per step, final val loss, seconds) for one run; ``attention`` forces the
    bf16-master run's attention kernel ("sdpa" or "manual"); ``init_seed`` seeds the initial
    weights (the data order is the same for every run)."""
    torch.manual_seed(init_seed)
    model = GPT(GPTConfig.from_preset(args.preset, block_size=args.seq))
    cfg = TrainConfig(max_steps=args.steps, batch_size=args.batch, lr=args.lr, warmup_steps=20, dtype=dtype,
                      device="cpu", progress=False, log_interval=1, eval_interval=0, eval_steps=10, seed=1337)
    trainer = Trainer(model, load_tokens("train"), load_tokens("val"), cfg)
    if attention is not None:
        trainer.master.use_attention(attention, "forced by bf16_curve.py")
    t0 = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - t0
    losses = [r["loss"] for r in trainer.history if "loss" in r]
    val = [r["val_loss"] for r in trainer.history if "val_loss" in r][-1]
    return losses, val, seconds


def gaps(reference: tuple, run: tuple) -> str:
    """How far ``run``'s losses are from ``reference``'s, in words for the table."""
    (a, va, _), (b, vb, _) = reference, run
    rel = [abs(x - y) / x for x, y in zip(a, b)]
    tail = sum(rel[-50:]) / len(rel[-50:])
    return (f"largest gap {100 * max(rel):.2f}% (step {rel.index(max(rel)) + 1}), "
            f"last 50 steps {100 * tail:.2f}% on average, val {100 * (vb - va) / va:+.2f}%")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    runs = {"fp32": train("fp32", args),
            "fp32, other initial weights": train("fp32", args, init_seed=1),
            "bf16-master, fused attention": train("bf16-master", args, "sdpa"),
            "bf16-master, explicit attention": train("bf16-master", args, "manual")}
    print(f"CPU: {qkernels.cpu_line()}; torch {torch.__version__}")
    print(f"preset {args.preset}, {args.steps} steps of {args.batch} x {args.seq} tokens, lr {args.lr}")
    print("| run | loss at step 1 / 100 / 200 / last | final val loss | vs fp32 | seconds |")
    print("|---|---|---:|---|---:|")
    for name, run in runs.items():
        losses, val, secs = run
        marks = [losses[i] for i in (0, 99, 199) if i < len(losses)] + [losses[-1]]
        versus = "" if name == "fp32" else gaps(runs["fp32"], run)
        print(f"| {name} | {' / '.join(f'{x:.3f}' for x in marks)} | {val:.4f} | {versus} | {secs:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
