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
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

MAX_SPLIT_ROWS = 64  # above this many input rows a matrix-matrix product is compute-bound: use F.linear
MIN_SPLIT_ELEMENTS = 2**18  # below 1 MiB of float32 a weight sits in cache and threads cost more than they save


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
    """An ``nn.Linear`` whose forward pass uses :func:`split_k_linear` where it pays: the
    few-row inputs of decoding (one row per sequence), a weight too big for the CPU caches
    (at least ``MIN_SPLIT_ELEMENTS``), more than one thread, eager mode. Everywhere else it is
    ``F.linear``. Parameters, state dict and everything that checks ``isinstance(m, nn.Linear)``
    are unchanged; :func:`prepare_for_decode` turns layers into this class and back.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Under torch.compile the column-major weight alone is used: inductor turns a one-row
        # bmm into a slow reduction, and reading the thread count would break the graph.
        if (not torch.compiler.is_compiling() and x.device.type == "cpu"
                and self.weight.numel() >= MIN_SPLIT_ELEMENTS and x.numel() <= MAX_SPLIT_ROWS * self.in_features
                and column_major(self.weight)):
            shards = torch.get_num_threads()
            if shards > 1 and self.in_features % shards == 0:
                return split_k_linear(x, self.weight, self.bias, shards)
        return F.linear(x, self.weight, self.bias)


@torch.no_grad()
def prepare_for_decode(model: nn.Module, enable: bool = True) -> nn.Module:
    """Make ``model``'s CPU linear layers fast for decoding, in place; return the model.

    Every ``nn.Linear`` (exactly that class: LoRA or quantized layers keep their own forward,
    though the ``nn.Linear`` inside a LoRA layer is converted) whose weight lives on the CPU gets
    a column-major weight and becomes a :class:`SplitKLinear`. Tied weights stay tied (it is
    the same parameter). Training still works afterwards, with the same results up to rounding.
    ``enable=False`` undoes it: row-major weights, plain ``nn.Linear``. GPU layers are left as
    they are: GPU kernels read either order at full speed, and one matrix-vector product
    already fills the whole GPU.
    """
    for module in model.modules():
        if type(module) not in (nn.Linear, SplitKLinear) or module.weight.device.type != "cpu":
            continue
        w = module.weight
        if enable:
            if not column_major(w):
                w.data = w.data.t().contiguous().t()
            module.__class__ = SplitKLinear
        else:
            if not w.is_contiguous():
                w.data = w.data.contiguous()
            module.__class__ = nn.Linear
    return model
