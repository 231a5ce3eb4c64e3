"""Fast linear layers for decoding on a CPU: column-major weights, split across cores.

Generating one token multiplies a single vector by every weight matrix of the model, so a decode
step is a chain of matrix-*vector* products. Each weight is read once and used for one
multiply-add: the step is bound by how fast the weights stream from memory, not by arithmetic
(GPT-2 small reads ~500 MB of float32 weights per token). Two things decide that speed on a CPU:

1. **Memory order.** ``nn.Linear`` stores ``W`` as (out, in), row-major. The BLAS
   matrix-vector kernels measured here (MKL, the kernel behind PyTorch's x86 wheels) stream the
   same matrix up to 2x faster when it is stored column-major, i.e. as the contiguous (in, out)
   matrix ``W.T``: GPT-2's 50,257-row LM head took 12 ms row-major and 6 ms column-major.
2. **Cores.** A single matrix-vector product ran on one core even with ``torch.set_num_threads(2)``,
   leaving the other core and its share of memory bandwidth idle. Splitting the *input*
   dimension into ``S`` slices (``W.T`` viewed as (S, in/S, out), no copy) turns ``x @ W.T`` into
   ``S`` independent partial products, one per core, summed at the end::

       y = x @ W.T = sum_s x[s-th slice] @ W.T[s-th slice of rows]

   (the "split-K" scheme of GPU GEMM kernels; ``torch.bmm`` runs the slices in parallel).

:func:`prepare_for_decode` applies both to a model in place: same parameters, same values and
shapes, same state dict; only the weights' strides and the layers' class change. Results differ
from ``nn.Linear`` by float rounding only (the partial sums are added in a different order).
``benchmarks/decode.py`` measures the effect; ``docs/generation/generation-config.md`` teaches it.

Neither trick pays on every CPU: on an Intel Xeon with AVX-512 the row-major kernel was as fast
as the column-major one for most GPT-2 shapes, and splitting cost more than it saved. So
:func:`prepare_for_decode` *measures* each weight shape on the machine it runs on (a few
matrix-vector products per candidate, interleaved, see :func:`pick_fastest`), keeps the result
per (shape, dtype, thread count), and converts a layer only where a candidate beats plain
``nn.Linear`` by a clear margin. :func:`decode_plan` reports what was chosen and the timings.

The measurement reads the weights from memory, as decoding does: every layer's weight is
read once per token and evicted by the other layers' before it is needed again. One matrix
multiplied again and again would sit in the CPU's cache instead, and the layout that wins
there can lose when the same bytes stream from memory (a 2.3 MiB GPT-2 matrix is read at
about 50 GB/s from cache and 12 to 18 GB/s from memory on the AMD EPYC measured, depending on
the layout). So for a model whose weights outgrow the last-level cache
(:func:`reads_from_memory`), each candidate runs over enough copies of the weight to overflow it
twice, and reports milliseconds per product; a model that fits in the cache (the shipped one)
is measured on one weight in cache, as it runs.
"""

from __future__ import annotations

import math
import statistics
import time
import weakref
from functools import lru_cache
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from llmnotes import fused, native

MAX_SPLIT_ROWS = 64  # above this many input rows a matrix-matrix product is compute-bound: use F.linear
MIN_SPLIT_ELEMENTS = 2**18  # below 1 MiB of float32 a weight sits in cache and threads cost more than they save
PATHS = ("plain", "column-major", "split-K", "onednn-packed", "native")
MARGIN = 0.05  # a candidate must beat the baseline by 5%: timing noise must not flip a layer's path
DEFAULT_LLC_BYTES = 32 * 2**20  # assumed last-level cache when the OS does not say


def column_major(weight: torch.Tensor) -> bool:
    """True if ``weight`` (out, in) is stored as a contiguous (in, out) matrix."""
    return weight.ndim == 2 and weight.t().is_contiguous()


def split_k_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                   shards: int) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` as ``shards`` partial products over slices of the input
    dimension, computed in parallel by one batched matmul.

    Args:
        x: (..., in) input.
        weight: (out, in), stored column-major (see :func:`column_major`).
        bias: (out,) or None.
        shards: number of slices; must divide ``in``.
    """
    out_features, in_features = weight.shape
    if in_features % shards or not column_major(weight):
        raise ValueError(f"split_k_linear needs a column-major weight whose input size ({in_features}) "
                         f"is divisible by shards ({shards})")
    rows = x.reshape(-1, in_features)  # (M, in)
    k = in_features // shards
    xs = rows.view(-1, shards, k).transpose(0, 1)  # (S, M, k): slice s of every row
    ws = weight.t().view(shards, k, out_features)  # (S, k, out): a view, no copy
    y = torch.bmm(xs, ws).sum(0)  # (M, out): the partial products, added up
    if bias is not None:
        y = y + bias
    return y.view(*x.shape[:-1], out_features)


class SplitKLinear(nn.Linear):
    """An ``nn.Linear`` with a column-major weight whose forward pass uses
    :func:`split_k_linear` where it pays: the few-row inputs of decoding (one row per sequence),
    ``shards > 1`` (set by :func:`prepare_for_decode`, equal to the thread count it measured
    with) and still that many threads, eager mode. Everywhere else it is ``F.linear`` on the
    column-major weight. Parameters, state dict and everything that checks
    ``isinstance(m, nn.Linear)`` are unchanged.
    """

    shards: int = 1  # 1: column-major only; S > 1: split the input dimension into S slices

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Under torch.compile the column-major weight alone is used: inductor turns a one-row
        # bmm into a slow reduction, and reading the thread count would break the graph.
        if (self.shards > 1 and not torch.compiler.is_compiling() and x.device.type == "cpu"
                and x.numel() <= MAX_SPLIT_ROWS * self.in_features and column_major(self.weight)
                and torch.get_num_threads() == self.shards and self.in_features % self.shards == 0):
            return split_k_linear(x, self.weight, self.bias, self.shards)
        return F.linear(x, self.weight, self.bias)


# ---------------------------------------------------------------------------------------------
# oneDNN's prepacked weights
# ---------------------------------------------------------------------------------------------

# layer -> ((data_ptr, version) of its weight, packed copy); weak keys, outside the module so
# deepcopy and state_dict never see the opaque oneDNN tensor
_ONEDNN: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def onednn_pack(weight: torch.Tensor) -> torch.Tensor | None:
    """``weight`` (out, in) reordered into oneDNN's blocked layout for few-row products, or
    None where this PyTorch build or dtype has no such path."""
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return None
    try:
        return torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), 1)
    except (RuntimeError, AttributeError):
        return None


def onednn_linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear`` with a weight packed by :func:`onednn_pack` (no autograd)."""
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


class PackedLinear(nn.Linear):
    """An ``nn.Linear`` that, for the few-row inputs of decoding with no gradient needed, uses a
    oneDNN-prepacked copy of its weight (:func:`onednn_pack`). On the AMD EPYC measured it was
    1.5x faster than any plain layout for GPT-2's bf16 output layer: oneDNN's default bf16
    matrix-vector path reads the row-major weight slowly. The parameter itself is unchanged;
    the copy is rebuilt when the weight changes. Everywhere else it is ``F.linear``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grad = torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)
        if (not grad and not torch.compiler.is_compiling() and x.device.type == "cpu"
                and x.dtype == self.weight.dtype and x.numel() <= MAX_SPLIT_ROWS * self.in_features):
            packed = self._packed()
            if packed is not None:
                return onednn_linear(x, packed, self.bias)
        return F.linear(x, self.weight, self.bias)

    def _packed(self) -> torch.Tensor | None:
        stamp = (self.weight.data_ptr(), self.weight._version, self.weight.dtype)
        cached = _ONEDNN.get(self)
        if cached is None or cached[0] != stamp:
            cached = (stamp, onednn_pack(self.weight))
            _ONEDNN[self] = cached
        return cached[1]


# ---------------------------------------------------------------------------------------------
# llmnotes' own matrix-vector kernel
# ---------------------------------------------------------------------------------------------


class NativeLinear(nn.Linear):
    """An ``nn.Linear`` whose one-row products with no gradient needed run
    :mod:`llmnotes.native`'s ``gemv_f32`` (each weight row read front to back with AVX-512,
    rows split across the threads), or ``gemv_bf16`` for bfloat16 on CPUs with AVX512-BF16,
    and, where ``rows_kernel`` is set (measured by
    :func:`prepare_for_decode`), products of up to ``MAX_SPLIT_ROWS`` rows (a prompt, a small
    batch) its ``gemm_f32_rows``. Weight, parameters and state dict are unchanged; every other
    input goes to ``F.linear``."""

    rows_kernel: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // self.in_features
        if (x.device.type == "cpu" and x.dtype == self.weight.dtype and not torch.compiler.is_compiling()
                and not (torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad))
                and x.is_contiguous() and self.weight.is_contiguous()):
            kernel = self._kernel(rows, x.dtype)
            if kernel is not None:
                y = kernel(x.view(-1) if rows == 1 else x.view(rows, -1), self.weight, self.bias)
                return y.view(*x.shape[:-1], self.out_features)
        return F.linear(x, self.weight, self.bias)

    def _kernel(self, rows: int, dtype: torch.dtype):
        kernels = native.kernels()
        if kernels is None:
            return None
        if dtype == torch.float32:
            return kernels.gemv_f32 if rows == 1 else (
                kernels.gemm_f32_rows if self.rows_kernel and rows <= MAX_SPLIT_ROWS else None)
        return native.bf16_kernel() if dtype == torch.bfloat16 and rows == 1 else None


# ---------------------------------------------------------------------------------------------
# Choosing by measurement
# ---------------------------------------------------------------------------------------------

_CHOICES: dict[tuple, tuple[str, dict[str, float]]] = {}  # key -> (chosen name, median ms per candidate)


def pick_fastest(key: tuple, candidates: dict[str, Callable[[], object]], baseline: str,
                 rounds: int = 5, margin: float = MARGIN, per_call: int = 1) -> tuple[str, dict[str, float]]:
    """Time each zero-argument callable in ``candidates`` and return ``(name, medians_ms)``.

    Candidates run interleaved (round 1 of each, then round 2, ...) so a burst of load from
    other processes hits all of them alike; each is warmed up first. ``baseline`` wins unless
    the candidate with the best median is at least ``margin`` faster in its median *and* in
    its fastest round. The answer is cached under
    ``key`` plus the current thread count (and returned from the cache next time). A callable
    that does ``per_call`` operations reports milliseconds per operation.
    """
    cached = cached_choice(key)
    if cached is not None:
        return cached
    key = (*key, torch.get_num_threads())
    if baseline not in candidates:
        raise ValueError(f"baseline {baseline!r} is not one of the candidates {list(candidates)}")
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for fn in candidates.values():
        fn()  # warm-up: first-call allocation and kernel selection
    for _ in range(rounds):
        for name, fn in candidates.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    medians = {name: 1e3 * statistics.median(ts) / per_call for name, ts in times.items()}
    best = min(medians, key=medians.get)
    # Both the median and the best round must be faster: load from other processes inflates
    # some rounds, and a path should win on its undisturbed speed as well as its typical one.
    beats = [min(times[best]) < (1 - margin) * min(times[baseline]),
             medians[best] < (1 - margin) * medians[baseline]]
    chosen = best if all(beats) else baseline
    _CHOICES[key] = (chosen, medians)
    return chosen, medians


def cached_choice(key: tuple) -> tuple[str, dict[str, float]] | None:
    """What :func:`pick_fastest` chose for ``key`` at the current thread count, if measured."""
    return _CHOICES.get((*key, torch.get_num_threads()))


def _path_key(weight: torch.Tensor, from_memory: bool) -> tuple:
    return ("decode-linear", tuple(weight.shape), weight.dtype, from_memory)


def choose_path(weight: torch.Tensor, from_memory: bool = True) -> tuple[str, dict[str, float]]:
    """Measure plain / column-major / split-K / oneDNN-packed / native matrix-vector products for
    ``weight``'s shape and dtype on this CPU with the current thread count; return
    ``(path, medians_ms)``. ``from_memory``: time them on weights streamed from memory (a model
    larger than the cache); otherwise on one weight in cache (a model that fits in it)."""
    key = _path_key(weight, from_memory)
    cached = cached_choice(key)
    if cached is not None:  # measured for another layer of this shape: no copies needed
        return cached
    out_features, in_features = weight.shape
    x = torch.randn(1, in_features, dtype=weight.dtype)
    rows = _weight_copies(weight, from_memory)
    cols = [r.t().contiguous().t() for r in rows]
    shards = torch.get_num_threads()
    candidates = {"plain": lambda: [F.linear(x, w) for w in rows],
                  "column-major": lambda: [F.linear(x, w) for w in cols]}
    if shards > 1 and in_features % shards == 0:
        candidates["split-K"] = lambda: [split_k_linear(x, w, None, shards) for w in cols]
    packed = [onednn_pack(r) for r in rows]
    if all(p is not None for p in packed):
        candidates["onednn-packed"] = lambda: [onednn_linear(x, p, None) for p in packed]
    kernel = {torch.float32: getattr(native.kernels(), "gemv_f32", None),
              torch.bfloat16: native.bf16_kernel()}.get(weight.dtype)
    if kernel is not None:
        candidates["native"] = lambda: [kernel(x.view(-1), w, None) for w in rows]
    with torch.no_grad():
        return pick_fastest(key, candidates, baseline="plain", per_call=len(rows))


def copies_to_read_from_memory(nbytes: int, from_memory: bool) -> int:
    """How many copies of an ``nbytes`` operand one timed pass should run over: enough that
    the pass overflows the last-level cache twice, so each product reads from memory as
    decoding a large model does (``from_memory``); 1 to time it in cache."""
    return max(1, math.ceil(2 * cache_bytes() / nbytes)) if from_memory else 1


def _weight_copies(weight: torch.Tensor, from_memory: bool) -> list[torch.Tensor]:
    """Row-major copies of ``weight`` to time a product on (see :func:`copies_to_read_from_memory`)."""
    count = copies_to_read_from_memory(weight.numel() * weight.element_size(), from_memory)
    return [weight.detach().contiguous().clone() for _ in range(count)]


ROWS_PROBE = 16  # rows the few-row product is timed with (a short prompt)


def choose_rows_kernel(weight: torch.Tensor, from_memory: bool = True) -> tuple[str, dict[str, float]]:
    """Measure ``F.linear`` against llmnotes' ``gemm_f32_rows`` for ``ROWS_PROBE`` input rows
    of ``weight``'s shape (a prompt through a :class:`NativeLinear`), from memory like
    :func:`choose_path`; return ``("torch" | "native", medians_ms)``."""
    key = _rows_key(weight, from_memory)
    cached = cached_choice(key)
    kernels = native.kernels() if weight.dtype == torch.float32 else None
    if cached is not None or kernels is None:
        return cached or ("torch", {})
    x = torch.randn(ROWS_PROBE, weight.shape[1], dtype=weight.dtype)
    rows = _weight_copies(weight, from_memory)
    candidates = {"torch": lambda: [F.linear(x, w) for w in rows],
                  "native": lambda: [kernels.gemm_f32_rows(x, w, None) for w in rows]}
    with torch.no_grad():
        return pick_fastest(key, candidates, baseline="torch", per_call=len(rows))


def _rows_key(weight: torch.Tensor, from_memory: bool) -> tuple:
    return ("decode-rows", tuple(weight.shape), weight.dtype, from_memory)


def reads_from_memory(model: nn.Module) -> bool:
    """True if ``model``'s linear weights (float or quantized codes) together outgrow the
    last-level cache, so that decoding reads them from memory every token (false for small
    models like the shipped one)."""
    weights = {}
    for m in model.modules():
        tensors = [m.weight] if type(m) in LINEAR_CLASSES else [m._buffers.get("qweight"), m._buffers.get("scale")]
        weights.update({t.data_ptr(): t for t in tensors if t is not None})
    return sum(w.numel() * w.element_size() for w in weights.values()) > cache_bytes()


@lru_cache(maxsize=1)
def cache_bytes() -> int:
    """The last-level cache the OS reports (``DEFAULT_LLC_BYTES`` when it reports none)."""
    sizes = []
    for f in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = f.read_text(encoding="utf-8").strip().upper()
        unit = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            sizes.append(int(digits) * unit)
    return max(sizes) if sizes else DEFAULT_LLC_BYTES


def decode_plan(model: nn.Module) -> list[dict]:
    """What :func:`prepare_for_decode` chose for each weight shape of ``model`` (with the current
    thread count): dicts with ``shape``, ``dtype``, ``layers`` (how many), ``path`` and
    ``ms`` (median milliseconds per candidate for one matrix-vector product), plus
    ``fastest_alone`` where the whole-step timing put the layers on another path than the
    product alone measured fastest (so that one fused call runs the step), and for layers on
    llmnotes' kernel ``rows``: (``"native"`` or ``"torch"``, median ms of each for
    ``ROWS_PROBE`` rows), what their prompts and small batches use. Quantized layers
    appear with ``dtype`` like ``"int8"`` or ``"int4 (groups of 32)"`` and their kernels as paths."""
    plan: dict[tuple, dict] = {}
    from_memory = reads_from_memory(model)
    for module in model.modules():
        if hasattr(module, "decode_choice"):
            choice = module.decode_choice(from_memory)
            group = getattr(module, "group_size", module.in_features)
            dtype = f"int{module.bits}" + (f" (groups of {group})" if group != module.in_features else "")
            key = ("quantized", module.out_features, module.in_features, dtype)
            shape = (module.out_features, module.in_features)
        elif type(module) in LINEAR_CLASSES:
            key = _path_key(module.weight, from_memory)
            choice, shape, dtype = cached_choice(key), tuple(module.weight.shape), str(module.weight.dtype)
            if choice is not None and current_path(module) != choice[0]:  # the whole-step timing overrode it
                choice = (current_path(module), choice[1], choice[0])
        else:
            continue
        if choice is None:
            continue
        entry = plan.setdefault(key, {"shape": shape, "dtype": dtype, "layers": 0, "path": choice[0], "ms": choice[1]})
        if len(choice) > 2:
            entry["fastest_alone"] = choice[2]
        if type(module) is NativeLinear:
            entry["rows"] = ("native" if module.rows_kernel else "torch",
                             (cached_choice(_rows_key(module.weight, from_memory)) or (None, {}))[1])
        entry["layers"] += 1
    return list(plan.values())


def _apply_path(module: nn.Linear, path: str) -> None:
    """Give ``module`` the weight layout and class of ``path``."""
    w = module.weight
    if path in ("plain", "onednn-packed", "native"):
        if not w.is_contiguous():
            w.data = w.data.contiguous()
        module.__class__ = {"plain": nn.Linear, "onednn-packed": PackedLinear, "native": NativeLinear}[path]
        return
    if not column_major(w):
        w.data = w.data.t().contiguous().t()
    module.__class__ = SplitKLinear
    module.shards = torch.get_num_threads() if path == "split-K" else 1


LINEAR_CLASSES = (nn.Linear, SplitKLinear, PackedLinear, NativeLinear)
fused.FLOAT_LINEARS = LINEAR_CLASSES  # the fused decode step may read these layers' weights


def current_path(module: nn.Linear) -> str:
    """The path (one of ``PATHS``) a float linear layer runs now."""
    if type(module) is SplitKLinear:
        return "split-K" if module.shards > 1 else "column-major"
    return {NativeLinear: "native", PackedLinear: "onednn-packed"}.get(type(module), "plain")


def _fuse_whole_model(model: nn.Module, rounds: int = 2) -> None:
    """Where a few shapes' winners (column-major, split-K, oneDNN-packed layouts, which the fused
    step cannot read) kept the fused step out, time whole decode steps both ways: those winners
    in Python, against every layer on llmnotes' kernel in one fused call. Keep the faster.

    Per-shape timing cannot see this trade: a layout that wins one product by 5% can cost the
    whole step the fused call's saving (the Python around a GPT-2 block, ~10% of a token)."""
    layers = [m for m in model.modules() if type(m) in (SplitKLinear, PackedLinear)]
    native_dtypes = {torch.float32} | ({torch.bfloat16} if native.bf16_kernel() else set())
    if (not layers or fused.is_fused(model) or native.kernels() is None
            or any(m.weight.dtype not in native_dtypes for m in layers)):  # no kernel of llmnotes' for them
        return
    winners = {m: current_path(m) for m in layers}

    def per_shape() -> None:
        fused.fuse_for_decode(model, enable=False)
        for m, p in winners.items():
            _apply_path(m, p)

    def all_native() -> bool:
        for m in layers:
            _apply_path(m, "native")
        if not fused.is_fused(model):
            fused.fuse_for_decode(model, measure=False)
        return fused.is_fused(model)

    if not all_native():  # something besides these layers' layout keeps it out: say that
        reason = fused.fusable(model)
        per_shape()
        fused.set_status(model, f"fused decode step not used: {reason}")
        return
    times: dict[str, list[float]] = {"fused": [], "per-shape": []}
    for _ in range(rounds):  # whole configurations alternate: drift hits both alike
        for name, switch in (("per-shape", per_shape), ("fused", all_native)):
            switch()
            fused.decode_step_ms(model, 2)  # warm-up after the switch
            times[name].append(fused.decode_step_ms(model))
    fused_ms, split_ms = min(times["fused"]), min(times["per-shape"])
    shapes = sorted({f"{tuple(m.weight.shape)} {p}" for m, p in winners.items()})
    verdict = (f"{fused_ms:.2f} ms per token fused with every layer on llmnotes' kernel, vs "
               f"{split_ms:.2f} ms in Python with the per-shape winners ({', '.join(shapes)})")
    if fused_ms < (1 - fused.MARGIN) * split_ms:
        fused.set_status(model, f"fused decode step on: {verdict}")
        return
    per_shape()
    fused.set_status(model, f"fused decode step not used: {verdict}")


@torch.no_grad()
def prepare_for_decode(model: nn.Module, enable: bool = True, path: str = "auto") -> nn.Module:
    """Make ``model``'s CPU linear layers fast for decoding, in place; return the model.

    Every ``nn.Linear`` (exactly that class: LoRA or quantized layers keep their own forward,
    though the ``nn.Linear`` inside a LoRA layer is considered) whose weight lives on the CPU
    gets the path measured fastest for its shape (``path="auto"``, see :func:`choose_path`):

    * ``"plain"``: left as it is (row-major ``nn.Linear``);
    * ``"column-major"``: a :class:`SplitKLinear` with a column-major weight, no split;
    * ``"split-K"``: the same, each matrix-vector product split across the threads;
    * ``"onednn-packed"``: a :class:`PackedLinear` (row-major weight plus a oneDNN-packed copy
      used for decoding; the copy costs the weight's memory once more);
    * ``"native"``: a :class:`NativeLinear` (row-major weight, llmnotes' own AVX-512 kernel for
      one-row products; offered only where :func:`llmnotes.native.kernels` builds).

    Weights too small to matter (below ``MIN_SPLIT_ELEMENTS``) stay plain without measuring.
    Then, for a GPT-2-style model, :func:`llmnotes.fused.fuse_for_decode` tries running each
    decode step as one C++ call and keeps it if it measures faster (``path="native"`` keeps it
    unmeasured); :func:`llmnotes.fused.status` says what it decided.
    Quantized layers (anything with a ``choose_decode_kernel(from_memory)`` method, such as
    ``QuantizedLinear``) choose among their own kernels the same way.
    Passing a path name forces it for every layer. Tied weights stay tied (it is the same
    parameter); training still works, with the same results up to rounding. ``enable=False``
    undoes it. GPU layers are left as they are: GPU kernels read either order at full speed.
    """
    if path != "auto" and path not in PATHS:
        raise ValueError(f"path must be 'auto' or one of {PATHS}, got {path!r}")
    if path == "native" and native.kernels() is None:
        raise RuntimeError(f"path='native' needs llmnotes' C++ kernels, which are unavailable here: "
                           f"{native.unavailable()}; use path='auto'")
    from_memory = reads_from_memory(model)
    for module in model.modules():
        if enable and hasattr(module, "choose_decode_kernel") and path == "auto":
            module.choose_decode_kernel(from_memory)  # a quantized layer: it picks among its kernels
        if type(module) not in LINEAR_CLASSES or module.weight.device.type != "cpu":
            continue
        if not enable:
            _apply_path(module, "plain")
        elif path != "auto":
            _apply_path(module, path)
        elif module.weight.numel() < MIN_SPLIT_ELEMENTS:
            _apply_path(module, "plain")
        else:
            _apply_path(module, choose_path(module.weight, from_memory)[0])
    if not enable:
        fused.fuse_for_decode(model, enable=False)
    elif path in ("auto", "native"):
        fused.fuse_for_decode(model, measure=path == "auto")  # one C++ call per token, if it pays
        if path == "auto":
            _fuse_whole_model(model)
    for module in model.modules():  # prompts and small batches through llmnotes' layers too
        if type(module) is NativeLinear:
            module.rows_kernel = enable and (path == "native" or choose_rows_kernel(module.weight, from_memory)[0] == "native")
    return model
