"""The models shipped inside the package, loaded by name: ``load_pretrained("tiny")``.

``tiny`` is a 2.2M-parameter GPT (``GPTConfig.from_preset("tiny")``: 4 layers, 4 heads, 192
dimensions, context 256, vocabulary 2048) trained by ``llmnotes train`` on the shipped
*tinytales* corpus with the shipped tokenizer. The exact command, its step count, tokens seen and
losses are in ``benchmarks/RESULTS.md`` and in the model directory's ``train_summary.json``.
Its weights are stored in fp16 to keep the package small and are loaded back as fp32.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

ASSETS = Path(__file__).parent / "assets"
SHIPPED = {"tiny": ASSETS / "tiny", "tiny-instruct": ASSETS / "tiny-instruct"}


def pretrained_dir(name: str | os.PathLike) -> Path:
    """The directory of a shipped model (``"tiny"``) or a local model directory path."""
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"name must be a shipped model name or a directory path, got {type(name).__name__}")
    if isinstance(name, str) and name in SHIPPED:
        path = SHIPPED[name]
        if not ((path / "config.json").is_file() or (path / "adapter_config.json").is_file()):
            raise FileNotFoundError(f"the shipped model {name!r} is missing from {path}; "
                                    "reinstall llmnotes or train one with `llmnotes train`")
        return path
    path = Path(name)
    if path.is_dir():
        if not ((path / "config.json").is_file() or (path / "adapter_config.json").is_file()):
            raise ValueError(f"{str(path)!r} is a directory but holds no config.json; "
                             "pass a model directory written by `llmnotes train` or save_pretrained")
        return path
    raise ValueError(f"unknown pretrained model {str(name)!r}: choose one of {sorted(SHIPPED)} "
                     "or pass the path of a model directory")


def load_pretrained(name: str | os.PathLike = "tiny", device: torch.device | str | None = None):
    """Load a shipped or local model and its tokenizer.

    Args:
        name: a shipped name -- ``"tiny"`` (the base model) or ``"tiny-instruct"`` (its
            instruction-tuned version) -- or the path of a model directory (``config.json``,
            ``model.safetensors``, ``vocab.json``, ``merges.txt``) or of a PEFT LoRA adapter
            directory (``adapter_config.json`` naming its base model), which is applied to its
            base and merged.
        device: where to put the model; ``None`` keeps it on the CPU (the shipped model is small).

    Returns:
        ``(model, tokenizer)``: a ``GPT`` in eval mode with fp32 weights, and a ``BPETokenizer``.

    Example:
        >>> model, tok = load_pretrained("tiny")
        >>> model.config.n_layer, tok.vocab_size
        (4, 2048)
    """
    from llmnotes.model import GPT
    from llmnotes.tokenizer import BPETokenizer

    path = pretrained_dir(name)
    if _is_adapter_dir(path):
        return _load_with_adapter(path, device)
    model = GPT.from_pretrained(path, device=device).float().eval()
    tokenizer = BPETokenizer.from_pretrained(path)
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ValueError(f"{path}: the tokenizer has {tokenizer.vocab_size} ids but the model only "
                         f"{model.config.vocab_size}; they were not trained together")
    return model, tokenizer


def _is_adapter_dir(path: Path) -> bool:
    """A PEFT adapter directory (adapter config, no full model config of its own)."""
    return (path / "adapter_config.json").is_file() and not (path / "config.json").is_file()


def _load_with_adapter(path: Path, device):
    """Base model named by the adapter's config, plus the adapter merged into its weights."""
    from llmnotes.lora import load_adapter, read_adapter_config

    base = read_adapter_config(path)["base_model_name_or_path"]
    if base not in SHIPPED and not Path(base).is_absolute() and (path / base).is_dir():
        base = str(path / base)  # a base given relative to the adapter directory
    base_dir = pretrained_dir(base)
    if _is_adapter_dir(base_dir):
        raise ValueError(f"{path}: its base {base!r} is itself an adapter; point it at a full model")
    model, tokenizer = load_pretrained(base, device)
    return load_adapter(model, path, merge=True).eval(), tokenizer
