"""Back-of-the-envelope calculators: parameters, FLOPs, training memory, compute-optimal sizes.

Every formula here is exact arithmetic on the GPT-2 architecture of ``llmnotes.model`` or a
standard approximation from the literature, named where it is used:

- parameters: counted tensor by tensor (matches ``GPT(config).num_params()`` for every preset);
- FLOPs: the PaLM accounting (Chowdhery et al. 2022, arXiv:2204.02311, Appendix B),
  ``6N + 12·L·T·d`` per training token;
- memory: the ZeRO paper's bytes-per-parameter bookkeeping (Rajbhandari et al. 2020,
  arXiv:1910.02054) plus an activation estimate (Korthikanti et al. 2022, arXiv:2205.05198);
- compute-optimal model size: Chinchilla (Hoffmann et al. 2022, arXiv:2203.15556), ``C ≈ 6ND``
  with ``D ≈ 20N``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PFS_DAY = 1e15 * 86400  # one petaflop/s sustained for a day = 8.64e19 FLOPs


def _check_config(config) -> None:
    for name in ("vocab_size", "block_size", "n_layer", "n_embd"):
        if not hasattr(config, name):
            raise TypeError(f"config must be a GPTConfig (or have its fields); it lacks {name!r}")


def _positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


# ---- parameters ---------------------------------------------------------------------------


def count_params(config, *, exclude_embeddings: bool = False) -> int:
    """Number of parameters of ``GPT(config)``, a tied LM head counted once.

    Per block: two LayerNorms (``2·d`` each with bias), the attention's QKV projection
    (``d·3d + 3d``) and output projection (``d·d + d``), the MLP (``d·h + h`` and ``h·d + d``,
    ``h = 4d`` by default). Plus token (``V·d``) and position (``T·d``) tables, the final
    LayerNorm, and an untied LM head (``V·d``) if there is one.

    >>> from llmnotes.model import GPTConfig
    >>> count_params(GPTConfig.from_preset("gpt2"))
    124439808
    """
    _check_config(config)
    d, L = config.n_embd, config.n_layer
    h = getattr(config, "n_inner", None) or 4 * d
    bias = getattr(config, "bias", True)
    b = 1 if bias else 0
    ln = d + b * d                                      # LayerNorm gain (+ bias)
    attn = d * 3 * d + b * 3 * d + d * d + b * d        # c_attn + c_proj
    mlp = d * h + b * h + h * d + b * d                 # c_fc + c_proj
    per_block = 2 * ln + attn + mlp
    embeddings = config.vocab_size * d + config.block_size * d
    head = 0 if getattr(config, "tie_embeddings", True) else config.vocab_size * d
    total = embeddings + L * per_block + ln + head
    return total - embeddings if exclude_embeddings else total


# ---- FLOPs --------------------------------------------------------------------------------


def flops_per_token(config, seq_len: int | None = None, *, training: bool = True) -> int:
    """FLOPs to process one token, PaLM-style: ``6N + 12·L·T·d`` for training.

    ``N`` counts the weights that multiply activations: everything but the position table (and,
    with an untied head, the input token table, which is only a lookup). A matmul with ``N``
    weights costs ``2N`` FLOPs per token forward (a multiply and an add per weight) and ``4N``
    backward (gradients for the activations and for the weights): ``6N`` in all. Attention
    adds, per layer and token, ``QKᵀ`` and ``A·V`` at ``2·T·d`` each forward, i.e. ``12·L·T·d``
    for training, counted over the full ``T×T`` score matrix as PaLM does (a causal kernel
    could skip half). ``training=False`` gives the forward pass alone, ``2N + 4·L·T·d``.

    Args:
        config: a ``GPTConfig``.
        seq_len: context length ``T``; ``None`` means ``config.block_size``.
        training: forward + backward (True) or forward only.
    """
    _check_config(config)
    T = config.block_size if seq_len is None else seq_len
    if isinstance(T, bool) or not isinstance(T, int) or T <= 0:
        raise ValueError(f"seq_len must be a positive integer, got {seq_len!r}")
    n = count_params(config) - config.block_size * config.n_embd
    if not getattr(config, "tie_embeddings", True):
        n -= config.vocab_size * config.n_embd
    attention = 2 * config.n_layer * T * config.n_embd  # per forward matmul (QKᵀ or A·V) per token
    return (6 * n + 6 * attention) if training else (2 * n + 2 * attention)


def training_flops(n_params: float, n_tokens: float) -> float:
    """``C ≈ 6·N·D``: total training compute, ignoring the attention term (Kaplan et al. 2020)."""
    _positive("n_params", n_params)
    _positive("n_tokens", n_tokens)
    return 6.0 * n_params * n_tokens


def to_pfs_days(flops: float) -> float:
    """FLOPs → petaflop/s-days (1 PF/s-day = 1e15 FLOP/s × 86,400 s = 8.64e19 FLOPs)."""
    _positive("flops", flops)
    return flops / PFS_DAY


def from_pfs_days(pfs_days: float) -> float:
    """Petaflop/s-days → FLOPs."""
    _positive("pfs_days", pfs_days)
    return pfs_days * PFS_DAY


def chinchilla_optimal(compute_flops: float, tokens_per_param: float = 20.0) -> tuple[float, float]:
    """Compute-optimal ``(params, tokens)`` for a budget of ``compute_flops``.

    Chinchilla's fits (Hoffmann et al. 2022, arXiv:2203.15556) put the optimum at roughly 20
    training tokens per parameter; with ``C = 6·N·D`` and ``D = 20·N`` that gives
    ``N = sqrt(C / 120)``. Chinchilla itself, 70B parameters on 1.4T tokens, spent
    ``6 · 70e9 · 1.4e12 ≈ 5.88e23`` FLOPs.

    >>> n, d = chinchilla_optimal(5.88e23)
    >>> round(n / 1e9), round(d / 1e12, 2)
    (70, 1.4)
    """
    _positive("compute_flops", compute_flops)
    _positive("tokens_per_param", tokens_per_param)
    n = math.sqrt(compute_flops / (6.0 * tokens_per_param))
    return n, tokens_per_param * n


# ---- memory -------------------------------------------------------------------------------

# bytes per parameter: (weights, gradients, optimizer states)
_BYTES = {
    # fp32 everything: fp32 weights and grads, Adam's m and v in fp32
    ("fp32", "adam"): (4, 4, 8),
    ("fp32", "sgd"): (4, 4, 4),      # one momentum buffer
    # mixed precision (Micikevicius et al. 2017): fp16/bf16 weights and grads for the
    # forward/backward, and an fp32 master copy of the weights next to Adam's fp32 m and v.
    # ZeRO calls the optimizer's share K = 12 bytes: 2 + 2 + 12 = 16 bytes per parameter.
    ("mixed", "adam"): (2, 2, 12),
    ("mixed", "sgd"): (2, 2, 8),     # fp32 master weights + fp32 momentum
}


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes needed *per GPU* for one training configuration."""

    weights: float
    gradients: float
    optimizer: float
    activations: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations

    def gib(self) -> dict[str, float]:
        """Each component (and the total) in GiB (2**30 bytes)."""
        names = ("weights", "gradients", "optimizer", "activations", "total")
        return {k: getattr(self, k) / 2**30 for k in names}


def activation_bytes(config, batch_size: int, seq_len: int | None = None, *,
                     bytes_per_value: int = 2, recompute: bool = False) -> float:
    """Activation memory kept for the backward pass, per Korthikanti et al. (2022).

    Each transformer layer stores about ``s·b·h·(34 + 5·a·s/h)`` bytes with 16-bit activations
    (``s`` sequence length, ``b`` batch, ``h`` width, ``a`` heads; the ``5·a·s/h`` term is the
    attention score matrices, which fused attention kernels such as FlashAttention do not store).
    With full activation recomputation only each layer's input (``2·s·b·h`` bytes) is kept.
    The output logits (``s·b·V`` fp32 values for the loss) are added on top.
    """
    _check_config(config)
    s = config.block_size if seq_len is None else seq_len
    _positive("batch_size", batch_size)
    _positive("seq_len", s)
    h, a, L = config.n_embd, getattr(config, "n_head", 1), config.n_layer
    scale = bytes_per_value / 2
    per_layer = 2 * s * batch_size * h if recompute else s * batch_size * h * (34 + 5 * a * s / h)
    return L * per_layer * scale + 4.0 * s * batch_size * config.vocab_size


def training_memory(n_params: float, *, precision: str = "mixed", optimizer: str = "adam",
                    zero_stage: int = 0, n_gpus: int = 1, activations: float = 0.0) -> MemoryEstimate:
    """Training memory per GPU: weights, gradients, optimizer states (+ given activations).

    ZeRO (Rajbhandari et al. 2020, arXiv:1910.02054) removes the redundancy of plain data
    parallelism, where every one of ``n_gpus`` holds all of it: stage 1 partitions the optimizer
    states across the GPUs, stage 2 also the gradients, stage 3 also the weights themselves
    (PyTorch's FSDP is stage 3).

    Args:
        n_params: parameter count.
        precision: ``"fp32"`` (4 + 4 + 8 = 16 bytes per parameter with Adam) or ``"mixed"``
            (fp16/bf16 weights and grads + fp32 master weights and Adam moments: 2 + 2 + 12 = 16).
        optimizer: ``"adam"`` (also AdamW: two moments) or ``"sgd"`` (one momentum buffer).
        zero_stage: 0 (plain data parallel), 1, 2 or 3.
        n_gpus: data-parallel degree the states are partitioned over.
        activations: activation bytes per GPU (see ``activation_bytes``); not partitioned.

    >>> training_memory(1e9, precision="fp32").weights / 1e9   # 1B fp32 weights ≈ 4 GB
    4.0
    """
    _positive("n_params", n_params)
    optimizer = "adam" if optimizer == "adamw" else optimizer
    if (precision, optimizer) not in _BYTES:
        raise ValueError(f"precision must be 'fp32' or 'mixed' and optimizer 'adam', 'adamw' or 'sgd', "
                         f"got precision={precision!r}, optimizer={optimizer!r}")
    if zero_stage not in (0, 1, 2, 3):
        raise ValueError(f"zero_stage must be 0, 1, 2 or 3, got {zero_stage!r}")
    if isinstance(n_gpus, bool) or not isinstance(n_gpus, int) or n_gpus < 1:
        raise ValueError(f"n_gpus must be a positive integer, got {n_gpus!r}")
    if activations < 0:
        raise ValueError(f"activations must be >= 0 bytes, got {activations!r}")
    w, g, o = (b * n_params for b in _BYTES[(precision, optimizer)])
    if zero_stage >= 1:
        o /= n_gpus
    if zero_stage >= 2:
        g /= n_gpus
    if zero_stage >= 3:
        w /= n_gpus
    return MemoryEstimate(weights=w, gradients=g, optimizer=o, activations=float(activations))
