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


# What a directory holds, by the file that marks it, and what loads it.
MARKERS = {"config.json": "model", "quantization.json": "quantized", "adapter_config.json": "adapter"}
ACCEPTED = ("a shipped name ({shipped}), a model directory (config.json + model.safetensors: written by "
            "`llmnotes train` or save_pretrained, or a Hugging Face GPT-2/Llama/Qwen download), a quantized "
            "directory (quantization.json: `llmnotes quantize --out`) or a LoRA adapter directory "
            "(adapter_config.json: `llmnotes finetune --lora`)")


def accepted() -> str:
    """What :func:`load_pretrained` accepts, for error messages."""
    return ACCEPTED.format(shipped=", ".join(repr(n) for n in SHIPPED))


def dir_kind(path: Path) -> str | None:
    """``"model"``, ``"quantized"`` or ``"adapter"`` by the marker file ``path`` holds (a model's
    config.json wins over an adapter_config.json beside it), or ``None``. A marker that is not a
    regular file (a directory, a broken link) is a ``ValueError`` naming it."""
    from llmnotes.load_checks import regular_file

    for marker, kind in MARKERS.items():
        if (path / marker).exists() or (path / marker).is_symlink():
            regular_file(path / marker, marker)  # a directory or a device there: say so
            return kind
    return None


def describe(path: Path, limit: int = 8) -> str:
    """The first few entries of a directory, for a message saying what was found instead."""
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    if not names:
        return "it is empty"
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return "it holds " + ", ".join(names[:limit]) + more


def pretrained_dir(name: str | os.PathLike) -> Path:
    """The directory of a shipped model (``"tiny"``) or of a local model, quantized model or adapter.

    Raises:
        TypeError: ``name`` is neither a string nor a path.
        FileNotFoundError: a shipped model's files are missing from the installation.
        ValueError: ``name`` is no shipped name and no directory, or a directory holding none of
            the accepted kinds; the message lists what was found and what is accepted.
    """
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"name must be a shipped model name or a directory path, got {type(name).__name__}")
    if isinstance(name, str) and name in SHIPPED:
        path = SHIPPED[name]
        if not path.is_dir() or dir_kind(path) is None:
            raise FileNotFoundError(f"the shipped model {name!r} is missing from {path}; "
                                    "reinstall llmnotes or train one with `llmnotes train`")
        return path
    path = Path(name)
    if not path.is_dir():
        what = "is a file, not a directory" if path.exists() else "is not a directory"
        raise ValueError(f"unknown pretrained model {str(name)!r}: it is not a shipped name and {what}; "
                         f"pass {accepted()}")
    if dir_kind(path) is None:
        raise ValueError(f"{str(path)!r} holds no config.json, quantization.json or adapter_config.json "
                         f"({describe(path)}); pass {accepted()}")
    return path


def load_pretrained(name: str | os.PathLike = "tiny", device: torch.device | str | None = None,
                    dtype: torch.dtype | None = None, for_decode: bool = False):
    """Load a model and its tokenizer: the one loader every ``llmnotes`` command goes through.

    Args:
        name: a shipped name -- ``"tiny"`` (the base model) or ``"tiny-instruct"`` (its
            instruction-tuned version) -- or the path of a model directory (``config.json``,
            ``model.safetensors``, ``vocab.json``, ``merges.txt``; llmnotes' own or a Hugging Face
            GPT-2/Llama/Qwen one, read by ``GPT.from_pretrained``), of a quantized directory
            (``quantization.json``, read by ``llmnotes.quantize.load_quantized``) or of a PEFT LoRA
            adapter directory (``adapter_config.json`` naming its base model), which is applied to
            its base and merged.
        device: where to put the model; ``None`` keeps it on the CPU (the shipped model is small).
        dtype: the floating-point dtype of the weights; ``None`` is float32 (the shipped model is
            stored in fp16 and loaded as fp32). A quantized model keeps the dtypes it was saved
            with, so it takes no ``dtype``.
        for_decode: also call ``model.prepare_for_decode()``: on a CPU each linear layer gets the
            layout measured fastest for generating (same tokens; ``llmnotes sample`` and
            ``llmnotes serve`` load this way). Off by default: it changes the layers in place.

    Returns:
        ``(model, tokenizer)``: a ``GPT`` in eval mode and a ``BPETokenizer``.

    Example:
        >>> model, tok = load_pretrained("tiny")
        >>> model.config.n_layer, tok.vocab_size
        (4, 2048)
    """
    from llmnotes.model import GPT

    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating-point torch.dtype such as torch.bfloat16, got {dtype!r}")
    path = pretrained_dir(name)
    kind = dir_kind(path)
    if kind == "adapter":
        model, tokenizer = _load_with_adapter(path, device, dtype)
        return (model.prepare_for_decode() if for_decode else model), tokenizer
    if kind == "quantized":
        from llmnotes.quantize import load_quantized

        if dtype is not None:
            raise ValueError(f"{path} is a quantized model, which keeps the dtypes it was saved with; "
                             "drop dtype (or quantize a float model loaded in that dtype)")
        model = load_quantized(path, device=device)
    else:
        model = GPT.from_pretrained(path, device=device).to(dtype or torch.float32).eval()
    tokenizer = _tokenizer(path)
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ValueError(f"{path}: the tokenizer has {tokenizer.vocab_size} ids but the model only "
                         f"{model.config.vocab_size}; they were not trained together")
    return (model.prepare_for_decode() if for_decode else model), tokenizer


def _tokenizer(path: Path):
    from llmnotes.tokenizer import BPETokenizer

    if not ((path / "vocab.json").is_file() and (path / "merges.txt").is_file()):
        raise ValueError(f"{path} holds a model but no tokenizer (vocab.json + merges.txt; {describe(path)}); "
                         "save one beside it with tokenizer.save(path)")
    return BPETokenizer.from_pretrained(path)


def _load_with_adapter(path: Path, device, dtype):
    """Base model named by the adapter's config, plus the adapter merged into its weights."""
    from llmnotes.finetune.lora import load_adapter, read_adapter_config

    base = read_adapter_config(path)["base_model_name_or_path"]
    if base not in SHIPPED and not Path(base).is_absolute() and (path / base).is_dir():
        base = str(path / base)  # a base given relative to the adapter directory
    base_dir = pretrained_dir(base)
    if dir_kind(base_dir) != "model":
        raise ValueError(f"{path}: its base {base!r} is a {dir_kind(base_dir)} directory; point it at a full "
                         "float model (a model directory or a shipped name)")
    model, tokenizer = load_pretrained(base, device, dtype)
    return load_adapter(model, path, merge=True).eval(), tokenizer
