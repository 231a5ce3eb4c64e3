"""Classification finetuning three ways: full, LoRA, head only — accuracy, parameters, memory.

    python benchmarks/finetune.py --steps 150             # prints a Markdown table
    python benchmarks/finetune.py --steps 150 --write     # also appends it to benchmarks/RESULTS.md

Every variant starts from the shipped tiny model (``load_pretrained("tiny")``), trains a
``GPTClassifier`` on the shipped feelings dataset (320 train rows) with the same steps, batch
and seed through ``FinetuneTrainer``, and is scored on the 80 held-out rows. Each variant runs in
its own subprocess so that its peak resident memory (``ru_maxrss``) is its own; a baseline
process that loads the model and data but does not train is measured the same way, and the
table shows the difference. ``memory_breakdown`` gives the computed bytes of weights, gradients
and AdamW states beside it. On a GPU the peak is ``torch.cuda.max_memory_allocated`` instead.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {  # name -> (how, learning rate)
    "baseline": ("no training", 0.0),
    "full": ("all weights", 5e-4),
    "lora": ("LoRA r=8 on c_attn/c_proj/c_fc + head", 2e-3),
    "head_only": ("classification head only", 1e-2),
}


def peak_bytes(device) -> int:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB


def run_variant(name: str, steps: int, batch: int, seed: int, device: str | None) -> dict:
    import torch

    from llmnotes import load_pretrained
    from llmnotes.finetune import (ClassificationDataset, FinetuneTrainer, GPTClassifier, accuracy, apply_lora,
                                   classification_loss, freeze, load_classification, predict, trainable_parameters)
    from llmnotes.finetune.lora import memory_breakdown
    from llmnotes.train import TrainConfig
    from llmnotes.utils import pick_device

    dev = pick_device(device)
    model, tok = load_pretrained("tiny", device=dev)
    train = ClassificationDataset(load_classification("train"), tok)
    test = ClassificationDataset(load_classification("test"), tok)
    torch.manual_seed(seed)
    clf = GPTClassifier(model, 4)
    if name == "lora":
        apply_lora(clf.model, r=8, alpha=16)
    elif name == "head_only":
        freeze(clf, "head_only")
    trainable, total = trainable_parameters(clf)
    mem = memory_breakdown(clf)
    seconds = 0.0
    if name != "baseline":
        config = TrainConfig(max_steps=steps, batch_size=batch, lr=VARIANTS[name][1], warmup_steps=10,
                             weight_decay=0.0, eval_interval=0, progress=False, seed=seed, device=device)
        start = time.perf_counter()
        FinetuneTrainer(clf, train, None, config, loss_fn=classification_loss).fit()
        seconds = time.perf_counter() - start
    acc = accuracy(predict(clf, test), test.y[:, 0])
    return {"variant": name, "accuracy": acc, "trainable": trainable, "total": total, "seconds": seconds,
            "peak_bytes": peak_bytes(dev), "computed": mem, "device": str(dev)}


def table(results: list[dict], args) -> str:
    base = next(r for r in results if r["variant"] == "baseline")
    cpu = base["device"] == "cpu"
    lines = [
        f"Command: `python benchmarks/finetune.py --steps {args.steps} --batch-size {args.batch_size}` "
        f"(seed {args.seed}); machine: {platform.machine()} {'CPU, ' + str(args.threads) + ' threads' if cpu else base['device']}, "
        f"Python {platform.python_version()}. Shipped tiny model, feelings dataset (320 train / 80 test, 4 classes, "
        f"chance 25%). Memory: *measured* = peak {'resident set (ru_maxrss) of the variant process minus the baseline process (model and data loaded, no training)' if cpu else 'torch.cuda.max_memory_allocated'}; "
        "*computed* = weights + gradients + AdamW states from `memory_breakdown` (activations excluded).",
        "",
        "| variant | trainable params | test accuracy | train time (s) | measured peak (MiB) | computed (MiB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        measured = (r["peak_bytes"] - (base["peak_bytes"] if cpu else 0)) / 2**20
        lines.append(f"| {VARIANTS[r['variant']][0]} (lr {VARIANTS[r['variant']][1]:g}) | {r['trainable']:,} of {r['total']:,} "
                     f"| {r['accuracy']:.1%} | {r['seconds']:.0f} | {measured:+.1f} | {r['computed']['total'] / 2**20:.2f} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default=None)
    p.add_argument("--variant", default=None, help=argparse.SUPPRESS)  # internal: run one variant, print JSON
    p.add_argument("--write", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.steps, args.batch_size, args.seed, args.device)))
        return 0
    results = []
    for name in VARIANTS:
        cmd = [sys.executable, __file__, "--variant", name, "--steps", str(args.steps), "--batch-size",
               str(args.batch_size), "--seed", str(args.seed), "--threads", str(args.threads)]
        if args.device:
            cmd += ["--device", args.device]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
        print(f"{name}: accuracy {results[-1]['accuracy']:.1%} in {results[-1]['seconds']:.0f} s", file=sys.stderr)
    text = table(results, args)
    print(text)
    if args.write:
        from llmnotes.utils import atomic_write_text

        path = ROOT / "benchmarks" / "RESULTS.md"
        old = path.read_text(encoding="utf-8")
        start = old.find("\n## Finetuning")
        if start >= 0:  # replace our previous section, keep everyone else's
            end = old.find("\n## ", start + 1)
            old = old[:start] + (old[end:] if end >= 0 else "\n")
        atomic_write_text(path, old.rstrip("\n") + "\n\n## Finetuning\n\n" + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
