"""Quantizing whole models, and measuring what it costs.

``quantize_model(model, method)`` swaps a model's ``nn.Linear`` layers for quantized ones;
``"gptq"`` (Frantar et al. 2022, arXiv:2210.17323) is in :mod:`llmnotes.quantize.gptq`.
``model_bytes`` counts storage; ``quality_table`` puts perplexity and size side by side.
"""

from __future__ import annotations

import copy
from typing import Iterable

import torch
import torch.nn as nn

from llmnotes.evaluate import perplexity
from llmnotes.quantize.gptq import gptq_quantize_model
from llmnotes.quantize.layers import KERNELS, LLMInt8Linear, NF4Linear, QuantizedEmbedding, QuantizedLinear
from llmnotes.quantize.primitives import _check_bits
from llmnotes.utils import set_module

METHODS = ("int8", "int4", "nf4", "llm.int8", "gptq")

# ---------------------------------------------------------------------------------------------
# 4. Whole models
# ---------------------------------------------------------------------------------------------


def _tied_weights(model: nn.Module) -> set[int]:
    """ids of Linear weights shared with an embedding (e.g. GPT-2's lm_head = wte)."""
    emb = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    return {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear) and id(m.weight) in emb}


def linear_layers(model: nn.Module, skip: Iterable[str] = ("lm_head",)) -> list[tuple[str, nn.Linear]]:
    """The ``(name, nn.Linear)`` pairs ``quantize_model`` replaces, in module order.

    Skipped: names in ``skip`` and any Linear whose weight is tied to an embedding. GPT-2's
    ``lm_head`` is both: it shares its matrix with the token embedding ``wte``, which must stay
    float for lookups, so quantizing the head would *add* a second (quantized) copy rather than
    save memory; and the output layer is the most error-sensitive one (llama.cpp too keeps it
    at higher precision).
    """
    skip, tied = set(skip), _tied_weights(model)
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, nn.Linear) and n not in skip and id(m.weight) not in tied]


def _check_calibration(calibration, method: str) -> torch.Tensor:
    if calibration is None:
        raise ValueError(f"method {method!r} needs calibration=token ids (N, T) (LongTensor) to see "
                         "real activations; e.g. a few hundred tokens of training text")
    if not isinstance(calibration, torch.Tensor) or calibration.dtype != torch.long or calibration.ndim != 2:
        raise TypeError("calibration must be a LongTensor of token ids with shape (N, T)")
    return calibration


@torch.no_grad()
def run_calibration(model: nn.Module, calibration: torch.Tensor, batch_size: int = 8) -> None:
    """Run ``model`` over calibration ids (N, T) in batches (hooks collect what they need)."""
    device = next(model.parameters()).device
    for i in range(0, calibration.shape[0], batch_size):
        model(calibration[i:i + batch_size].to(device))


@torch.no_grad()
def activation_absmax(model: nn.Module, layers: list[tuple[str, nn.Linear]],
                      calibration: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-input-column max |x| (in_features,) seen by each layer over the calibration data."""
    stats: dict[str, torch.Tensor] = {}

    def hook(name):
        def fn(module, inputs, output):
            m = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(0).float()
            stats[name] = torch.maximum(stats[name], m) if name in stats else m
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in layers]
    try:
        run_calibration(model, calibration)
    finally:
        for h in handles:
            h.remove()
    return stats


def quantize_model(model: nn.Module, method: str, *, group_size: int | None = None, bits: int | None = None,
                   symmetric: bool | None = None, calibration: torch.Tensor | None = None,
                   threshold: float = 6.0, double_quant: bool = False, damp: float = 0.01,
                   act_order: bool = False, column_batch: int = 128,
                   skip: Iterable[str] = ("lm_head",), embeddings: bool = False) -> nn.Module:
    """Replace ``model``'s ``nn.Linear`` layers by quantized ones, in place; return ``model``.

    Methods:
        ``"int8"``: per-output-channel absmax int8 (``group_size`` optional).
        ``"int4"``: 4-bit round-to-nearest in groups of ``group_size`` (default 128, clamped to
        in_features), zero-point unless ``symmetric=True``.
        ``"nf4"``: QLoRA NormalFloat-4. Here ``group_size`` is the NF4 block: the values sharing
        one absmax (``NF4Linear``'s ``quant_block``, bitsandbytes' ``blocksize``; default 64,
        must be even), counted over the flattened weight. ``double_quant`` option.
        ``"llm.int8"``: LLM.int8(); input columns whose calibration activations exceed
        ``threshold`` stay fp16. Needs ``calibration``.
        ``"gptq"``: GPTQ with ``bits`` (4), ``group_size`` (128), ``damp`` (1% of mean diag H),
        lazy batches of ``column_batch`` columns (speed only), ``act_order``. Needs ``calibration``.

    Args:
        calibration: LongTensor (N, T) of token ids, for the data-aware methods.
        skip: module names to leave in float (tied layers are always left; see ``linear_layers``).
        embeddings: also store every ``nn.Embedding`` as int8 rows (``QuantizedEmbedding``); an
            output layer tied to an embedding then shares its int8 table, so the tie (one
            matrix in memory) survives. Off by default: the output layer is the most
            error-sensitive matrix, and in large models embeddings are a few percent of the bytes.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if bits is not None:
        _check_bits(bits)
        if method in ("int8", "llm.int8", "nf4") and bits != {"int8": 8, "llm.int8": 8, "nf4": 4}[method]:
            raise ValueError(f"method {method!r} fixes the bit width; got bits={bits}")
        if method == "int4" and bits != 4:
            raise ValueError(f"method 'int4' is 4-bit, got bits={bits}; use method='int8' for 8 bits")
    if group_size is not None and (not isinstance(group_size, int) or group_size <= 0):
        raise ValueError(f"group_size must be a positive integer or None, got {group_size!r}")
    if method == "nf4" and group_size is not None and group_size % 2:
        raise ValueError(f"for method 'nf4', group_size is the NF4 block (values sharing one absmax) "
                         f"and must be even (two 4-bit codes per byte), got {group_size}")
    if double_quant and method != "nf4":
        raise ValueError(f"double_quant applies to method 'nf4' only, not {method!r}")
    if threshold <= 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    layers = linear_layers(model, skip)
    if embeddings:
        quantize_embeddings(model)

    if method == "gptq":
        return gptq_quantize_model(model, layers, _check_calibration(calibration, method), bits=bits or 4,
                                   group_size=group_size or 128, symmetric=bool(symmetric), damp=damp,
                                   act_order=act_order, column_batch=column_batch)
    if method == "llm.int8":
        stats = activation_absmax(model, layers, _check_calibration(calibration, method))
        for name, lin in layers:
            cols = torch.nonzero(stats[name] > threshold).flatten().tolist()
            set_module(model, name, LLMInt8Linear.from_linear(lin, cols))
        return model
    for name, lin in layers:
        if method == "int8":
            new = QuantizedLinear.from_linear(lin, 8, group_size, symmetric=True if symmetric is None else symmetric)
        elif method == "int4":
            new = QuantizedLinear.from_linear(lin, 4, group_size or 128, symmetric=bool(symmetric))
        else:  # nf4
            new = NF4Linear.from_linear(lin, quant_block=group_size or 64, double_quant=double_quant)
        set_module(model, name, new)
    return model


def quantize_embeddings(model: nn.Module) -> nn.Module:
    """Swap every ``nn.Embedding`` for a ``QuantizedEmbedding``; Linear layers tied to one of
    them become ``QuantizedLinear`` views of the same int8 table. In place; returns ``model``."""
    embs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Embedding)]
    tied = {id(m.weight): n for n, m in embs}
    heads = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and id(m.weight) in tied]
    new = {}
    for name, emb in embs:
        new[name] = QuantizedEmbedding.from_embedding(emb)
        set_module(model, name, new[name])
    for name, lin in heads:
        set_module(model, name, new[tied[id(lin.weight)]].tied_head())
    return model


def set_kernel(model: nn.Module, kernel: str) -> nn.Module:
    """Set how every ``QuantizedLinear`` in ``model`` computes: ``"auto"`` (default: the
    fastest CPU kernel where one exists and measures faster than dequantizing), ``"fast"`` (the
    fastest kernel wherever one exists), ``"native"`` (llmnotes' own kernel, ``llmnotes.native``,
    for one-row float32 inputs wherever it builds; otherwise as ``"fast"``) or ``"reference"``
    (always dequantize-then-matmul). In place; returns ``model``."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    for m in model.modules():
        if isinstance(m, QuantizedLinear):
            m.kernel = kernel
    return model


def model_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and persistent buffer, each shared tensor counted once."""
    seen, total = set(), 0
    for t in model.state_dict(keep_vars=True).values():
        key = (t.data_ptr(), t.numel(), t.dtype)
        if key not in seen:
            seen.add(key)
            total += t.numel() * t.element_size()
    return total


# ---------------------------------------------------------------------------------------------
# 5. Quality vs size, and the command line
# ---------------------------------------------------------------------------------------------


# name -> (method, kwargs) for quality_table; None is "no quantization" with a dtype
TABLE_ROWS: dict[str, tuple[str | None, dict]] = {
    "fp32": (None, {"dtype": torch.float32}),
    "bf16": (None, {"dtype": torch.bfloat16}),
    "int8": ("int8", {}),
    "int8+emb": ("int8", {"embeddings": True}),
    "int4": ("int4", {}),
    "nf4": ("nf4", {}),
    "llm.int8": ("llm.int8", {}),
    "gptq-4bit": ("gptq", {"bits": 4}),
}


def quality_table(model: nn.Module, val_ids: torch.Tensor, calibration: torch.Tensor,
                  rows: Iterable[str] = tuple(TABLE_ROWS), group_size: int = 64,
                  context: int | None = None) -> list[dict]:
    """Perplexity and bytes of ``model`` under each scheme in ``rows`` (see ``TABLE_ROWS``).

    4-bit schemes (int4, gptq-4bit) use ``group_size``; the model is copied for each row.
    Returns dicts with keys ``name``, ``ppl``, ``bytes``, ``delta`` (relative ΔPPL vs fp32).
    """
    out, base = [], None
    for name in rows:
        if name not in TABLE_ROWS:
            raise ValueError(f"unknown row {name!r}; choose from {', '.join(TABLE_ROWS)}")
        method, kw = TABLE_ROWS[name]
        m = copy.deepcopy(model).eval()
        if method is None:
            m = m.to(kw["dtype"])
        else:
            extra = {"group_size": group_size} if method in ("int4", "gptq") else {}
            if method in ("llm.int8", "gptq"):
                extra["calibration"] = calibration
            quantize_model(m, method, **{k: v for k, v in kw.items()}, **extra)
        ppl = perplexity(m, val_ids, block_size=context)
        base = ppl if name == "fp32" else base
        out.append({"name": name, "ppl": ppl, "bytes": model_bytes(m),
                    "delta": None if base is None else ppl / base - 1.0})
    return out


def format_table(rows: list[dict]) -> str:
    """A Markdown table of ``quality_table``'s rows."""
    fp32 = next((r["bytes"] for r in rows if r["name"] == "fp32"), None)
    lines = ["| scheme | perplexity | ΔPPL vs fp32 | bytes | size vs fp32 |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        delta = "" if r["delta"] is None else f"{100 * r['delta']:+.2f}%"
        size = "" if fp32 is None else f"{100 * r['bytes'] / fp32:.1f}%"
        lines.append(f"| {r['name']} | {r['ppl']:.3f} | {delta} | {r['bytes']:,} | {size} |")
    return "\n".join(lines)


def corpus_ids(tok, n_tokens: int = 20000, n_calib: int = 16, context: int = 256):
    """Validation ids (1-D, ``n_tokens + 1``) and calibration ids (``n_calib``, ``context``) from the
    shipped corpus, encoded with ``tok``: what ``llmnotes quantize`` measures and calibrates with.

    Validation text is the shipped corpus' ``val`` split; calibration sequences come from the
    ``train`` split (as GPTQ calibrates on training-like text), never from the text measured.
    """
    from llmnotes.data import load_corpus

    # a prefix of the text long enough for n_tokens (a token is at most a few characters here)
    val_text = load_corpus("val")[: 8 * (n_tokens + 1)]
    val = torch.tensor(tok.encode(val_text, allowed_special="all")[: n_tokens + 1], dtype=torch.long)
    T = context
    train = tok.encode(load_corpus("train")[: 40 * n_calib * T], allowed_special="all")
    if len(train) < n_calib * T:
        raise ValueError(f"the training text gives only {len(train)} calibration tokens, need {n_calib * T}")
    calib = torch.tensor(train[: n_calib * T], dtype=torch.long).view(n_calib, T)
    return val, calib
