"""The pieces that turn GPT-2 into a Llama/Qwen-style model, one small module each.

* ``RMSNorm`` (Zhang & Sennrich, 2019, arXiv:1910.07467): LayerNorm without mean-centring or
  bias: x / rms(x) * g.
* Rotary position embeddings (Su et al., 2021, arXiv:2104.09864), in the "rotate half"
  layout of Hugging Face Llama: dimension i is paired with i + d/2. Optional context-length
  scaling: ``linear`` (position interpolation, Chen et al., 2023, arXiv:2306.15595) and Llama 3's
  frequency-band rule.
* ``SwiGLU`` (Shazeer, 2020, arXiv:2002.05202): down(silu(gate(x)) * up(x)).
* ``MoE``: a mixture of SwiGLU experts with top-k routing, as Mixtral (Jiang et al., 2024,
  arXiv:2401.04088), plus the Switch Transformer load-balancing loss (Fedus et al., 2021,
  arXiv:2101.03961).

``model.py`` picks among these by configuration; nothing here knows about the rest of the model.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    """Root-mean-square normalisation over the last dimension, computed in float32 as Llama does."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


# ---- rotary position embeddings ----------------------------------------------------------


def rope_frequencies(head_dim: int, theta: float = 10000.0, scaling: dict | None = None,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """Angular frequencies ω_i = θ^(-2i/d), i < d/2, optionally rescaled for longer contexts.

    Args:
        scaling: ``None``; ``{"rope_type": "linear", "factor": s}`` divides every frequency by s
            (positions are squeezed s-fold); ``{"rope_type": "llama3", "factor", "low_freq_factor",
            "high_freq_factor", "original_max_position_embeddings"}`` divides only the low
            frequencies (long wavelengths) and interpolates smoothly in between.
    """
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim)
    if not scaling:
        return inv_freq
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return inv_freq
    factor = float(scaling["factor"])
    if kind == "linear":
        return inv_freq / factor
    if kind == "llama3":
        low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
        old_len = float(scaling["original_max_position_embeddings"])
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
        smooth = (old_len / wavelen - low) / (high - low)
        blended = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
        return torch.where(medium, blended, scaled)
    raise ValueError(f"rope scaling type {kind!r} is not supported; use 'linear' or 'llama3'")


def rope_cos_sin(position_ids: torch.Tensor, inv_freq: torch.Tensor, dtype: torch.dtype):
    """cos and sin tables (B, 1, T, hs) for positions (B, T), each frequency used twice (i, i+d/2)."""
    angles = position_ids[..., None].float() * inv_freq  # (B, T, hs/2)
    angles = torch.cat([angles, angles], dim=-1)  # (B, T, hs)
    return angles.cos()[:, None].to(dtype), angles.sin()[:, None].to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each (x_i, x_{i+d/2}) pair of x (B, nh, T, hs) by its position's angle."""
    return x * cos + rotate_half(x) * sin


# ---- feed-forward variants ---------------------------------------------------------------


class SwiGLU(nn.Module):
    """Gated MLP: c_proj(silu(gate) * up), with gate and up computed by one fused matmul (c_fc)."""

    def __init__(self, n_embd: int, hidden: int, bias: bool = False) -> None:
        super().__init__()
        self.hidden = hidden
        self.c_fc = nn.Linear(n_embd, 2 * hidden, bias=bias)  # [gate | up]
        self.c_proj = nn.Linear(hidden, n_embd, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.c_fc(x).split(self.hidden, dim=-1)
        return self.c_proj(F.silu(gate) * up)


class MoE(nn.Module):
    """Top-k mixture of SwiGLU experts.

    A linear router scores the experts for every token; the token goes to its ``top_k`` best
    experts and their outputs are mixed with the softmax weights renormalised over those k.
    After each forward pass ``aux_loss`` holds the load-balancing loss
    ``n_expert * Σ_i f_i · P_i`` (f_i: fraction of routing slots given to expert i, P_i: mean
    router probability of expert i), which is 1 when the load is perfectly balanced.
    """

    def __init__(self, n_embd: int, hidden: int, n_expert: int, top_k: int, bias: bool = False) -> None:
        super().__init__()
        if not 1 <= top_k <= n_expert:
            raise ValueError(f"n_expert_per_token must be in [1, n_expert={n_expert}], got {top_k}")
        self.n_expert, self.top_k = n_expert, top_k
        self.router = nn.Linear(n_embd, n_expert, bias=False)
        self.experts = nn.ModuleList([SwiGLU(n_embd, hidden, bias) for _ in range(n_expert)])
        self.aux_loss = torch.zeros(())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])  # (N, C) tokens
        probs = F.softmax(self.router(x).float(), dim=-1)  # (N, E)
        weights, chosen = probs.topk(self.top_k, dim=-1)  # (N, k)
        weights = weights / weights.sum(-1, keepdim=True)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            token, slot = torch.where(chosen == e)  # the tokens routed to expert e
            if token.numel():
                y = expert(x[token]) * weights[token, slot, None].to(x.dtype)
                out.index_add_(0, token, y)
        load = F.one_hot(chosen, self.n_expert).float().sum(1).mean(0) / self.top_k  # f_i
        self.aux_loss = self.n_expert * (load * probs.mean(0)).sum()
        return out.reshape(shape)
