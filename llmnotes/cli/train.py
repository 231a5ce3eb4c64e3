"""``llmnotes train``: pretrain a GPT on a text or token file and leave a model directory."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

from llmnotes.train import checkpoint as ckpt
from llmnotes.cli.common import add_config_arguments, config_from_args
from llmnotes.data import read_tokens
from llmnotes.train import DTYPES, TRAIN_DTYPES, Trainer, TrainConfig
from llmnotes.utils import atomic_write_text


def add_train_arguments(p) -> None:
    """Arguments of ``llmnotes train``: the data and model flags, then one flag per ``TrainConfig``
    field (derived from the dataclass, help from its docs), so a new field gets its flag."""
    p.add_argument("--data", required=True,
                   help="a .txt file, a uint16 .bin token file, or a directory holding train.txt/val.txt, "
                        "train.bin/val.bin, or .txt files")
    p.add_argument("--val-data", default=None, help="validation file (default: val.* beside the training data, "
                                                    "else the last --val-fraction of it)")
    p.add_argument("--val-fraction", type=float, default=0.05)
    p.add_argument("--tokenizer", default=None,
                   help="tokenizer directory for text data (default: the shipped tokenizer)")
    p.add_argument("--preset", default="tiny", help="GPTConfig preset (nano, tiny, gpt2, ...)")
    p.add_argument("--block-size", type=int, default=None, help="override the preset's context length")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--model", dest="init_from", default=None,
                   help="start from this model's weights (continued pretraining) instead of random ones: "
                        "a shipped name (tiny) or a model directory")
    p.add_argument("--init-from", dest="init_from", help=argparse.SUPPRESS)  # the old name of --model
    p.add_argument("--out", required=True, help="output directory: a model directory plus checkpoints")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the model already in --out (refused without this flag or --resume)")
    p.add_argument("--save-dtype", choices=sorted(DTYPES), default="fp32",
                   help="dtype of the exported model.safetensors (fp16 halves its size)")
    config = p.add_argument_group("training (TrainConfig)")
    p.set_defaults(config_fields=add_config_arguments(
        config, TrainConfig, skip=("out_dir",),
        extra={"dtype": {"choices": sorted(TRAIN_DTYPES)}, "betas": {"metavar": ("BETA1", "BETA2")}}))
    # the first names of two flags, kept working but not listed
    p.add_argument("--beta1", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--beta2", type=float, default=None, help=argparse.SUPPRESS)


def _resolve_data(args, tokenizer, cache_dir: Path | None):
    data = Path(args.data)
    if not data.exists():
        raise FileNotFoundError(f"--data {str(data)!r} does not exist")
    val_path = Path(args.val_data) if args.val_data else None
    if data.is_dir():
        for ext in (".bin", ".txt"):
            if (data / f"train{ext}").is_file():
                train_path = data / f"train{ext}"
                if val_path is None and (data / f"val{ext}").is_file():
                    val_path = data / f"val{ext}"
                break
        else:
            files = sorted(data.glob("*.txt"))
            if not files:
                raise ValueError(f"--data directory {str(data)!r} holds no train.txt, train.bin or .txt files")
            import numpy as np

            train = np.concatenate([np.asarray(read_tokens(f, tokenizer, cache_dir, "--data file")) for f in files])
            train_path = None
    else:
        train_path = data
    if train_path is not None:
        train = read_tokens(train_path, tokenizer, cache_dir, "--data file")
    if val_path is not None:
        return train, read_tokens(val_path, tokenizer, cache_dir, "--val-data file")
    if not 0 < args.val_fraction < 1:
        raise ValueError(f"--val-fraction must be in (0, 1), got {args.val_fraction}")
    cut = int(len(train) * (1 - args.val_fraction))
    return train[:cut], train[cut:]


def _check_out(args, out: Path) -> None:
    """Refuse to replace a model directory in ``--out`` unless asked to (--overwrite/--resume)."""
    if str(args.out) == "":
        raise ValueError("--out is empty; pass the directory the model should be written to")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; pass a directory (it is created if missing)")
    holds_model = any((out / f).exists() for f in ("config.json", "model.safetensors", "quantization.json"))
    if holds_model and not (args.overwrite or args.resume):
        same = args.init_from and os.path.realpath(args.init_from) == os.path.realpath(out)
        raise ValueError(f"--out {str(out)!r} already holds a model{' (the --init-from one)' if same else ''}; "
                         "pass --overwrite to replace it, --resume to continue its run, or choose another --out")


def _check_train_memory(config, args, device: str | None) -> None:
    """Refuse a model/batch too large for this machine before allocating it (e.g. a 10^8 context)."""
    from llmnotes.model import expected_param_count
    from llmnotes.utils import check_memory, pick_device

    n = expected_param_count(config)
    # fp32 weights + gradients + two Adam moments, then the activations of one micro-batch: the
    # (B, T, C) residual stream kept for each layer's backward and the (B, H, T, T) attention
    # scores of one layer (the fused kernel may avoid them; the manual path does not).
    tokens = args.batch_size * config.block_size
    activations = 4 * tokens * (config.n_layer * 16 * config.n_embd + config.vocab_size)
    scores = 4 * args.batch_size * config.n_head * config.block_size ** 2
    check_memory(16 * n + activations + scores, f"training this model ({n:,} parameters, context "
                 f"{config.block_size:,}, batch {args.batch_size})",
                 "lower --block-size, --batch-size or the --preset", pick_device(device))


def run_train(args) -> int:
    """``llmnotes train``: train a GPT and leave a model directory in ``--out``."""
    import numpy as np

    from llmnotes.model import GPT, GPTConfig
    from llmnotes.pretrained import pretrained_dir

    out = Path(args.out)
    _check_out(args, out)
    tokenizer = None
    if not Path(args.data).suffix == ".bin" or args.tokenizer:
        from llmnotes.tokenizer import load_tokenizer

        if args.tokenizer and not Path(args.tokenizer).is_dir():
            raise FileNotFoundError(f"tokenizer directory {args.tokenizer!r} does not exist; pass --tokenizer DIR")
        tokenizer = load_tokenizer(args.tokenizer)  # None: the shipped one
    ckpt.check_writable(out)
    train, val = _resolve_data(args, tokenizer, out / "data")

    if args.init_from:
        model = GPT.from_pretrained(pretrained_dir(args.init_from)).float()
        if args.dropout:
            raise ValueError("--dropout cannot be changed with --init-from; drop it")
    else:
        overrides = {"dropout": args.dropout}
        if tokenizer is not None:
            overrides["vocab_size"] = tokenizer.vocab_size
        if args.block_size is not None:  # 0 must reach GPTConfig's check, not be ignored
            overrides["block_size"] = args.block_size
        config = GPTConfig.from_preset(args.preset, **overrides)
        _check_train_memory(config, args, args.device)
        model = GPT(config)
    vocab = model.config.vocab_size
    for name, arr in (("train", train), ("val", val)):
        top = int(np.max(arr)) if len(arr) else 0
        if top >= vocab:
            raise ValueError(f"{name} data holds token id {top}, outside the model's vocabulary of {vocab}; "
                             "pass the matching --tokenizer or --preset")

    if args.beta1 is not None or args.beta2 is not None:  # --beta1/--beta2: the old spelling of --betas
        args.betas = (args.betas[0] if args.beta1 is None else args.beta1,
                      args.betas[1] if args.beta2 is None else args.beta2)
    config = config_from_args(args, TrainConfig, args.config_fields, out_dir=str(out))
    trainer = Trainer(model, train, val, config)
    if trainer.is_main:
        print(f"model: {model.num_params():,} parameters; train {len(train):,} tokens "
              f"({len(trainer.train_data):,} windows), val {len(val):,} tokens; device {trainer.device}")
    start = time.perf_counter()
    try:
        history = trainer.fit()
    except KeyboardInterrupt:
        last = ckpt.latest_checkpoint(out) if trainer.is_main else None
        kept = (f"the last checkpoint ({last.name}) is kept; continue with --resume" if last
                else "no checkpoint was saved yet (see --save-interval)")
        raise KeyboardInterrupt(f"at step {trainer.step}; {kept}") from None
    # the full weights (gathered from every rank under FSDP), exported as a model directory
    weights = ckpt.model_state(trainer.model, trainer.raw_model, config.fsdp and trainer.distributed)
    if trainer.is_main:
        export = GPT(model.config)
        export.load_state_dict({k: v.to("cpu") for k, v in weights.items()})
        export.to(DTYPES[args.save_dtype]).save_pretrained(out)
        if tokenizer is not None:
            tokenizer.save(out)
        summary = {"command": "llmnotes " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["train"] else None,
                   "steps": trainer.step, "tokens_seen": trainer.tokens_seen,
                   "seconds": round(time.perf_counter() - start, 1),
                   "train_loss": next((r["loss"] for r in reversed(history) if "loss" in r), None),
                   "val_loss": next((r["val_loss"] for r in reversed(history) if "val_loss" in r), None),
                   "train_config": config.to_dict(), "model_config": model.config.to_dict()}
        atomic_write_text(out / "train_summary.json", json.dumps(summary, indent=2) + "\n")
        print(json.dumps({k: summary[k] for k in ("steps", "tokens_seen", "seconds", "train_loss", "val_loss")}))
    if trainer.distributed:
        import torch.distributed as dist

        dist.destroy_process_group()
    return 0
