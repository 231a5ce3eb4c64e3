"""One C++ call per decoded token for GPT-2-style models on a CPU (optional, measured).

A decode step of GPT-2 small with int8 weights spends about as long in the Python interpreter
(module calls, views, checks between the operators: tens of microseconds per block) as in its
matrix-vector products. :func:`fuse_for_decode` hands the whole stack of blocks to
``DecodePlan`` in ``llmnotes/csrc/decode_kernels.cpp``, which runs, for one new token, the
same operators the Python forward pass runs (ATen's ``layer_norm``,
``scaled_dot_product_attention`` and ``gelu``, and :mod:`llmnotes.native`'s kernels for the
linear layers) in the same order, writing keys and values into the model's own ``KVCache``.
With the same kernels underneath, its hidden states equal the Python path's bit for bit
(``tests/test_fused.py``).

It applies only where every piece is one it knows: learned positions, LayerNorm, the GELU MLP,
as many key/value heads as query heads, no QK-norm, one dtype throughout, and every linear
layer either an ``nn.Linear`` with a row-major float32 weight (bfloat16 on CPUs with
AVX512-BF16) or a ``QuantizedLinear`` in a format the native kernels read. :func:`fusable` says
why not otherwise. Its operators run below autograd's dispatch (decoding records no graph). ``GPT.forward`` takes the fused step for the
plain decode case (one sequence, one new token, a growing cache, no attention mask, no
gradient, eval mode) and the Python path for everything else. A plan notices when the tensors
it reads are written in place or moved (``load_state_dict``, an optimizer step, ``.to()``) and
steps aside; after replacing whole layers, call ``prepare_for_decode`` again.

:func:`llmnotes.fast_linear.prepare_for_decode` calls :func:`fuse_for_decode` with
``measure=True``: it keeps the fused step only if a few decode steps measure faster than the
Python path on this machine, or, where a shape's fastest layout alone is one the fused step
cannot read, if whole decode steps measure faster fused than with those layouts in Python.
"""

from __future__ import annotations

import statistics
import time
import weakref

import torch
import torch.nn as nn

from llmnotes import native
from llmnotes.utils import tensor_stamp

MARGIN = 0.0  # kept when it measures faster at all: it computes the same bits, so a wrong call costs only time
# Layer classes whose forward is F.linear on their float weight; llmnotes.fast_linear adds its
# decode-time subclasses (which compute the same thing faster) when it is imported.
FLOAT_LINEARS: tuple[type, ...] = (nn.Linear,)

# model -> (its tensors, their stamp, DecodePlan); weak keys so a dropped model frees its plan
_PLANS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_STATUS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # model -> last fuse_for_decode message


def fusable(model: nn.Module) -> str | None:
    """None if :func:`fuse_for_decode` can take ``model``, else the reason it cannot."""
    if native.kernels() is None:
        return f"llmnotes.native is unavailable: {native.unavailable()}"
    config = getattr(model, "config", None)
    if config is None or not hasattr(model, "transformer"):
        return "not an llmnotes GPT"
    checks = {"learned position embeddings": config.pos_emb == "learned",
              "LayerNorm": config.norm != "rmsnorm",
              "the GELU MLP": config.mlp not in ("swiglu", "moe"),
              "as many key/value heads as query heads": config.n_kv_head == config.n_head,
              "no QK-norm": not config.qk_norm,
              "no sliding window": config.sliding_window is None}
    missing = [name for name, ok in checks.items() if not ok]
    if missing:
        return "needs " + ", ".join(missing)
    # one dtype throughout: float32 (float or llmnotes-quantized linears) or bfloat16
    dtype = model.transformer.wte.weight.dtype
    if dtype not in (torch.float32, torch.bfloat16):
        return f"weights are {dtype}; the fused step runs float32 or bfloat16 models"
    for name, module in _linears(model):
        described = _describe(module)
        if described is None or (dtype == torch.bfloat16) != (described[0] == "bf16"):
            return f"{name} ({type(module).__name__}) is not a layer the native kernels run"
    for name, module in _norms(model):
        if type(module) is not nn.LayerNorm or module.weight is None or module.weight.dtype != dtype:
            return f"{name} is not a {str(dtype).split('.')[-1]} nn.LayerNorm"
    return None


def fuse_for_decode(model: nn.Module, enable: bool = True, measure: bool = True) -> str:
    """Give ``model`` the fused decode step; return what happened, in words.

    ``measure=True`` keeps it only if it decodes faster than the Python path here (a few steps
    each, interleaved). ``enable=False`` removes it.
    """
    _PLANS.pop(model, None)
    message = _fuse(model, enable, measure)
    _STATUS[model] = message
    return message


def status(model: nn.Module) -> str:
    """What the last :func:`fuse_for_decode` on ``model`` did, in words."""
    return _STATUS.get(model, "fused decode step never considered (see fuse_for_decode)")


def _fuse(model: nn.Module, enable: bool, measure: bool) -> str:
    if not enable:
        return "fused decode step off"
    reason = fusable(model)
    if reason is not None:
        return f"fused decode step not used: {reason}"
    tensors = _tensors(model)
    _PLANS[model] = (tensors, tensor_stamp(tensors), _build(model))
    if not measure:
        return "fused decode step on"
    fused_ms, python_ms = _time_steps(model)
    verdict = f"{fused_ms:.2f} ms per token vs {python_ms:.2f} ms in Python"
    if fused_ms < (1 - MARGIN) * python_ms:
        return f"fused decode step on: {verdict}"
    _PLANS.pop(model, None)
    return f"fused decode step not used: {verdict}"


def is_fused(model: nn.Module) -> bool:
    """True if ``model`` decodes through a fused step (see :func:`fuse_for_decode`)."""
    return model in _PLANS


def step(model: nn.Module, x: torch.Tensor, cache) -> torch.Tensor | None:
    """The final hidden state for embedding ``x`` (1, 1, C) of one new token, through the
    fused step, or None where the model has none (or its tensors changed since it was built:
    then the plan is dropped and the Python path runs)."""
    entry = _PLANS.get(model)
    if entry is None:
        return None
    tensors, stamp, plan = entry
    if tensor_stamp(tensors) != stamp:  # weights written in place or moved (.data, .to()): stale
        _PLANS.pop(model, None)
        return None
    return plan.step(x.contiguous(), cache.seq_len, cache.k, cache.v)


# ---------------------------------------------------------------------------------------------


BLOCK_LINEARS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")  # DecodePlan.add_layer's order


def _linears(model):
    for i, block in enumerate(model.transformer.h):
        for name in BLOCK_LINEARS:
            yield f"transformer.h.{i}.{name}", block.get_submodule(name)


def _norms(model):
    for i, block in enumerate(model.transformer.h):
        yield f"transformer.h.{i}.ln_1", block.ln_1
        yield f"transformer.h.{i}.ln_2", block.ln_2
    yield "transformer.ln_f", model.transformer.ln_f


def _describe(module: nn.Module) -> tuple | None:
    """``(kind, weight, scale, bias, group)`` for DecodePlan, or None if no kernel reads it."""
    if type(module) in FLOAT_LINEARS:
        w = module.weight
        kind = {torch.float32: "f32", torch.bfloat16: "bf16" if native.bf16_kernel() else None}.get(w.dtype)
        if kind is None or not w.is_contiguous() or w.device.type != "cpu":
            return None
        weight, bias = _weight_bias(module)
        return (kind, weight, None, bias, 0)
    fmt = module._native_format() if hasattr(module, "_native_format") else None
    if fmt is None or module.qweight.device.type != "cpu":
        return None
    return module._packed(fmt).operands  # the layer's own packed copy: packed once, shared


def _weight_bias(module: nn.Module) -> tuple:
    """A LayerNorm's or linear layer's (weight, bias or None), detached from autograd."""
    return module.weight.detach(), None if module.bias is None else module.bias.detach()


def _build(model):
    c = model.config
    ln_f = model.transformer.ln_f
    plan = native.kernels().DecodePlan(c.n_head, c.head_dim, float(ln_f.eps), *_weight_bias(ln_f))
    for block in model.transformer.h:
        plan.add_layer(*_weight_bias(block.ln_1), *_weight_bias(block.ln_2),
                       *(_describe(block.get_submodule(name)) for name in BLOCK_LINEARS))
    return plan


def _tensors(model) -> list:
    """Every tensor the plan reads (the blocks' and ln_f's parameters and buffers)."""
    modules = [*model.transformer.h, model.transformer.ln_f]
    return [t for m in modules for t in (*m.parameters(), *m.buffers())]


@torch.inference_mode()
def decode_step_ms(model: nn.Module, steps: int = 4) -> float:
    """Milliseconds per decode step of ``model`` as it stands (fused or not): ``steps`` one-token
    steps on a scratch cache, after one untimed step."""
    token = torch.zeros(1, 1, dtype=torch.long, device=model.transformer.wte.weight.device)
    cache = model.make_cache(1, steps + 2)
    model(token, cache=cache)
    t0 = time.perf_counter()
    for _ in range(steps):
        model(token, cache=cache)
    return (time.perf_counter() - t0) / steps * 1e3


def set_status(model: nn.Module, message: str) -> None:
    """Record what a caller that decided about the fused step (``prepare_for_decode``) did."""
    _STATUS[model] = message


def _time_steps(model, steps: int = 4, rounds: int = 3) -> tuple[float, float]:
    """Median ms per decode step, fused and Python, on a scratch cache (interleaved rounds)."""
    entry = _PLANS[model]
    times: dict[bool, list[float]] = {True: [], False: []}
    for r in range(rounds + 1):  # round 0 warms up
        for fused in (True, False):
            if not fused:
                _PLANS.pop(model, None)
            ms = decode_step_ms(model, steps)
            if r:
                times[fused].append(ms)
            _PLANS[model] = entry
    return statistics.median(times[True]), statistics.median(times[False])
