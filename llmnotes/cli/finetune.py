"""``llmnotes finetune``: finetune a model (classify, instruct, dpo; optional LoRA or QLoRA)."""

from __future__ import annotations

import copy
import json
import shlex
import sys
import time
from pathlib import Path

from llmnotes.cli.common import add_device_argument, add_model_argument, load_model
from llmnotes.finetune import (FinetuneTrainer, GPTClassifier, apply_lora, build_task, freeze, merge_lora,
                               save_adapter, trainable_parameters)
from llmnotes.quantize import quantize_model
from llmnotes.train import TrainConfig
from llmnotes.utils import atomic_write_text


def add_finetune_arguments(p) -> None:
    p.add_argument("--task", required=True, choices=["classify", "instruct", "dpo"])
    add_model_argument(p, what="the model to finetune: ")
    p.add_argument("--data", default=None, help="JSON-lines dataset (default: the shipped one for --task)")
    p.add_argument("--out", required=True, help="output directory: checkpoints, metrics, results.json")
    p.add_argument("--lora", type=int, default=0, metavar="R", help="train LoRA adapters of rank R (0: full)")
    p.add_argument("--lora-alpha", type=float, default=None, help="LoRA alpha (default: 2 * R)")
    p.add_argument("--qlora", action="store_true", help="quantize the frozen base to NF4 first (needs --lora)")
    p.add_argument("--freeze", default="all", help="classify: all | head_only | last_blocks:N")
    p.add_argument("--style", default="alpaca", choices=["alpaca", "chat"], help="instruction prompt format")
    p.add_argument("--beta", type=float, default=0.1, help="dpo: beta")
    p.add_argument("--max-steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=None, help="default: 1e-3 with LoRA/head_only, else 3e-4")
    p.add_argument("--warmup-steps", type=int, default=10)
    p.add_argument("--eval-interval", type=int, default=50)
    p.add_argument("--resume", action="store_true")
    add_device_argument(p)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--no-progress", action="store_true")


def run_finetune(args) -> int:
    """``llmnotes finetune``: train, evaluate on the test split before and after, save results."""
    if args.qlora and not args.lora:
        raise ValueError("--qlora needs --lora R (QLoRA trains adapters on the frozen 4-bit base)")
    if args.lora < 0:
        raise ValueError(f"--lora must be >= 0, got {args.lora}")
    model, tokenizer = load_model(args.model, args.device)
    reference = copy.deepcopy(model) if args.task == "dpo" and not args.lora else None
    model, train, test, loss_fn, evaluate = build_task(args.task, model, tokenizer, args.data, style=args.style,
                                                       beta=args.beta, reference=reference)
    body = model.model if isinstance(model, GPTClassifier) else model
    if args.qlora:
        quantize_model(body, "nf4")  # the body only: the new classification head stays float
    if args.lora:
        apply_lora(body, r=args.lora, alpha=args.lora_alpha or 2.0 * args.lora)
        if isinstance(model, GPTClassifier):
            model.head.requires_grad_(True)  # the new head always trains
    elif args.task == "classify":
        freeze(model, args.freeze)
    small = bool(args.lora) or args.freeze == "head_only"
    config = TrainConfig(max_steps=args.max_steps, batch_size=min(args.batch_size, len(test), len(train)),
                         lr=args.lr or (1e-3 if small else 3e-4), warmup_steps=min(args.warmup_steps, args.max_steps),
                         weight_decay=0.0, eval_interval=args.eval_interval, eval_steps=max(1, len(test) // 16),
                         log_interval=10, out_dir=args.out, resume=args.resume, device=args.device,
                         seed=args.seed, progress=not args.no_progress)
    trainer = FinetuneTrainer(model, train, test, config, loss_fn=loss_fn)
    if reference is not None:
        reference.to(trainer.device)
    trainable, total = trainable_parameters(model)
    print(f"{args.task}: {trainable:,} of {total:,} parameters train; {len(train)} train / {len(test)} test rows")
    before = evaluate(trainer.model) if not args.resume else None
    start = time.perf_counter()
    history = trainer.fit()
    after = evaluate(trainer.model)
    result = {"command": "llmnotes " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["finetune"] else None,
              "task": args.task, "lora": args.lora, "qlora": args.qlora, "steps": trainer.step,
              "seconds": round(time.perf_counter() - start, 1), "trainable": trainable, "total": total,
              "train_loss": next((r["loss"] for r in reversed(history) if "loss" in r), None),
              "before": before, "after": after}
    out = Path(args.out)
    atomic_write_text(out / "results.json", json.dumps(result, indent=2) + "\n")
    if args.lora and not args.qlora and args.task != "classify":
        # The adapter alone, in the PEFT layout: `load_pretrained(out / "adapter")` (or peft) applies it.
        save_adapter(model, out / "adapter", base_model=str(args.model))
    if args.task != "classify" and not args.qlora:
        merged = merge_lora(model) if args.lora else model
        merged.save_pretrained(out / "model")
        tokenizer.save(out / "model")
    print(json.dumps({k: result[k] for k in ("steps", "seconds", "train_loss", "before", "after")}))
    return 0
