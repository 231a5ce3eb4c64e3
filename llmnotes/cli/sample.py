"""``llmnotes sample``: print continuations of a prompt from a model."""

from __future__ import annotations

import argparse
import math
import sys

import torch

from llmnotes.cli.common import add_device_argument, add_model_argument, load_model
from llmnotes.sampling import generate, stream, truncate_at_stop


def add_sample_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``llmnotes sample``."""
    add_model_argument(parser)
    parser.add_argument("--prompt", default="", help="text to continue")
    parser.add_argument("--max-new-tokens", type=int, default=100)
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--min-p", type=float, default=None)
    parser.add_argument("--repetition-penalty", type=float, default=None)
    parser.add_argument("--num-samples", type=int, default=1)
    parser.add_argument("--stop", action="append", default=None, help="stop string (repeatable)")
    parser.add_argument("--seed", type=int, default=None)
    add_device_argument(parser)
    parser.add_argument("--stream", action="store_true", help="print tokens as they are produced")


def _check_sample_memory(model, num_samples: int) -> None:
    """Refuse a ``--num-samples`` whose KV cache and logits would not fit in memory."""
    from llmnotes.utils import check_memory

    c = model.config
    per_sample = 4 * (2 * c.n_layer * c.block_size * c.kv_heads * c.head_dim + 2 * c.vocab_size
                      + c.block_size * c.n_embd)
    check_memory(num_samples * per_sample, f"--num-samples {num_samples} (a KV cache per sample)",
                 "ask for fewer samples", model.device)


def run_sample(args: argparse.Namespace) -> int:
    """``llmnotes sample``: print continuations of ``--prompt``."""
    if args.num_samples < 1:
        raise ValueError(f"--num-samples must be >= 1, got {args.num_samples}")
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        raise ValueError(f"--temperature must be a finite number >= 0 (0 = greedy), got {args.temperature}")
    if args.max_new_tokens < 0:
        raise ValueError(f"--max-new-tokens must be >= 0, got {args.max_new_tokens}")
    from llmnotes.tokenizer import eos_id_of

    model, tokenizer = load_model(args.model, args.device)
    model = model.prepare_for_decode()
    _check_sample_memory(model, args.num_samples)
    generator = None
    if args.seed is not None:
        generator = torch.Generator(device=model.device).manual_seed(args.seed)
    ids = tokenizer.encode(args.prompt) if args.prompt else []
    eos = eos_id_of(tokenizer)
    if not ids:
        if eos is None:
            raise ValueError("--prompt is empty and the tokenizer has no end-of-text token to start from")
        ids = [eos]
    if len(ids) >= model.config.block_size:
        raise ValueError(f"the prompt is {len(ids)} tokens long but the model's context holds "
                         f"{model.config.block_size}, leaving no room to generate; shorten --prompt")
    idx = torch.tensor([ids] * args.num_samples, dtype=torch.long, device=model.device)
    max_new = min(args.max_new_tokens, model.config.block_size - idx.shape[1])
    kwargs = dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                  repetition_penalty=args.repetition_penalty, eos_id=eos, stop=args.stop,
                  tokenizer=tokenizer, generator=generator)
    if args.stream:
        if args.num_samples != 1:
            raise ValueError("--stream prints one sample; drop --num-samples or --stream")
        sys.stdout.write(args.prompt)
        produced: list[int] = []
        printed = ""
        for tok in stream(model, idx, max_new, **kwargs):
            if eos is not None and int(tok[0]) == eos:
                break
            produced.append(int(tok[0]))
            text = truncate_at_stop(tokenizer.decode(produced), args.stop)
            # A multi-byte character may span tokens: print only what has become stable text.
            if not text.endswith("\ufffd"):
                sys.stdout.write(text[len(printed):])
                sys.stdout.flush()
                printed = text
        sys.stdout.write("\n")
        return 0
    out = generate(model, idx, max_new, **kwargs)
    for row in out[:, len(ids):].tolist():
        if eos is not None and eos in row:
            row = row[: row.index(eos)]
        text = truncate_at_stop(tokenizer.decode(row), args.stop)
        print(args.prompt + text)
        if args.num_samples > 1:
            print("-" * 40)
    return 0
