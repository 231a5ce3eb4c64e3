"""``llmnotes quantize``: quantize a model, report its size and perplexity, optionally save it."""

from __future__ import annotations

import os
from pathlib import Path

from llmnotes.cli.common import add_device_argument, add_model_argument, load_model
from llmnotes.quantize import (METHODS, QuantizedLayer, corpus_ids, model_bytes, perplexity, quantize_model,
                               save_quantized)


def add_quantize_arguments(p) -> None:
    add_model_argument(p, what="the float model to quantize: ")
    p.add_argument("--method", default="int8", choices=METHODS)
    p.add_argument("--group-size", type=int, default=None, help="group size for int4/nf4/gptq")
    p.add_argument("--tokens", type=int, default=20000, help="validation tokens for perplexity")
    p.add_argument("--out", help="directory to save the quantized model to; `llmnotes sample`, `serve` "
                                 "and `export` load it with --model DIR")
    add_device_argument(p)


def _check_quantize_out(args) -> None:
    """Refuse an ``--out`` that is empty, a file, or a float model directory (the input included)."""
    out = Path(args.out)
    if str(args.out) == "":
        raise ValueError("--out is empty; pass the directory to save the quantized model to")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; pass a directory (it is created if missing)")
    from llmnotes.pretrained import pretrained_dir

    source = pretrained_dir(args.model or "tiny")
    if os.path.realpath(out) == os.path.realpath(source) or (out / "config.json").exists():
        raise ValueError(f"--out {str(out)!r} holds a float model (config.json){' - the --model itself' if os.path.realpath(out) == os.path.realpath(source) else ''}; "
                         "choose a new directory for the quantized one")


def run_quantize(args) -> int:
    if args.tokens <= 0:
        raise ValueError(f"--tokens must be positive, got {args.tokens}")
    if args.out is not None:
        _check_quantize_out(args)
    model, tokenizer = load_model(args.model, args.device)
    if any(isinstance(m, QuantizedLayer) for m in model.modules()):
        raise ValueError(f"--model {args.model!r} is already quantized; quantize the float model it came from")
    val_ids, calib = corpus_ids(tokenizer, args.tokens, context=min(256, model.config.block_size))
    before, ppl0 = model_bytes(model), perplexity(model, val_ids)
    kw = {"group_size": args.group_size}
    if args.method in ("llm.int8", "gptq"):
        kw["calibration"] = calib.to(model.device)
    quantize_model(model, args.method, **kw)
    after, ppl1 = model_bytes(model), perplexity(model, val_ids)
    print(f"method      {args.method}")
    print(f"bytes       {before:,} -> {after:,} ({100 * after / before:.1f}%)")
    print(f"perplexity  {ppl0:.3f} -> {ppl1:.3f} ({100 * (ppl1 / ppl0 - 1):+.2f}%) on {val_ids.numel():,} tokens")
    if args.out:
        save_quantized(model, args.method, args.out, tokenizer)
        print(f"saved       {args.out} (load it with --model {args.out})")
    return 0


def load_for_quantize(model_dir: str | None, n_tokens: int = 20000, n_calib: int = 16):
    """The model to quantize (``load_pretrained``), validation ids (1-D) and calibration ids (N, T)."""
    from llmnotes.pretrained import load_pretrained

    model, tok = load_pretrained(model_dir or "tiny")
    return (model, *corpus_ids(tok, n_tokens, n_calib, min(256, model.config.block_size)))
