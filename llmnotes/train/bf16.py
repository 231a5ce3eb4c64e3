"""bfloat16 training with float32 master weights ("true bf16" mixed precision).

Autocast keeps the weights in float32 and casts them to bfloat16 inside every matmul, on every
forward, and the backward pass then casts gradients back: on a CPU those casts and the float32
elementwise work around them cost as much as the bf16 matmuls save. Here instead:

* the **model** holds bfloat16 weights, so forward and backward run entirely in bf16
  (activations, gradients, every matmul on the CPU's bf16 units, AVX512-BF16 or AMX);
* a float32 **master** copy of every weight is what the optimizer updates: a bf16 weight
  cannot absorb an update smaller than 1/256 of itself, so small learning-rate steps would be
  lost if applied to it directly (Micikevicius et al. 2018, arXiv:1710.03740);
* each step: backward in bf16 → gradients copied (upcast) into the masters' ``.grad`` →
  clip and optimizer step on the masters → masters copied (rounded) into the bf16 weights.

The loss (cross-entropy over the vocabulary) is computed from float32 logits. Losses follow
the float32 run's within a tolerance ``tests/test_bf16_train.py`` states, not bit for bit.

Attention is the one place the kernel matters beyond the matrix multiplies: on a CPU without
AMX, PyTorch's fused (flash) attention backward in bf16 measured about 2x slower than the
explicit ``softmax(QKᵀ/√d)V`` (two small batched matmuls, fp32-accumulated softmax), while on
other CPUs the fused kernel may win. :meth:`MasterWeights.choose_attention` times both on one
layer at the run's shape and keeps the faster for the bf16 steps (``to_float`` restores the
model's own choice).
"""

from __future__ import annotations

import copy
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

MIN_PARAMS = 10_000_000  # below this, per-op overhead dominates a step and bf16 was not faster (see choose_precision)
MIN_SPEEDUP = 1.2  # bf16 must measure at least this much faster than fp32 to be chosen


class MasterWeights:
    """Float32 master copies of a model's parameters (shared parameters once), and the switch
    between the model holding bf16 copies (for training steps) and float32 weights.

    ``masters`` are float32 ``nn.Parameter``s in the order of ``model.parameters()``; build the
    optimizer on :meth:`named_masters`. A step: :meth:`to_bf16` (no-op if already), forward and
    backward, :meth:`grads_to_masters`, optimizer step on the masters, :meth:`masters_to_model`.
    :meth:`to_float` gives the model back its float32 weights (the masters' values).
    """

    def __init__(self, model: nn.Module) -> None:
        params = list(model.named_parameters())  # shared (tied) parameters appear once
        if not params:
            raise ValueError("the model has no parameters to train")
        self.model = model
        self.names = [n for n, _ in params]
        self.model_params = [p for _, p in params]
        self.masters = [nn.Parameter(p.detach().float().clone(), requires_grad=p.requires_grad)
                        for p in self.model_params]
        self.attention_impl: str | None = None  # set by choose_attention(); None keeps the model's
        self._own_impl = {attn: attn.impl for attn in _attention_layers(model)}  # what to_float restores
        self.attention_reason = "not measured (choose_attention was not called)"

    def named_masters(self) -> list[tuple[str, nn.Parameter]]:
        """``(name, float32 master)`` pairs, named like the model's parameters."""
        return list(zip(self.names, self.masters))

    @torch.no_grad()
    def to_bf16(self) -> None:
        """Give the model bf16 weights (and float buffers) rounded from the masters."""
        if self.model_params[0].dtype == torch.bfloat16:
            return
        for p, m in zip(self.model_params, self.masters):
            p.data = m.detach().to(torch.bfloat16)
        self._cast_buffers(torch.bfloat16)
        self._apply_attention()

    @torch.no_grad()
    def to_float(self) -> None:
        """Give the model float32 weights equal to the masters (e.g. after training)."""
        for p, m in zip(self.model_params, self.masters):
            p.data = m.detach().clone()
        self._cast_buffers(torch.float32)
        for attn, impl in self._own_impl.items():
            attn.impl = impl

    def choose_attention(self, x: torch.Tensor, rounds: int = 5) -> tuple[str | None, str]:
        """Time one attention layer's forward+backward in bf16, fused (``"sdpa"``) against
        explicit (``"manual"``), at the shape ``x`` (a batch of token ids) gives; the bf16 steps
        then use the faster. Models whose attention is already explicit are left alone.
        Returns and stores ``(attention_impl, attention_reason)``."""
        own = self._own_impl
        if not own or any(impl != "sdpa" for impl in own.values()):
            self.attention_impl, self.attention_reason = None, "no fused-attention layers to choose for"
            return self.attention_impl, self.attention_reason
        ms = attention_step_ms(next(iter(own)), x.shape[0], x.shape[-1], rounds)
        self.use_attention(min(ms, key=ms.get), f"one layer's bf16 forward+backward: fused "
                           f"{ms['sdpa']:.2f} ms, explicit {ms['manual']:.2f} ms")
        return self.attention_impl, self.attention_reason

    def use_attention(self, impl: str | None, reason: str) -> None:
        """Set the bf16 steps' attention kernel (a resumed run takes its checkpoint's, so that
        it continues exactly as the uninterrupted run would have)."""
        if impl not in (None, "sdpa", "manual"):
            raise ValueError(f"attention kernel must be 'sdpa', 'manual' or None, got {impl!r}")
        self.attention_impl, self.attention_reason = impl, reason
        if self.model_params[0].dtype == torch.bfloat16:
            self._apply_attention()

    def _apply_attention(self) -> None:
        """Give the model's attention layers the bf16 steps' kernel, if one was chosen."""
        if self.attention_impl is not None:
            for attn in self._own_impl:
                attn.impl = self.attention_impl

    def _cast_buffers(self, dtype: torch.dtype) -> None:
        for b in self.model.buffers():
            if b.is_floating_point():
                b.data = b.data.to(dtype)

    @torch.no_grad()
    def grads_to_masters(self) -> None:
        """Move each bf16 gradient into its master's ``.grad`` as float32; clear the model's.

        The float32 gradients live in buffers allocated once: a fresh 500 MB allocation per step
        (GPT-2 small) costs page faults and zero-filling that show up in a CPU step's time.
        """
        if not hasattr(self, "_grad_buffers"):
            self._grad_buffers = [torch.empty_like(m) for m in self.masters]
        for p, m, buf in zip(self.model_params, self.masters, self._grad_buffers):
            m.grad = None if p.grad is None else buf.copy_(p.grad)
            p.grad = None

    @torch.no_grad()
    def masters_to_model(self) -> None:
        """Round the updated float32 masters into the model's bf16 weights."""
        for p, m in zip(self.model_params, self.masters):
            p.copy_(m)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The float32 weights by parameter name (what a checkpoint stores)."""
        return {n: m.detach() for n, m in zip(self.names, self.masters)}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore masters saved by :meth:`state_dict`, then the model's weights from them."""
        for n, m in zip(self.names, self.masters):
            m.copy_(state[n])
        bf16 = self.model_params[0].dtype == torch.bfloat16
        for p, m in zip(self.model_params, self.masters):
            p.copy_(m if not bf16 else m.to(torch.bfloat16))


def _attention_layers(model: nn.Module) -> list[nn.Module]:
    from llmnotes.model import CausalSelfAttention

    return [m for m in model.modules() if isinstance(m, CausalSelfAttention)]


def attention_step_ms(attn: nn.Module, batch: int, seq: int, rounds: int = 5) -> dict[str, float]:
    """Best-of-``rounds`` milliseconds of a bf16 copy of attention layer ``attn``, forward and
    backward on a (batch, seq, width) input, per implementation (interleaved). The layer's
    projections are timed too; only the core between them differs between the two."""
    layer = copy.deepcopy(attn).to(torch.bfloat16).train()
    layer.dropout = 0.0  # timing only: no dropout masks
    width = layer.c_attn.in_features
    gen = torch.Generator().manual_seed(0)  # the run's own random stream stays untouched
    x = torch.randn(batch, seq, width, generator=gen).to(torch.bfloat16).requires_grad_()
    best = {"sdpa": float("inf"), "manual": float("inf")}
    for r in range(rounds + 1):  # round 0 warms up
        for impl in best:
            layer.impl = impl
            t0 = time.perf_counter()
            layer(x)[0].sum().backward()
            if r:
                best[impl] = min(best[impl], 1e3 * (time.perf_counter() - t0))
    return best


def _step_seconds(model: nn.Module, x: torch.Tensor) -> float:
    t0 = time.perf_counter()
    logits = model(x)
    F.cross_entropy(logits.float().flatten(0, 1), x.flatten()).backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def native_bf16_cpu() -> bool:
    """True if this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX)."""
    from llmnotes.qkernels import native_bf16

    return native_bf16()


def choose_precision(model: nn.Module, x: torch.Tensor, rounds: int = 2) -> tuple[str, str]:
    """``("bf16-master" | "fp32", why)`` for training ``model`` on this machine.

    bf16 master weights only where the CPU has native bf16, the model is large enough for matrix
    multiplies to dominate a step (``MIN_PARAMS``), and one forward+backward on ``x`` (a batch of
    token ids) measures at least ``MIN_SPEEDUP`` faster in bf16 than in fp32 (interleaved rounds).
    """
    if x.device.type != "cpu":
        return "fp32", f"auto picks bf16 master weights on CPUs only (device {x.device.type}); pass dtype='bf16'"
    if not native_bf16_cpu():
        return "fp32", "this CPU has no native bf16 (AVX512-BF16 or AMX)"
    n = sum(p.numel() for p in model.parameters())
    if n < MIN_PARAMS:
        return "fp32", f"{n:,} parameters: too small for bf16 to pay (below {MIN_PARAMS:,})"
    bf16 = copy.deepcopy(model).to(torch.bfloat16).train()
    was_training = model.training
    model.train()
    fp32_t, bf16_t = [], []
    for r in range(rounds + 1):  # round 0 warms up both
        a, b = _step_seconds(model, x), _step_seconds(bf16, x)
        if r:
            fp32_t.append(a)
            bf16_t.append(b)
    model.train(was_training)
    speedup = statistics.median(fp32_t) / statistics.median(bf16_t)
    if speedup >= MIN_SPEEDUP:
        return "bf16-master", f"native bf16 CPU; one step measured {speedup:.2f}x faster in bf16"
    return "fp32", f"native bf16 CPU, but bf16 measured only {speedup:.2f}x fp32 (needs {MIN_SPEEDUP}x)"
