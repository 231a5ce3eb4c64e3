"""Distilling the shipped tiny model into a 4x smaller student: hard labels vs KL at T=1 and T=2.

    python benchmarks/distill.py                       # 400 steps, seeds 0 1 2; prints a table
    python benchmarks/distill.py --write               # also writes benchmarks/results/distill.json

The longer version of the run on the Knowledge distillation page (docs/deployment/distillation.md),
which reads the JSON this writes. Same method: the teacher is the shipped ``tiny`` model; the
student is the tiny preset with 2 layers of width 96; three copies of one initialised student
train with AdamW (lr 3e-3, constant), batch 16 windows of 64 tokens drawn from the first 200,000
training tokens, and differ only in the loss (``llmnotes.compress.distillation_loss``):

* hard labels: cross-entropy on the next token (``alpha = 0``);
* KL to the teacher's distribution at ``T = 1`` and at ``T = 2`` (``alpha = 1``).

Validation perplexity (32 windows of 64 tokens from the start of ``val``) is recorded every
``--eval-every`` steps, for each seed. The three students train in lockstep on the same batches,
so the teacher's logits are computed once per step and shared.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

OUT = Path(__file__).parent / "results" / "distill.json"
VARIANTS = {  # name -> (temperature, alpha)
    "hard labels": (1.0, 0.0),
    "KL, T=1": (1.0, 1.0),
    "KL, T=2": (2.0, 1.0),
}
CTX, BATCH, LR = 64, 16, 3e-3


def windows(ids: torch.Tensor, starts) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, CTX) inputs and their next-token targets."""
    return (torch.stack([ids[i:i + CTX] for i in starts]),
            torch.stack([ids[i + 1:i + CTX + 1] for i in starts]))


@torch.no_grad()
def perplexity(model, x, y) -> float:
    model.eval()
    ppl = math.exp(F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item())
    model.train()
    return ppl


def run_seed(seed: int, steps: int, eval_every: int) -> dict:
    from llmnotes import GPT, GPTConfig, load_pretrained
    from llmnotes.compress import distillation_loss
    from llmnotes.data import load_tokens

    teacher, _ = load_pretrained("tiny")
    teacher.eval().requires_grad_(False)
    train = torch.as_tensor(load_tokens("train")[:200_000].astype("int64"))
    val = torch.as_tensor(load_tokens("val")[:20_000].astype("int64"))
    val_x, val_y = windows(val, range(0, 32 * CTX, CTX))
    starts = torch.randint(0, len(train) - CTX - 1, (steps, BATCH),
                           generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    init = GPT(GPTConfig.from_preset("tiny", n_layer=2, n_embd=96, n_head=4, block_size=128))
    students = {name: copy.deepcopy(init).train() for name in VARIANTS}
    opts = {name: torch.optim.AdamW(s.parameters(), lr=LR) for name, s in students.items()}
    curve = {name: [] for name in VARIANTS}
    for step in range(1, steps + 1):
        x, y = windows(train, starts[step - 1])
        with torch.no_grad():
            t_logits = teacher(x)
        for name, (T, alpha) in VARIANTS.items():
            loss = distillation_loss(students[name](x), t_logits, y, temperature=T, alpha=alpha)
            opts[name].zero_grad(set_to_none=True)
            loss.backward()
            opts[name].step()
        if step % eval_every == 0 or step == steps:
            for name, s in students.items():
                curve[name].append([step, perplexity(s, val_x, val_y)])
    return {"seed": seed, "teacher_ppl": perplexity(teacher, val_x, val_y),
            "teacher_params": teacher.num_params(), "student_params": init.num_params(), "curve": curve}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--write", action="store_true", help=f"write {OUT.relative_to(OUT.parents[2])}")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # the recorded run is single-threaded, like the page's timing
    t0 = time.time()
    runs = [run_seed(s, args.steps, args.eval_every) for s in args.seeds]
    seconds = time.time() - t0
    print(f"| seed | step | " + " | ".join(VARIANTS) + " |")
    print("|---|---|" + "---|" * len(VARIANTS))
    for run in runs:
        for i, (step, _) in enumerate(run["curve"]["hard labels"]):
            cells = " | ".join(f"{run['curve'][n][i][1]:.1f}" for n in VARIANTS)
            print(f"| {run['seed']} | {step} | {cells} |")
    print(f"{seconds:.0f} s")
    if args.write:
        record = {
            "command": "python benchmarks/distill.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "date": datetime.date.today().isoformat(), "cpu": platform.processor() or platform.machine(),
            "threads": 1, "torch": torch.__version__, "seconds": round(seconds),
            "steps": args.steps, "batch": BATCH, "ctx": CTX, "lr": LR,
            "variants": {n: {"temperature": t, "alpha": a} for n, (t, a) in VARIANTS.items()},
            "runs": runs,
        }
        OUT.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
