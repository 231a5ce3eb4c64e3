"""``llmnotes sample``: print continuations of a prompt from a model.

One flag per :class:`~llmnotes.sampling.GenerationConfig` field (derived from the dataclass, help
from its docs); the continuations come from :func:`~llmnotes.sampling.complete` (or, with
``--stream``, :func:`~llmnotes.sampling.stream`), the same decode loop as the Python route. The
model is loaded with ``load_pretrained(..., for_decode=True)``: a Python caller that loads it that
way decodes at the same speed.
"""

from __future__ import annotations

import argparse
import sys

import torch

from llmnotes.cli.common import add_config_arguments, add_device_argument, add_model_argument, load_model
from llmnotes.sampling import GenerationConfig, complete, encode_prompts, stream, truncate_at_stop


def _token_ids(text: str) -> list[int]:
    """``"12 7"`` -> ``[12, 7]``: one banned token sequence."""
    try:
        return [int(t) for t in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected token ids separated by spaces, got {text!r}") from None


def _bias(text: str) -> tuple[int, float]:
    """``"12=-5"`` -> ``(12, -5.0)``: one logit_bias entry."""
    token, sep, value = text.partition("=")
    try:
        return int(token), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected TOKEN_ID=BIAS such as 12=-5, got {text!r}") from None


def _compile_how(text: str) -> bool | str:
    return {"true": True, "false": False}.get(text.lower(), text)


# The flags whose value is not a plain number or string, and this command's own defaults.
FLAG_EXTRAS = {
    "max_new_tokens": {"default": 100},
    "temperature": {"default": 0.8},
    "bad_words_ids": {"type": _token_ids, "action": "append", "metavar": "IDS",
                      "help": "{doc} Repeat the flag once per sequence, ids separated by spaces: --bad-words-ids '12 7'."},
    "logit_bias": {"type": _bias, "action": "append", "metavar": "ID=BIAS",
                   "help": "{doc} Repeat the flag once per token: --logit-bias 12=-5."},
    "stop": {"action": "append", "help": "{doc} Repeat the flag for several strings."},
    "compile": {"type": _compile_how, "nargs": "?", "const": True, "metavar": "MODE",
                "help": "{doc} --compile alone means True. (default: off)"},
}


def add_sample_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``llmnotes sample``: the model and the prompt, then one flag per
    ``GenerationConfig`` field."""
    add_model_argument(parser)
    parser.add_argument("--prompt", default="", help="text to continue")
    parser.add_argument("--num-samples", type=int, default=1)
    add_device_argument(parser)
    parser.add_argument("--stream", action="store_true", help="print tokens as they are produced")
    settings = parser.add_argument_group("sampling (GenerationConfig)")
    parser.set_defaults(config_fields=add_config_arguments(settings, GenerationConfig, extra=FLAG_EXTRAS))


def generation_config(args: argparse.Namespace, tokenizer) -> GenerationConfig:
    """The validated :class:`GenerationConfig` the flags describe; ``eos_id`` defaults to the tokenizer's."""
    from llmnotes.tokenizer import eos_id_of

    values = {name: getattr(args, name) for name in args.config_fields}
    if values["logit_bias"] is not None:
        values["logit_bias"] = dict(values["logit_bias"])
    if values["eos_id"] is None:
        values["eos_id"] = eos_id_of(tokenizer)
    return GenerationConfig(**values)


def _check_sample_memory(model, num_samples: int) -> None:
    """Refuse a ``--num-samples`` whose KV cache and logits would not fit in memory."""
    from llmnotes.utils import check_memory

    c = model.config
    per_sample = 4 * (2 * c.n_layer * c.block_size * c.n_kv_head * c.head_dim + 2 * c.vocab_size
                      + c.block_size * c.n_embd)
    check_memory(num_samples * per_sample, f"--num-samples {num_samples} (a KV cache per sample)",
                 "ask for fewer samples", model.device)


def run_sample(args: argparse.Namespace) -> int:
    """``llmnotes sample``: print continuations of ``--prompt``."""
    if args.num_samples < 1:
        raise ValueError(f"--num-samples must be >= 1, got {args.num_samples}")
    if args.stream and args.num_samples != 1:
        raise ValueError("--stream prints one sample; drop --num-samples or --stream")
    model, tokenizer = load_model(args.model, args.device, for_decode=True)
    config = generation_config(args, tokenizer)
    _check_sample_memory(model, args.num_samples)
    idx, _ = encode_prompts(tokenizer, [args.prompt], config.eos_id, config.pad_id)
    if idx.shape[1] >= model.config.block_size:
        raise ValueError(f"the prompt is {idx.shape[1]} tokens long but the model's context holds "
                         f"{model.config.block_size}, leaving no room to generate; shorten --prompt")
    # Ask for no more than the context has room for (a long --max-new-tokens is clipped, not refused).
    config = config.replace(max_new_tokens=min(config.max_new_tokens, model.config.block_size - idx.shape[1]))
    if args.stream:
        _print_stream(model, tokenizer, args.prompt, idx.to(model.device), config)
        return 0
    for text in complete(model, tokenizer, [args.prompt] * args.num_samples, config):
        print(args.prompt + text)
        if args.num_samples > 1:
            print("-" * 40)
    return 0


def _print_stream(model, tokenizer, prompt: str, idx: torch.Tensor, config: GenerationConfig) -> None:
    """Print the continuation as it is made; a character split across tokens waits for its end."""
    sys.stdout.write(prompt)
    produced: list[int] = []
    printed = ""
    for tok in stream(model, idx, config=config, tokenizer=tokenizer):
        if config.eos_id is not None and int(tok[0]) == config.eos_id:
            break
        produced.append(int(tok[0]))
        text = truncate_at_stop(tokenizer.decode(produced), config.stop)
        if not text.endswith("\ufffd"):
            sys.stdout.write(text[len(printed):])
            sys.stdout.flush()
            printed = text
    sys.stdout.write("\n")
