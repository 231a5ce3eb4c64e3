"""Fast CPU kernels for the quantized linear layers, beside the readable path they must match.

``QuantizedLinear``'s readable forward dequantizes its weight to float32 and runs an ordinary
matmul. That is correct but slow: every call rebuilds a float copy of the weight, so a decode step
reads *more* memory than the float model did. PyTorch ships two CPU kernels that use the stored
integers directly; candidates were measured on a 2-core Intel Xeon (AVX-512, AVX512-BF16, AMX),
1 thread, batch 1 (``benchmarks/RESULTS.md`` has the table):

* **int8, one scale per output row** → ``torch.ops.quantized.linear_dynamic`` (FBGEMM; what
  ``torch.ao.quantization.quantize_dynamic`` uses). Each call quantizes the *activations* to
  8 bits (one scale per call) and runs an int8 x int8 matmul with int32 sums (VNNI where the CPU
  has it). GPT-2's 50,257 x 768 output layer: 1.9 ms vs 12.9 ms for float32 ``F.linear``.
  ``torch.ops.aten._weight_int8pack_mm`` (int8 weights, float activations) took 33 ms, and
  ``torch._int_mm`` needs int8 activations prepared by the caller; neither is used.
* **4-bit, groups along the input** → ``torch.ops.aten._weight_int4pack_mm_for_cpu`` with
  bfloat16 activations (its float32 path took 72 ms on the same layer, bfloat16 2.9 ms).

Both change the arithmetic, not just its speed: int8 activations add a rounding error of about
1% of the output's norm, bfloat16 activations and scales about 0.5%. ``tests/test_qkernels.py``
checks each kernel against the dequantize-then-matmul reference within those bounds.

A layer uses a kernel only if it exists in this PyTorch build and, measured once per shape on
this machine, is faster than the readable path (:func:`llmnotes.fast_linear.pick_fastest`).
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

INT4_GROUP_SIZES = (32, 64, 128, 256)  # the group sizes _weight_int4pack_mm_for_cpu accepts
INT4_ROW_MULTIPLE = 16  # its weight packing needs out_features divisible by this; pad, then slice


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags Linux reports in ``/proc/cpuinfo`` (empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (``lscpu``'s "Model name"), or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def native_bf16() -> bool:
    """True if the CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX-BF16)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def cpu_line() -> str:
    """One line naming the CPU and its bf16/int8 features, for benchmark tables."""
    flags = cpu_flags()

    def yes(*names):
        return "yes" if set(names) & flags else "no"

    return (f"{cpu_model()}, {torch.get_num_threads()} thread(s); avx512_bf16 {yes('avx512_bf16')}, "
            f"amx {yes('amx_bf16', 'amx_tile')}, avx512_vnni {yes('avx512_vnni', 'avx_vnni')}")


# ---------------------------------------------------------------------------------------------
# int8 weights x int8 activations (FBGEMM dynamic quantization)
# ---------------------------------------------------------------------------------------------


def int8_available() -> bool:
    """True if this PyTorch build has the FBGEMM dynamic-quantized linear."""
    return "fbgemm" in torch.backends.quantized.supported_engines and hasattr(torch.ops.quantized, "linear_dynamic")


def _reduce_range() -> bool:
    # Without VNNI, FBGEMM sums pairs of u8*s8 products in int16 (vpmaddubsw), which can
    # saturate; 7-bit activations avoid that. With VNNI the sums are int32 and 8 bits are safe.
    return not ({"avx512_vnni", "avx_vnni"} & cpu_flags())


def int8_pack(codes: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None):
    """Pack symmetric int8 codes (out, in) with one scale per output row (out,) for
    :func:`int8_linear`. Returns FBGEMM's opaque packed weight."""
    if codes.dtype != torch.int8 or codes.ndim != 2:
        raise TypeError(f"codes must be an int8 (out, in) matrix, got {codes.dtype} {tuple(codes.shape)}")
    out_features = codes.shape[0]
    with warnings.catch_warnings():  # the quantized-tensor constructors warn that they are deprecated
        warnings.simplefilter("ignore")
        qw = torch._make_per_channel_quantized_tensor(
            codes.cpu(), scale.detach().reshape(out_features).double().cpu(),
            torch.zeros(out_features, dtype=torch.long), 0)
        b = None if bias is None else bias.detach().float().cpu()
        return torch.ops.quantized.linear_prepack(qw, b)


def int8_linear(x: torch.Tensor, packed) -> torch.Tensor:
    """``x @ W.T + b`` for an :func:`int8_pack`-ed weight; ``x`` (..., in) any float dtype."""
    y = torch.ops.quantized.linear_dynamic(x.float().contiguous(), packed, _reduce_range())
    return y.to(x.dtype)


def int8_linear_fn(packed):
    """``x -> int8_linear(x, packed)`` with the operator and its flag looked up once, and no
    conversions for a contiguous float32 ``x`` (the decoding case, called once per layer and token)."""
    op, reduce_range = torch.ops.quantized.linear_dynamic.default, _reduce_range()

    def run(x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 and x.is_contiguous():
            return op(x, packed, reduce_range)
        return int8_linear(x, packed)

    return run


# ---------------------------------------------------------------------------------------------
# 4-bit weights x bfloat16 activations
# ---------------------------------------------------------------------------------------------


def int4_available() -> bool:
    """True if this PyTorch build has the CPU int4 weight-only matmul."""
    return all(hasattr(torch.ops.aten, op) for op in
               ("_weight_int4pack_mm_for_cpu", "_convert_weight_to_int4pack_for_cpu"))


def int4_pack(codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, group_size: int):
    """Pack unsigned 4-bit codes (out, in) in [0, 15] with per-group float ``scale`` and
    integer zero points ``zero`` (out, in // group_size), meaning ``w = (q - zero) * scale``.

    Returns ``(packed, scales_and_zeros, out_features)`` for :func:`int4_linear`. The kernel's
    own convention is ``w = (q - 8) * scale + offset``, so ``offset = (8 - zero) * scale``.
    Rows are padded with zeros to a multiple of 16 (the packing needs it); the output is cut back.
    """
    out_features, in_features = codes.shape
    if group_size not in INT4_GROUP_SIZES or in_features % group_size:
        raise ValueError(f"the int4 kernel needs a group size in {INT4_GROUP_SIZES} dividing "
                         f"in_features={in_features}, got {group_size}")
    pad = (-out_features) % INT4_ROW_MULTIPLE
    q = F.pad(codes.to(torch.int32).cpu(), (0, 0, 0, pad))
    s = F.pad(scale.float().cpu(), (0, 0, 0, pad), value=1.0)
    offset = F.pad((8 - zero.float().cpu()) * scale.float().cpu(), (0, 0, 0, pad))
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
    scales_and_zeros = torch.stack([s, offset], dim=-1).transpose(0, 1).contiguous().to(torch.bfloat16)
    return packed, scales_and_zeros, out_features


def int4_linear(x: torch.Tensor, packed, group_size: int, bias: torch.Tensor | None) -> torch.Tensor:
    """``x @ W.T + b`` for an :func:`int4_pack`-ed weight, computed with bfloat16 activations."""
    weight, scales_and_zeros, out_features = packed
    rows = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)
    y = torch.ops.aten._weight_int4pack_mm_for_cpu(rows, weight, group_size, scales_and_zeros)
    y = y[:, :out_features].to(x.dtype)
    if bias is not None:
        y = y + bias.to(x.dtype)
    return y.view(*x.shape[:-1], out_features)
