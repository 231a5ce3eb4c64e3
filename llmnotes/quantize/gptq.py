"""GPTQ: 4-bit weights that compensate their own rounding errors (Frantar et al. 2022,
arXiv:2210.17323).

Round-to-nearest (RTN) quantizes every weight independently. GPTQ quantizes one input column
of a layer's weight at a time and, after each, nudges the *not yet quantized* columns so that
the layer's output on real inputs changes as little as possible. "As little as possible" is
measured by ``||W X - Q X||²`` over calibration inputs X (in, N), whose curvature is the
Hessian ``H = 2 X Xᵀ``. Quantizing column i with error e asks the remaining columns to absorb
``-e · H⁻¹[i, i:] / H⁻¹[i, i]`` (the Optimal Brain Surgeon update); then column i is removed
from the problem, which updates ``H⁻¹`` by one step of Gaussian elimination.

Two readable-to-fast steps, both here:

* ``gptq_reference``: exactly that loop, updating the full inverse Hessian after each column.
* ``gptq_quantize_weight``: the paper's fast form. The successive rows of ``H⁻¹`` after each
  elimination are the rows of the upper Cholesky factor of ``H⁻¹`` (scaled), computed once;
  updates are applied lazily within a batch of 128 columns (``column_batch``; the paper's "lazy
  batch", ``blocksize`` in its reference code) and to the rest of the matrix once per batch,
  turning many thin updates into one matrix multiply. Tests check both agree.

Extras as in the paper's code: dampening (add 1% of the mean diagonal to H, for stability),
groups (a new scale/zero every ``group_size`` columns, computed from the already-updated
weights) and act-order (quantize columns in order of decreasing ``diag(H)``, the most
"important" first; with it, each group's scale is computed up front on the original columns,
GPTQ's ``static_groups``, so the stored layout stays one scale per consecutive group).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

from llmnotes.quantize.layers import QuantizedLinear
from llmnotes.quantize.primitives import absmax_quantize, fp16_scale, zeropoint_quantize
from llmnotes.utils import set_module

@contextlib.contextmanager
def _cpu_threads(n: int, device: torch.device):
    """Run the block with ``n`` intra-op CPU threads (restored after).

    The column loop is thousands of tiny vector operations; on a CPU, handing each to a thread
    pool costs more in synchronisation than it saves (25x slower measured on a busy 2-core
    machine), so the loop runs on one thread. GPU work is unaffected.
    """
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------
# Grid helpers shared by both versions
# ---------------------------------------------------------------------------------------------


def _group_params(w: torch.Tensor, bits: int, symmetric: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row (scale, zero) for a block of columns w (out, g); scales rounded up to fp16 as stored."""
    if symmetric:
        _, s = absmax_quantize(w, bits, dim=1)
        s = fp16_scale(s.squeeze(1))
        return s, torch.zeros_like(s)
    _, s, _ = zeropoint_quantize(w, bits, dim=1)
    s = fp16_scale(s.squeeze(1))
    zero = torch.round(-w.amin(dim=1).clamp(max=0) / s).clamp(0, 2 ** bits - 1)
    return s, zero


def _quantize_column(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int,
                     symmetric: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Round one column w (out,) to the grid; returns (codes, dequantized values)."""
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        c = torch.round(w / scale).clamp(-qmax, qmax)
        return c, c * scale
    c = (torch.round(w / scale) + zero).clamp(0, 2 ** bits - 1)
    return c, (c - zero) * scale


def _prepare(W: torch.Tensor, H: torch.Tensor, damp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Float copies of W and H; dead inputs (never active) zeroed; H dampened."""
    if H.shape != (W.shape[1], W.shape[1]):
        raise ValueError(f"H must be (in, in) = {(W.shape[1],) * 2}, got {tuple(H.shape)}")
    if not 0 <= damp < 1:
        raise ValueError(f"damp must be in [0, 1), got {damp}")
    W, H = W.detach().clone().float(), H.detach().clone().double()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0  # an input that is always 0: any weight works; make it 0
    W[:, dead] = 0.0
    H += damp * torch.diag(H).mean() * torch.eye(H.shape[0], dtype=H.dtype, device=H.device)
    return W, H


def _check(W: torch.Tensor, bits: int, group_size: int) -> int:
    if bits not in (4, 8):
        raise ValueError(f"bits must be 4 or 8, got {bits!r}")
    gs = min(group_size, W.shape[1])
    if W.shape[1] % gs:
        raise ValueError(f"group_size={group_size} must divide in_features={W.shape[1]}")
    return gs


# ---------------------------------------------------------------------------------------------
# The readable version
# ---------------------------------------------------------------------------------------------


def gptq_reference(W: torch.Tensor, H: torch.Tensor, bits: int = 4, group_size: int = 128,
                   symmetric: bool = False, damp: float = 0.01):
    """GPTQ column by column with the explicit inverse Hessian (slow: O(in³) per column).

    Returns ``(codes, scale, zero)``: codes (out, in), scale/zero (out, in // group_size).
    """
    gs = _check(W, bits, group_size)
    W, H = _prepare(W, H, damp)
    Hinv = torch.linalg.inv(H)
    out_f, n = W.shape
    codes = torch.zeros_like(W)
    scale = torch.zeros(out_f, n // gs)
    zero = torch.zeros(out_f, n // gs)
    for i in range(n):
        if i % gs == 0:  # a new group: its grid comes from the current (error-updated) weights
            scale[:, i // gs], zero[:, i // gs] = _group_params(W[:, i:i + gs], bits, symmetric)
        c, q = _quantize_column(W[:, i], scale[:, i // gs], zero[:, i // gs], bits, symmetric)
        codes[:, i] = c
        err = (W[:, i] - q) / Hinv[i, i].float()  # (out,)
        # The remaining columns absorb the error in proportion to their coupling with column i.
        W[:, i:] -= err[:, None] * Hinv[i, i:].float()[None, :]
        # Remove column i from the problem: one step of Gaussian elimination on H⁻¹.
        Hinv = Hinv - Hinv[:, i:i + 1] @ Hinv[i:i + 1, :] / Hinv[i, i]
    return codes, scale, zero


# ---------------------------------------------------------------------------------------------
# The fast version
# ---------------------------------------------------------------------------------------------


def gptq_quantize_weight(W: torch.Tensor, H: torch.Tensor, bits: int = 4, group_size: int = 128,
                         symmetric: bool = False, damp: float = 0.01, column_batch: int = 128,
                         act_order: bool = False):
    """GPTQ with the Cholesky form of H⁻¹ and lazy batch updates.

    Args:
        W: weight (out, in).
        H: Hessian (in, in), ``2 X Xᵀ / N`` over calibration inputs.
        bits, group_size, symmetric: the grid (zero-point unless ``symmetric``).
        damp: fraction of the mean of diag(H) added to the diagonal.
        column_batch: columns per lazy batch: updates inside a batch are applied column by
            column, to the columns after it once per batch (the paper's B = 128; its reference
            code calls it ``blocksize``). It changes the speed, not the result (up to rounding).
        act_order: quantize columns by decreasing diag(H).

    Returns:
        ``(codes, scale, zero)`` in the original column order.
    """
    gs = _check(W, bits, group_size)
    if isinstance(column_batch, bool) or not isinstance(column_batch, int) or column_batch <= 0:
        raise ValueError(f"column_batch must be a positive integer, got {column_batch!r}")
    W, H = _prepare(W, H, damp)
    out_f, n = W.shape
    scale = torch.zeros(out_f, n // gs, device=W.device)
    zero = torch.zeros(out_f, n // gs, device=W.device)
    perm = torch.arange(n, device=W.device)
    if act_order:
        for g in range(n // gs):  # static groups: every grid from the original columns
            scale[:, g], zero[:, g] = _group_params(W[:, g * gs:(g + 1) * gs], bits, symmetric)
        perm = torch.argsort(torch.diag(H), descending=True)
        W, H = W[:, perm], H[perm][:, perm]
    # Rows of U (upper Cholesky factor of H⁻¹) are the rows of H⁻¹ left after eliminating the
    # previous columns, divided by the square root of their pivot: all the loop needs.
    U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True).float()
    codes = torch.zeros_like(W)
    with _cpu_threads(1, W.device):
        _gptq_loop(W, U, codes, scale, zero, perm, bits, gs, symmetric, column_batch, act_order)
    if act_order:
        codes = codes[:, torch.argsort(perm)]
    return codes, scale, zero


def _gptq_loop(W, U, codes, scale, zero, perm, bits, gs, symmetric, column_batch, act_order) -> None:
    """The column loop of ``gptq_quantize_weight``; fills ``codes``, ``scale``, ``zero`` in place."""
    n = W.shape[1]
    group_of = [p // gs for p in perm.tolist()]  # group of each (permuted) column, no device syncs
    for i1 in range(0, n, column_batch):
        i2 = min(i1 + column_batch, n)
        W1, U1 = W[:, i1:i2].clone(), U[i1:i2, i1:i2]
        Err1 = torch.zeros_like(W1)
        for i in range(i2 - i1):
            col = i1 + i
            g = group_of[col]
            if not act_order and col % gs == 0:
                # The group's current values: the rest of this batch, plus (if the group runs
                # past the batch) later columns with this batch's pending updates applied.
                ahead, end = W1[:, i:], col + gs
                if end > i2:
                    later = W[:, i2:end] - Err1[:, :i] @ U[i1:i1 + i, i2:end]
                    ahead = torch.cat([ahead, later], dim=1)
                scale[:, g], zero[:, g] = _group_params(ahead[:, :gs], bits, symmetric)
            c, q = _quantize_column(W1[:, i], scale[:, g], zero[:, g], bits, symmetric)
            codes[:, col] = c
            err = (W1[:, i] - q) / U1[i, i]
            W1[:, i:] -= err[:, None] * U1[i, i:][None, :]  # update the rest of this batch now
            Err1[:, i] = err
        W[:, i2:] -= Err1 @ U[i1:i2, i2:]  # ... and everything after it once per batch


def dequantize_codes(codes, scale, zero, group_size: int, symmetric: bool = False) -> torch.Tensor:
    """Float weight (out, in) from GPTQ/RTN codes and per-group grids."""
    s = scale.repeat_interleave(group_size, dim=1)
    return codes * s if symmetric else (codes - zero.repeat_interleave(group_size, dim=1)) * s


def rtn_quantize_weight(W: torch.Tensor, bits: int = 4, group_size: int = 128, symmetric: bool = False):
    """Round-to-nearest on the same grid as GPTQ, for comparison: ``(codes, scale, zero)``."""
    gs = _check(W, bits, group_size)
    W = W.detach().float()
    out_f, n = W.shape
    codes, scale, zero = torch.zeros_like(W), torch.zeros(out_f, n // gs), torch.zeros(out_f, n // gs)
    for g in range(n // gs):
        cols = slice(g * gs, (g + 1) * gs)
        scale[:, g], zero[:, g] = _group_params(W[:, cols], bits, symmetric)
        codes[:, cols] = _quantize_column(W[:, cols], scale[:, g:g + 1], zero[:, g:g + 1], bits, symmetric)[0]
    return codes, scale, zero


def output_error(W: torch.Tensor, Wq: torch.Tensor, X: torch.Tensor) -> float:
    """Mean squared change of the layer's output on inputs X (N, in): ``||X Wᵀ - X Wqᵀ||² / N``."""
    return float(((X @ (W.float() - Wq.float()).T) ** 2).sum() / X.shape[0])


# ---------------------------------------------------------------------------------------------
# A whole model, block by block
# ---------------------------------------------------------------------------------------------


class _Stop(Exception):
    """Raised by a hook to end a calibration forward pass early."""


def _block_key(name: str) -> str:
    """'transformer.h.3.attn.c_attn' -> 'transformer.h.3' (layers of one block share a pass)."""
    parts = name.split(".")
    for i, p in enumerate(parts):
        if p.isdigit():
            return ".".join(parts[:i + 1])
    return name


@torch.no_grad()
def gptq_quantize_model(model: nn.Module, layers: list[tuple[str, nn.Linear]], calibration: torch.Tensor,
                        bits: int = 4, group_size: int = 128, symmetric: bool = False, damp: float = 0.01,
                        act_order: bool = False, column_batch: int = 128) -> nn.Module:
    """Quantize ``layers`` of ``model`` with GPTQ, one transformer block at a time.

    The Hessians of a block's layers come from a calibration pass through the model whose
    earlier blocks are already quantized, so each block corrects for its predecessors' errors
    (the paper's sequential scheme). The pass stops after the block's last layer. Each pass
    starts again from the embeddings, which keeps this generic (any model whose linear layers
    live in numbered blocks) at the cost of O(blocks²) block evaluations; the paper's code
    instead stores every block's inputs and runs each block once.
    """

    groups: dict[str, list[tuple[str, nn.Linear]]] = {}
    for name, lin in layers:
        groups.setdefault(_block_key(name), []).append((name, lin))
    for members in groups.values():
        H = {name: None for name, _ in members}
        seen = {name: 0 for name, _ in members}

        def accumulate(name):
            def hook(module, inputs, output):
                x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).float()  # (N, in)
                n0, n1 = seen[name], seen[name] + x.shape[0]
                h = (2.0 / n1) * (x.T @ x).double()  # fp32 product, fp64 running mean
                H[name] = h if H[name] is None else H[name] * (n0 / n1) + h
                seen[name] = n1
            return hook

        def stop(module, inputs, output):
            raise _Stop

        handles = [lin.register_forward_hook(accumulate(name)) for name, lin in members]
        handles.append(members[-1][1].register_forward_hook(stop))
        try:
            device = next(model.parameters()).device
            for i in range(0, calibration.shape[0], 8):
                try:
                    model(calibration[i:i + 8].to(device))
                except _Stop:
                    pass
        finally:
            for h in handles:
                h.remove()
        for name, lin in members:
            if H[name] is None:
                raise RuntimeError(f"layer {name} saw no calibration input; is it used in forward()?")
            codes, scale, zero = gptq_quantize_weight(lin.weight, H[name].to(lin.weight.device), bits,
                                                      group_size, symmetric, damp, column_batch, act_order)
            gs = min(group_size, lin.in_features)
            set_module(model, name, QuantizedLinear.from_codes(codes, scale, None if symmetric else zero,
                                                                bits, gs, lin.bias))
    return model
