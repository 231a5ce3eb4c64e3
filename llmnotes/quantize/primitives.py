"""Quantizing a tensor: the grids every quantized layer stores its weights on.

Smallest pieces first:

1. ``absmax_quantize`` / ``zeropoint_quantize`` / ``dequantize``: map floats to a grid of
   ``2**bits`` integers and back, for a whole tensor, per channel (``dim``) or per group of
   ``group_size`` consecutive values. Round-to-nearest never errs by more than half a step.
2. ``pack_int4`` / ``unpack_int4``: two 4-bit codes in one byte; ``fp16_scale`` stores a scale
   in 16 bits without letting it round to zero or infinity.
3. ``nf4_quantize``: QLoRA's NormalFloat-4 (Dettmers et al. 2023, arXiv:2305.14314), 16 levels
   at the quantiles of a normal distribution, one absmax per block of values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

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


# NormalFloat-4: 16 levels at quantiles of N(0, 1), rescaled to [-1, 1], with an exact zero.
# Values as in the QLoRA paper's appendix / bitsandbytes (8 positive levels, 7 negative, and 0).
NF4_CODE = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
])


def nf4_quantize(x: torch.Tensor, quant_block: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """NF4: per block of ``quant_block`` values, ``x / absmax`` → index of the nearest NF4 level.

    ``quant_block`` is the number of consecutive values sharing one absmax (QLoRA's block size,
    64; bitsandbytes' ``blocksize``). Returns ``(indices uint8 (n_blocks, quant_block), absmax
    float32 (n_blocks,))`` over the flattened tensor, zero-padded to a whole number of blocks.
    """
    _check_tensor(x)
    if isinstance(quant_block, bool) or not isinstance(quant_block, int) or quant_block <= 0:
        raise ValueError(f"quant_block must be a positive integer, got {quant_block!r}")
    flat = x.detach().float().flatten()
    flat = F.pad(flat, (0, (-flat.numel()) % quant_block)).view(-1, quant_block)
    absmax = flat.abs().amax(dim=1)
    normed = flat / torch.where(absmax > 0, absmax, torch.ones_like(absmax))[:, None]
    code = NF4_CODE.to(flat.device)
    # nearest level = count of midpoints below the value (the levels are sorted)
    mids = (code[1:] + code[:-1]) / 2
    idx = torch.bucketize(normed, mids)
    return idx.to(torch.uint8), absmax
