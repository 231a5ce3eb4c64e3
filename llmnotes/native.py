"""Hand-written CPU kernels for batch-1 decoding, compiled on this machine on first use.

PyTorch's matrix-vector products are general-purpose: on the AMD EPYC (Zen 4) measured, its
float32 layouts streamed GPT-2's weights from memory at 11 to 18 GB/s on one core, while a loop
that reads each weight row front to back with AVX-512 and a software prefetch reached 19 to
23 GB/s; its int8 (FBGEMM) and 4-bit kernels were 1.1x to 2.2x slower than the same loop over
integer weights (``benchmarks/RESULTS.md`` has the timings). The kernels in
``llmnotes/csrc/decode_kernels.cpp`` are that loop for float32, bfloat16 (on CPUs with
AVX512-BF16: :func:`bf16_kernel`), per-row int8 and grouped 4-bit weights, plus a few-row
float32 product for prompts; its header explains them. ``llmnotes/fused.py`` builds a whole decode step on them.

They are optional. :func:`kernels` compiles the file with PyTorch's C++ extension builder
(``torch.utils.cpp_extension.load``: a C++ compiler and ``ninja`` must be installed) the first
time it is called, which takes about half a minute; the build is cached under
``~/.cache/torch_extensions`` (or ``$TORCH_EXTENSIONS_DIR``) and reused. Where the CPU lacks
AVX-512 with VNNI, or there is no compiler, or ``LLMNOTES_NATIVE=0`` is set, :func:`kernels`
returns ``None`` and :func:`unavailable` says why; every caller then keeps PyTorch's kernels.
Even where they build, a layer uses them only if they measure faster for its shape on this
machine (:func:`llmnotes.fast_linear.pick_fastest`).

Each kernel is checked against PyTorch (``tests/test_native.py``): float32 to rounding, the
integer ones against the dequantize-then-matmul reference within the error of quantizing the
activations to int8 in blocks of 32 (about 0.5% of the output's norm).
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import warnings
from pathlib import Path

import torch

SOURCE = Path(__file__).parent / "csrc" / "decode_kernels.cpp"
REQUIRED_FLAGS = ("avx512f", "avx512bw", "avx512vl", "avx512_vnni")
CFLAGS = ["-O3", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vnni", "-mfma", "-fopenmp"]

_REASON: list[str] = []  # why kernels() returned None, once it has


def unavailable() -> str | None:
    """Why :func:`kernels` is ``None`` on this machine (None if they are available)."""
    return None if kernels() is not None else _REASON[-1]


@functools.lru_cache(maxsize=1)
def kernels():
    """The compiled kernel module (``gemv_f32``, ``gemv_bf16``, ``gemm_f32_rows``, ``gemv_q8``,
    ``pack_q4``, ``gemv_q4``, ``DecodePlan``), or
    ``None`` where they cannot run here (:func:`unavailable` says why). Compiles on first call."""
    reason = _why_not()
    if reason is None:
        try:
            return _build()
        except Exception as exc:  # no compiler, no ninja, a build error: fall back to PyTorch
            reason = f"building {SOURCE.name} failed: {type(exc).__name__}: {_first_error(str(exc))}"
    _REASON.append(reason)
    return None


@functools.lru_cache(maxsize=1)
def bf16_kernel():
    """``gemv_bf16`` (bfloat16 weights and activations, one row) where the kernels build and the
    CPU has AVX512-BF16 (which AVX-512 with VNNI does not imply), else None. Decided once: every
    bfloat16 decode product asks."""
    from llmnotes.qkernels import cpu_flags

    k = kernels()
    return k.gemv_bf16 if k is not None and "avx512_bf16" in cpu_flags() and k.has_bf16() else None


def _why_not() -> str | None:
    from llmnotes.qkernels import cpu_flags

    if os.environ.get("LLMNOTES_NATIVE", "1") == "0":
        return "disabled by LLMNOTES_NATIVE=0"
    missing = [f for f in REQUIRED_FLAGS if f not in cpu_flags()]
    if missing:
        return f"this CPU lacks {', '.join(missing)}"
    if not SOURCE.exists():
        return f"{SOURCE} is missing from this installation"
    return None


def _first_error(log: str) -> str:
    """The compiler's first ``error:`` line from a build log, else the log's start."""
    errors = [line.strip() for line in log.splitlines() if "error:" in line]
    return (errors[0] if errors else log.strip())[:300]


def _build():
    from torch.utils import cpp_extension

    digest = hashlib.sha256(SOURCE.read_bytes() + " ".join(CFLAGS).encode() + torch.__version__.encode())
    name = f"llmnotes_decode_kernels_{digest.hexdigest()[:12]}"  # a new name when the source changes
    built = Path(cpp_extension._get_build_directory(name, verbose=False)) / f"{name}.so"
    if not built.exists():  # say why the first call pauses (set LLMNOTES_NATIVE=0 to skip)
        print(f"llmnotes: compiling the CPU decode kernels ({SOURCE.name}), once; about half a minute...",
              file=sys.stderr, flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # compiler-version chatter
        return cpp_extension.load(name=name, sources=[str(SOURCE)], extra_cflags=CFLAGS,
                                  extra_ldflags=["-fopenmp"], verbose=False)


def one_row(kernel, in_features: int, out_features: int, otherwise):
    """``x -> y`` running ``kernel`` (one float32 vector in, one out) on the one-row inputs of
    decoding, and ``otherwise(x)`` on anything else (prompts, batches, other dtypes)."""

    def run(x: torch.Tensor) -> torch.Tensor:
        if x.numel() == in_features and x.dtype == torch.float32 and x.is_contiguous():
            return kernel(x.view(in_features)).view(*x.shape[:-1], out_features)
        return otherwise(x)

    return run
