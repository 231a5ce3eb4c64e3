"""Quantization: store a model's weights in 8 or 4 bits instead of 32.

Smallest pieces first:

1. ``absmax_quantize`` / ``zeropoint_quantize`` / ``dequantize``: map floats to a grid of
   ``2**bits`` integers and back, for a whole tensor, per channel (``dim``) or per group of
   ``group_size`` consecutive values. Round-to-nearest never errs by more than half a step.
2. ``pack_int4`` / ``unpack_int4``: two 4-bit codes in one byte.
3. ``QuantizedLinear``: a drop-in ``nn.Linear`` holding integer codes and scales; its readable
   forward dequantizes the weight and multiplies (on a CPU, int8 and 4-bit layers run integer
   kernels instead where they measure faster: ``qkernels.py``). ``NF4Linear`` (QLoRA's NormalFloat-4, Dettmers et al.
   2023, arXiv:2305.14314) and ``LLMInt8Linear`` (LLM.int8() with 16-bit outlier columns,
   Dettmers et al. 2022, arXiv:2208.07339) are variants of it.
4. ``quantize_model(model, method)`` swaps a model's ``nn.Linear`` layers; ``"gptq"``
   (Frantar et al. 2022, arXiv:2210.17323) lives in ``gptq.py``. ``model_bytes`` counts storage.
5. ``quality_table`` and the ``llmnotes quantize`` command: perplexity and size side by side.

GGUF export for llama.cpp is in ``gguf.py`` and re-exported here as ``export_gguf``.
"""

from __future__ import annotations

import copy
import math
import weakref
from typing import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from llmnotes.evaluate import perplexity  # re-exported: the pages' `llmnotes.quantize.perplexity`
from llmnotes.utils import set_module

METHODS = ("int8", "int4", "nf4", "llm.int8", "gptq")
KERNELS = ("auto", "fast", "reference")

# layer -> (stamp of its tensors, packed kernel callable); weak keys so a dropped layer frees its
# packed copy, and kept outside the module so deepcopy/pickle never see the opaque packed object
_PACKED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()

# ---------------------------------------------------------------------------------------------
# 1. Quantize a tensor: absmax (symmetric) and zero-point (asymmetric)
# ---------------------------------------------------------------------------------------------


def _check_bits(bits: int) -> None:
    if bits not in (4, 8):
        raise ValueError(f"bits must be 4 or 8, got {bits!r}")


def _check_tensor(x: torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")


def _reduce_view(x: torch.Tensor, dim: int | None, group_size: int | None) -> tuple[torch.Tensor, int | tuple]:
    """Return (view of x, dims to reduce) for a per-tensor, per-``dim`` or per-group statistic."""
    if dim is not None and group_size is not None:
        raise ValueError("pass dim or group_size, not both (groups always run along the last dim)")
    if group_size is None:
        return x, (tuple(range(x.ndim)) if dim is None else dim)
    if not isinstance(group_size, int) or group_size <= 0:
        raise ValueError(f"group_size must be a positive integer, got {group_size!r}")
    if x.ndim == 0 or x.shape[-1] % group_size != 0:
        raise ValueError(f"the last dimension ({x.shape[-1] if x.ndim else 'scalar'}) must be a multiple "
                         f"of group_size={group_size}; pick a group size that divides it")
    return x.reshape(*x.shape[:-1], x.shape[-1] // group_size, group_size), -1


def absmax_quantize(x: torch.Tensor, bits: int = 8, dim: int | None = None,
                    group_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric quantization: ``q = round(x / s)`` with ``s = max|x| / (2**(bits-1) - 1)``.

    Zero maps to exactly 0 and the grid is symmetric: 8 bits use [-127, 127], 4 bits [-7, 7].

    Args:
        x: float tensor.
        bits: 8 or 4.
        dim: the dimension the max is taken over (one scale per slice along the others; the
            scale keeps that dim with size 1). ``None`` means one scale for the whole tensor.
            For a weight (out, in), ``dim=1`` gives one scale per output channel.
        group_size: one scale per ``group_size`` consecutive values of the last dimension; the
            scale then has shape (..., n // group_size).

    Returns:
        ``(q, scale)``: int8 codes shaped like ``x`` and float32 scales.

    Example:
        >>> q, s = absmax_quantize(torch.tensor([0.5, -1.27, 0.01]))
        >>> q.tolist(), round(s.item(), 4)
        ([50, -127, 1], 0.01)
    """
    _check_tensor(x)
    _check_bits(bits)
    qmax = 2 ** (bits - 1) - 1
    xv, red = _reduce_view(x.float(), dim, group_size)
    amax = xv.abs().amax(dim=red, keepdim=True)
    scale = amax / qmax
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # all-zero (or subnormal) slice: any scale works
    q = torch.round(xv / scale).clamp(-qmax, qmax).to(torch.int8)
    if group_size is not None:
        return q.reshape(x.shape), scale.squeeze(-1)
    return q, (scale.reshape(()) if dim is None else scale)


def zeropoint_quantize(x: torch.Tensor, bits: int = 8, dim: int | None = None,
                       group_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric quantization: ``q = round(x / s) + z`` on the unsigned grid [0, 2**bits - 1].

    The range [min, max] (widened to include 0, so 0 stays exactly representable, as in
    Jacob et al. 2018, arXiv:1712.05877) is spread over all ``2**bits`` levels:
    ``s = (max - min) / (2**bits - 1)``, ``z = round(-min / s)``. Skewed data (e.g. all
    positive) uses the full grid, where absmax would waste half of it.

    Args:
        x, bits, dim, group_size: as for ``absmax_quantize``.

    Returns:
        ``(q, scale, zero)``: uint8 codes shaped like ``x``, float32 scales, uint8 zero points.
    """
    _check_tensor(x)
    _check_bits(bits)
    qmax = 2 ** bits - 1
    xv, red = _reduce_view(x.float(), dim, group_size)
    lo = xv.amin(dim=red, keepdim=True).clamp(max=0)
    hi = xv.amax(dim=red, keepdim=True).clamp(min=0)
    scale = (hi - lo) / qmax
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero = torch.round(-lo / scale).clamp(0, qmax)
    q = (torch.round(xv / scale) + zero).clamp(0, qmax).to(torch.uint8)
    zero = zero.to(torch.uint8)
    if group_size is not None:
        return q.reshape(x.shape), scale.squeeze(-1), zero.squeeze(-1)
    if dim is None:
        return q, scale.reshape(()), zero.reshape(())
    return q, scale, zero


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None = None,
               group_size: int | None = None) -> torch.Tensor:
    """Back to float32: ``(q - zero) * scale`` (``zero=None`` for absmax codes).

    Pass the same ``group_size`` the codes were made with; the scales (..., n // group_size)
    are then repeated over each group.
    """
    if not isinstance(q, torch.Tensor) or not isinstance(scale, torch.Tensor):
        raise TypeError("q and scale must be torch.Tensors (as returned by absmax/zeropoint_quantize)")
    if group_size is not None:
        scale = scale.repeat_interleave(group_size, dim=-1)
        zero = None if zero is None else zero.repeat_interleave(group_size, dim=-1)
    x = q.float() if zero is None else q.float() - zero.float()
    return x * scale.float()


# ---------------------------------------------------------------------------------------------
# 2. Two 4-bit codes per byte
# ---------------------------------------------------------------------------------------------


def fp16_scale(scale: torch.Tensor) -> torch.Tensor:
    """Round scales *up* to the nearest fp16 value (returned as float32).

    Layers store fp16 scales. Rounding up, never down, keeps ``max|x| / scale`` inside the grid,
    so no value is clipped and the half-step error bound holds for the stored scale.
    """
    h = scale.to(torch.float16)
    h = torch.where(h.float() < scale, torch.nextafter(h, torch.full_like(h, float("inf"))), h)
    return h.float()


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """Pack unsigned 4-bit codes (..., 2m) into bytes (..., m): even index → low nibble."""
    if codes.shape[-1] % 2:
        raise ValueError(f"the last dimension must be even to pack two codes a byte, got {codes.shape[-1]}")
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) > 15):
        raise ValueError("4-bit codes must lie in [0, 15]; shift signed codes by +8 first")
    c = codes.to(torch.uint8)
    return c[..., 0::2] | (c[..., 1::2] << 4)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of ``pack_int4``: bytes (..., m) → codes (..., 2m) as uint8 in [0, 15]."""
    lo, hi = packed & 0x0F, packed >> 4
    return torch.stack([lo, hi], dim=-1).flatten(-2)


# ---------------------------------------------------------------------------------------------
# 3. Quantized linear layers
# ---------------------------------------------------------------------------------------------


class QuantizedLinear(nn.Module):
    """A linear layer whose weight is stored as 8- or 4-bit integer codes plus scales.

    Each output row is cut into groups of ``group_size`` input columns; each group has an
    fp16 scale (and, if asymmetric, a uint8 zero point). 4-bit codes are packed two per byte.
    The readable forward pass (``forward_readable`` / ``forward_reference``) dequantizes the
    weight and runs an ordinary matmul: correct, but it rebuilds a float weight on every call.
    On a CPU, per-row int8 and grouped 4-bit layers instead run PyTorch's integer kernels
    (``llmnotes.qkernels``) when no gradient is needed and the kernel measures faster for the
    layer's shape; ``kernel`` / ``set_kernel`` choose (``"auto"``, ``"fast"``, ``"reference"``).
    NF4 and LLM.int8() have no such CPU kernel in PyTorch and always take the readable path.

    Build one with ``QuantizedLinear.from_linear(linear, bits, group_size, symmetric)`` or, for
    codes someone else computed (GPTQ), ``QuantizedLinear.from_codes``.
    """

    def __init__(self, in_features: int, out_features: int, bits: int = 8, group_size: int | None = None,
                 symmetric: bool = True, bias: bool = True) -> None:
        super().__init__()
        _check_bits(bits)
        group_size = in_features if group_size is None else min(group_size, in_features)
        if in_features % group_size:
            raise ValueError(f"in_features={in_features} must be a multiple of group_size={group_size}")
        if bits == 4 and in_features % 2:
            raise ValueError(f"4-bit packing needs an even in_features, got {in_features}")
        self.in_features, self.out_features = in_features, out_features
        self.bits, self.group_size, self.symmetric = bits, group_size, symmetric
        n_groups = in_features // group_size
        code_dtype = torch.int8 if (bits == 8 and symmetric) else torch.uint8
        width = in_features if bits == 8 else in_features // 2
        self.register_buffer("qweight", torch.zeros(out_features, width, dtype=code_dtype))
        self.register_buffer("scale", torch.ones(out_features, n_groups, dtype=torch.float16))
        self.register_buffer("zero", None if symmetric else torch.zeros(out_features, n_groups, dtype=torch.uint8))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def extra_repr(self) -> str:
        kind = "absmax" if self.symmetric else "zero-point"
        return (f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
                f"group_size={self.group_size}, {kind}, bias={self.bias is not None}")

    def init_args(self) -> dict:
        """Constructor arguments that rebuild an empty layer of this shape (for loading)."""
        return {"in_features": self.in_features, "out_features": self.out_features, "bits": self.bits,
                "group_size": self.group_size, "symmetric": self.symmetric, "bias": self.bias is not None}

    @classmethod
    def from_codes(cls, codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None, bits: int,
                   group_size: int, bias: torch.Tensor | None) -> "QuantizedLinear":
        """Wrap ready-made codes (out, in) — signed for symmetric 8-bit, else unsigned — and
        per-group ``scale``/``zero`` (out, in // group_size)."""
        out_f, in_f = codes.shape
        layer = cls(in_f, out_f, bits, group_size, symmetric=zero is None, bias=bias is not None)
        if bits == 4:
            if zero is None:  # signed [-7, 7] → unsigned nibble by +8
                codes = codes.to(torch.int16) + 8
            layer.qweight.copy_(pack_int4(codes))
        else:
            layer.qweight.copy_(codes.to(layer.qweight.dtype))
        layer.scale.copy_(scale.to(torch.float16))
        if zero is not None:
            layer.zero.copy_(zero.to(torch.uint8))
        if bias is not None:
            layer.bias.data.copy_(bias.detach().float())
        return layer.to(codes.device)

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int = 8, group_size: int | None = None,
                    symmetric: bool = True) -> "QuantizedLinear":
        """Round-to-nearest quantization of ``linear.weight`` (out, in), group by group."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        w = linear.weight.detach()
        gs = linear.in_features if group_size is None else min(group_size, linear.in_features)
        if linear.in_features % gs:
            raise ValueError(f"group_size={group_size} must divide in_features={linear.in_features}")
        # Round the scales to fp16 *before* computing the codes, so the codes match the stored
        # scales and the half-step error bound holds for what is actually kept.
        if symmetric:
            _, s = absmax_quantize(w, bits, group_size=gs)
            s = fp16_scale(s)
            qmax = 2 ** (bits - 1) - 1
            codes = torch.round(w.float() / s.repeat_interleave(gs, -1)).clamp(-qmax, qmax)
            return cls.from_codes(codes, s, None, bits, gs, linear.bias)
        _, s, _ = zeropoint_quantize(w, bits, group_size=gs)
        s = fp16_scale(s)
        lo = w.float().reshape(w.shape[0], -1, gs).amin(-1).clamp(max=0)
        z = torch.round(-lo / s).clamp(0, 2 ** bits - 1)  # the zero point for the stored scale
        codes = (torch.round(w.float() / s.repeat_interleave(gs, -1)) + z.repeat_interleave(gs, -1))
        codes = codes.clamp(0, 2 ** bits - 1)
        return cls.from_codes(codes, s, z, bits, gs, linear.bias)

    def codes(self) -> torch.Tensor:
        """Integer codes (out, in) as stored (unpacked), int16 to hold any of them."""
        c = unpack_int4(self.qweight) if self.bits == 4 else self.qweight
        return c.to(torch.int16)

    def _offset(self) -> torch.Tensor | int:
        if not self.symmetric:
            return self.zero.to(torch.int16).repeat_interleave(self.group_size, -1)
        return 8 if self.bits == 4 else 0  # 4-bit symmetric codes were shifted by +8 to pack

    def dequantize_weight(self) -> torch.Tensor:
        """The float32 weight (out, in) the codes stand for (vectorized)."""
        scale = self.scale.float().repeat_interleave(self.group_size, -1)
        return (self.codes() - self._offset()).float() * scale

    def dequantize_weight_reference(self) -> torch.Tensor:
        """Same as ``dequantize_weight``, one group at a time (readable, slow)."""
        codes = self.codes()
        w = torch.empty(self.out_features, self.in_features, device=codes.device)
        for row in range(self.out_features):
            for g in range(self.in_features // self.group_size):
                cols = slice(g * self.group_size, (g + 1) * self.group_size)
                if self.symmetric:
                    offset = 8 if self.bits == 4 else 0
                else:
                    offset = int(self.zero[row, g])
                w[row, cols] = (codes[row, cols] - offset).float() * float(self.scale[row, g])
        return w

    # "auto": the CPU kernel of llmnotes.qkernels where this format has one and it measures
    # faster than the readable path for this shape; "fast": that kernel whenever it exists;
    # "reference": always the readable path. Set per layer, or with set_kernel(model, ...).
    kernel: str = "auto"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fast = self._fast_path(x)
        if fast is not None:
            return fast(x)
        return self.forward_readable(x)

    def forward_readable(self, x: torch.Tensor) -> torch.Tensor:
        """The forward pass without a special kernel: dequantize (in effect), then matmul."""
        if self.group_size == self.in_features and self.symmetric:
            # One scale per output row factors out of the dot product: y = (x · q) * s.
            y = F.linear(x, self.codes().to(x.dtype) - self._offset()) * self.scale.to(x.dtype).T
            return y if self.bias is None else y + self.bias.to(x.dtype)
        return self.forward_reference(x)

    def kernel_name(self) -> str | None:
        """``"int8"`` or ``"int4"`` if this layer's format has a CPU kernel in this PyTorch
        build (see :mod:`llmnotes.qkernels`), else ``None``."""
        from llmnotes import qkernels

        if self.bits == 8 and self.symmetric and self.group_size == self.in_features and qkernels.int8_available():
            return "int8"
        if self.bits == 4 and self.group_size in qkernels.INT4_GROUP_SIZES and qkernels.int4_available():
            return "int4"
        return None

    def _fast_path(self, x: torch.Tensor):
        """The packed kernel to run ``x`` through, or None for the readable path."""
        if self.kernel == "reference" or x.device.type != "cpu" or self.qweight.device.type != "cpu":
            return None
        if torch.compiler.is_compiling():
            return None
        needs_grad = x.requires_grad or (self.bias is not None and self.bias.requires_grad)
        if torch.is_grad_enabled() and needs_grad:
            return None  # the kernels have no backward; QLoRA-style training takes the readable path
        name = self.kernel_name()
        if name is None:
            return None
        fast = self._packed(name)
        if self.kernel == "fast":
            return fast
        from llmnotes.fast_linear import pick_fastest

        x1 = torch.randn(1, self.in_features, dtype=x.dtype)
        key = ("qlinear", name, self.out_features, self.in_features, self.group_size, x.dtype)
        with torch.no_grad():
            chosen, _ = pick_fastest(key, {"readable": lambda: self.forward_readable(x1), name: lambda: fast(x1)},
                                     baseline="readable")
        return fast if chosen == name else None

    def _packed(self, name: str):
        """A callable running the ``name`` kernel on this layer's weight, packed once and
        repacked if the codes, scales or bias change (e.g. after ``load_state_dict``)."""
        from llmnotes import qkernels

        tensors = [t for t in (self.qweight, self.scale, self.zero, self.bias) if t is not None]
        stamp = tuple((t.data_ptr(), t._version) for t in tensors)
        cached = _PACKED.get(self)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        if name == "int8":
            packed = qkernels.int8_pack(self.qweight, self.scale.float(), self.bias)
            fn = lambda x: qkernels.int8_linear(x, packed)  # noqa: E731
        else:
            zero = self.zero if self.zero is not None else torch.full_like(self.scale, 8, dtype=torch.uint8)
            packed = qkernels.int4_pack(self.codes(), self.scale.float(), zero, self.group_size)
            fn = lambda x: qkernels.int4_linear(x, packed, self.group_size, self.bias)  # noqa: E731
        _PACKED[self] = (stamp, fn)
        return fn

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """Dequantize, then an ordinary matmul."""
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.dequantize_weight().to(x.dtype), bias)


# NormalFloat-4: 16 levels at quantiles of N(0, 1), rescaled to [-1, 1], with an exact zero.
# Values as in the QLoRA paper's appendix / bitsandbytes (8 positive levels, 7 negative, and 0).
NF4_CODE = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
])


def nf4_quantize(x: torch.Tensor, block_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """NF4: per block of ``block_size`` values, ``x / absmax`` → index of the nearest NF4 level.

    Returns ``(indices uint8 (n_blocks, block_size), absmax float32 (n_blocks,))`` over the
    flattened tensor, zero-padded to a whole number of blocks.
    """
    _check_tensor(x)
    flat = x.detach().float().flatten()
    flat = F.pad(flat, (0, (-flat.numel()) % block_size)).view(-1, block_size)
    absmax = flat.abs().amax(dim=1)
    normed = flat / torch.where(absmax > 0, absmax, torch.ones_like(absmax))[:, None]
    code = NF4_CODE.to(flat.device)
    # nearest level = count of midpoints below the value (the levels are sorted)
    mids = (code[1:] + code[:-1]) / 2
    idx = torch.bucketize(normed, mids)
    return idx.to(torch.uint8), absmax


class NF4Linear(QuantizedLinear):
    """4-bit NormalFloat weights (QLoRA): blocks of 64 values share one absmax.

    With ``double_quant`` the fp32 absmax constants are themselves quantized: their mean is
    subtracted and the rest stored as int8 with one fp32 scale per 256 constants (QLoRA uses an
    8-bit float code for this step; a linear int8 code is used here, which costs the same bits).
    That cuts the constants from 32/64 = 0.5 to 8/64 + 32/(64·256) ≈ 0.127 bits per weight.
    """

    def __init__(self, in_features: int, out_features: int, block_size: int = 64,
                 double_quant: bool = False, dq_block_size: int = 256, bias: bool = True) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = in_features, out_features
        self.bits, self.block_size, self.double_quant, self.dq_block_size = 4, block_size, double_quant, dq_block_size
        n = in_features * out_features
        n_blocks = math.ceil(n / block_size)
        self.register_buffer("qweight", torch.zeros(n_blocks * block_size // 2, dtype=torch.uint8))
        if double_quant:
            n_dq = math.ceil(n_blocks / dq_block_size)
            self.register_buffer("absmax_q", torch.zeros(n_blocks, dtype=torch.int8))
            self.register_buffer("absmax_scale", torch.ones(n_dq, dtype=torch.float32))
            self.register_buffer("absmax_mean", torch.zeros((), dtype=torch.float32))
        else:
            self.register_buffer("absmax", torch.ones(n_blocks, dtype=torch.float32))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, nf4, "
                f"block_size={self.block_size}, double_quant={self.double_quant}")

    def init_args(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features, "block_size": self.block_size,
                "double_quant": self.double_quant, "dq_block_size": self.dq_block_size, "bias": self.bias is not None}

    @classmethod
    def from_linear(cls, linear: nn.Linear, block_size: int = 64, double_quant: bool = False,
                    dq_block_size: int = 256) -> "NF4Linear":
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        layer = cls(linear.in_features, linear.out_features, block_size, double_quant, dq_block_size,
                    bias=linear.bias is not None).to(linear.weight.device)
        idx, absmax = nf4_quantize(linear.weight, block_size)
        layer.qweight.copy_(pack_int4(idx.flatten()))
        if double_quant:
            mean = absmax.mean()
            centred = F.pad(absmax - mean, (0, (-absmax.numel()) % dq_block_size))
            q, s = absmax_quantize(centred, bits=8, group_size=dq_block_size)
            layer.absmax_q.copy_(q[: absmax.numel()])
            layer.absmax_scale.copy_(s)
            layer.absmax_mean.copy_(mean)
        else:
            layer.absmax.copy_(absmax)
        if linear.bias is not None:
            layer.bias.data.copy_(linear.bias.detach().float())
        return layer

    def block_absmax(self) -> torch.Tensor:
        """The per-block absmax constants (n_blocks,), undoing the double quantization."""
        if not self.double_quant:
            return self.absmax
        n = self.absmax_q.numel()
        q = F.pad(self.absmax_q, (0, (-n) % self.dq_block_size))
        return dequantize(q, self.absmax_scale, group_size=self.dq_block_size)[:n] + self.absmax_mean

    def dequantize_weight(self) -> torch.Tensor:
        idx = unpack_int4(self.qweight).long().view(-1, self.block_size)  # (n_blocks, block)
        w = NF4_CODE.to(idx.device)[idx] * self.block_absmax()[:, None]
        return w.flatten()[: self.in_features * self.out_features].view(self.out_features, self.in_features)

    def dequantize_weight_reference(self) -> torch.Tensor:
        idx = unpack_int4(self.qweight).tolist()
        absmax = self.block_absmax().tolist()
        n = self.in_features * self.out_features
        values = [NF4_CODE[idx[i]].item() * absmax[i // self.block_size] for i in range(n)]
        return torch.tensor(values).view(self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_reference(x)


class LLMInt8Linear(QuantizedLinear):
    """LLM.int8(): int8 matmul for ordinary features, 16-bit matmul for outlier features.

    A handful of hidden dimensions carry activations far larger than the rest (|x| > 6 is the
    paper's threshold); quantizing them with the others would blow up every row's scale.
    The outlier *input columns* are found once, from calibration activations (bitsandbytes
    instead looks at every batch at run time); their weight columns are kept in fp16 and
    multiplied in 16-bit. The rest use vector-wise int8: one absmax scale per row of X (per
    token) and per row of W (per output), an int32-accumulated integer matmul, and the outer
    product of the two scales to bring the result back to float.
    """

    def __init__(self, in_features: int, out_features: int, n_outliers: int = 0, bias: bool = True) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features, self.bits = in_features, out_features, 8
        self.register_buffer("qweight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scale", torch.ones(out_features, 1, dtype=torch.float32))
        self.register_buffer("outlier_idx", torch.zeros(n_outliers, dtype=torch.int32))
        self.register_buffer("outlier_weight", torch.zeros(out_features, n_outliers, dtype=torch.float16))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"outlier_columns={self.outlier_idx.numel()}")

    def init_args(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features,
                "n_outliers": self.outlier_idx.numel(), "bias": self.bias is not None}

    @classmethod
    def from_linear(cls, linear: nn.Linear, outlier_columns: Iterable[int] = ()) -> "LLMInt8Linear":
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        cols = sorted({int(c) for c in outlier_columns})
        if cols and not (0 <= cols[0] and cols[-1] < linear.in_features):
            raise ValueError(f"outlier_columns must be in [0, {linear.in_features}), got {cols}")
        w = linear.weight.detach().float()
        layer = cls(linear.in_features, linear.out_features, len(cols), bias=linear.bias is not None).to(w.device)
        idx = torch.tensor(cols, dtype=torch.long, device=w.device)
        regular = w.clone()
        regular[:, idx] = 0.0  # these columns live in fp16 instead
        q, s = absmax_quantize(regular, bits=8, dim=1)
        layer.qweight.copy_(q)
        layer.scale.copy_(s)
        layer.outlier_idx.copy_(idx.to(torch.int32))
        layer.outlier_weight.copy_(w[:, idx].half())
        if linear.bias is not None:
            layer.bias.data.copy_(linear.bias.detach().float())
        return layer

    def dequantize_weight(self) -> torch.Tensor:
        w = self.qweight.float() * self.scale
        w[:, self.outlier_idx.long()] = self.outlier_weight.float()
        return w

    dequantize_weight_reference = dequantize_weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, self.in_features).float()  # (N, in)
        idx = self.outlier_idx.long()
        # 16-bit part: outlier features times their fp16 weight columns (fp16 values, computed in
        # fp32 here because CPUs lack fast fp16 matmuls; on a GPU this is an fp16 GEMM).
        y = x2[:, idx].half().float() @ self.outlier_weight.float().T  # (N, out)
        # int8 part: vector-wise absmax of X's rows, int8 codes, integer matmul.
        xr = x2.clone()
        xr[:, idx] = 0.0
        xq, sx = absmax_quantize(xr, bits=8, dim=1)  # (N, in) int8, (N, 1)
        # float64 holds every int32 partial sum exactly (|sum| < 127² · in ≪ 2**53), and is
        # fast on CPUs, unlike integer matmuls; on a GPU this is an int8 GEMM (torch._int_mm).
        acc = xq.double() @ self.qweight.double().T  # (N, out) exact integer sums
        y = y + (acc * (sx.double() * self.scale.double().T)).float()
        if self.bias is not None:
            y = y + self.bias.float()
        return y.to(x.dtype).view(*shape[:-1], self.out_features)

    forward_reference = forward


class QuantizedEmbedding(nn.Module):
    """An embedding table stored as int8 rows with one fp16 absmax scale per row.

    A lookup dequantizes only the rows it reads. ``weight`` is an empty float placeholder so that
    code asking a model for its parameters' device and dtype keeps working; the table itself is
    ``qweight`` (num_embeddings, dim) int8 and ``scale`` (num_embeddings, 1). The layout is the
    same as a per-channel int8 ``QuantizedLinear`` of shape (out=num_embeddings, in=dim), so a
    tied output layer can share these very tensors (see ``tied_head``).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.register_buffer("qweight", torch.zeros(num_embeddings, embedding_dim, dtype=torch.int8))
        self.register_buffer("scale", torch.ones(num_embeddings, 1, dtype=torch.float16))
        self.weight = nn.Parameter(torch.empty(0), requires_grad=False)  # device/dtype placeholder

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, int8 rows"

    def init_args(self) -> dict:
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim}

    @classmethod
    def from_embedding(cls, emb: nn.Embedding) -> "QuantizedEmbedding":
        if not isinstance(emb, nn.Embedding):
            raise TypeError(f"emb must be an nn.Embedding, got {type(emb).__name__}")
        w = emb.weight.detach()
        layer = cls(emb.num_embeddings, emb.embedding_dim).to(w.device)
        _, s = absmax_quantize(w, bits=8, dim=1)
        s = fp16_scale(s)
        layer.qweight.copy_(torch.round(w.float() / s).clamp(-127, 127).to(torch.int8))
        layer.scale.copy_(s.half())
        layer.weight.data = layer.weight.data.to(device=w.device, dtype=w.dtype)
        return layer

    def tied_head(self) -> QuantizedLinear:
        """An output layer (dim → num_embeddings) that shares this table's codes and scales."""
        head = QuantizedLinear(self.embedding_dim, self.num_embeddings, bits=8, bias=False)
        head.qweight, head.scale = self.qweight, self.scale  # the same tensors: stored once
        return head

    def dequantize_weight(self) -> torch.Tensor:
        return self.qweight.float() * self.scale.float()

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        rows = self.qweight[idx].to(self.weight.dtype)  # (..., dim)
        return rows * self.scale[idx].to(self.weight.dtype)


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
                   act_order: bool = False, block_size: int = 128,
                   skip: Iterable[str] = ("lm_head",), embeddings: bool = False) -> nn.Module:
    """Replace ``model``'s ``nn.Linear`` layers by quantized ones, in place; return ``model``.

    Methods:
        ``"int8"``: per-output-channel absmax int8 (``group_size`` optional).
        ``"int4"``: 4-bit round-to-nearest in groups of ``group_size`` (default 128, clamped to
        in_features), zero-point unless ``symmetric=True``.
        ``"nf4"``: QLoRA NormalFloat-4, blocks of 64 (``group_size``), ``double_quant`` option.
        ``"llm.int8"``: LLM.int8(); input columns whose calibration activations exceed
        ``threshold`` stay fp16. Needs ``calibration``.
        ``"gptq"``: GPTQ with ``bits`` (4), ``group_size`` (128), ``damp`` (1% of mean diag H),
        lazy batches of ``block_size`` columns, ``act_order``. Needs ``calibration``.

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
    if threshold <= 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    layers = linear_layers(model, skip)
    if embeddings:
        quantize_embeddings(model)

    if method == "gptq":
        from llmnotes.gptq import gptq_quantize_model

        return gptq_quantize_model(model, layers, _check_calibration(calibration, method), bits=bits or 4,
                                   group_size=group_size or 128, symmetric=bool(symmetric), damp=damp,
                                   act_order=act_order, block_size=block_size)
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
            new = NF4Linear.from_linear(lin, group_size or 64, double_quant)
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
    """Set how every ``QuantizedLinear`` in ``model`` computes: ``"auto"`` (default: a CPU
    kernel where one exists and measures faster), ``"fast"`` (the kernel wherever one exists) or
    ``"reference"`` (always dequantize-then-matmul). In place; returns ``model``."""
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


def export_gguf(model, tokenizer, path, qtype: str = "F16"):
    """Write ``model`` + ``tokenizer`` as a GGUF file for llama.cpp (see ``llmnotes.gguf``)."""
    from llmnotes.gguf import export_gguf as _export

    return _export(model, tokenizer, path, qtype)


def add_quantize_arguments(p) -> None:
    p.add_argument("--model", help="model directory (default: the shipped tiny model)")
    p.add_argument("--method", default="int8", choices=METHODS)
    p.add_argument("--group-size", type=int, default=None, help="group size for int4/nf4/gptq")
    p.add_argument("--tokens", type=int, default=20000, help="validation tokens for perplexity")
    p.add_argument("--out", help="directory to save the quantized model to (safetensors)")


def _check_quantize_out(args) -> None:
    """Refuse an ``--out`` that is empty, a file, or a float model directory (the input included)."""
    import os
    from pathlib import Path

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
    from llmnotes.quantize_io import load_for_quantize, save_quantized

    if args.tokens <= 0:
        raise ValueError(f"--tokens must be positive, got {args.tokens}")
    if args.out is not None:
        _check_quantize_out(args)
    model, val_ids, calib = load_for_quantize(args.model, args.tokens)
    before, ppl0 = model_bytes(model), perplexity(model, val_ids)
    kw = {"group_size": args.group_size}
    if args.method in ("llm.int8", "gptq"):
        kw["calibration"] = calib
    quantize_model(model, args.method, **kw)
    after, ppl1 = model_bytes(model), perplexity(model, val_ids)
    print(f"method      {args.method}")
    print(f"bytes       {before:,} -> {after:,} ({100 * after / before:.1f}%)")
    print(f"perplexity  {ppl0:.3f} -> {ppl1:.3f} ({100 * (ppl1 / ppl0 - 1):+.2f}%) on {val_ids.numel():,} tokens")
    if args.out:
        from llmnotes.tokenizer import BPETokenizer
        from llmnotes.pretrained import pretrained_dir

        save_quantized(model, args.method, args.out, BPETokenizer.from_pretrained(pretrained_dir(args.model or "tiny")))
        print(f"saved       {args.out}")
    return 0
