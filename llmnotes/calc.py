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


def _norm_params(config, dim: int) -> int:
    if getattr(config, "norm", "layernorm") == "rmsnorm":
        return dim  # RMSNorm: a gain, no bias
    return dim * (2 if getattr(config, "bias", True) else 1)  # LayerNorm: gain (+ bias)


def _swiglu_params(d: int, h: int, b: int) -> int:
    return d * 2 * h + b * 2 * h + h * d + b * d  # [gate | up] then down


def param_breakdown(config) -> dict[str, int]:
    """Parameters by component: token/position tables, attention, MLP, norms, LM head.

    Also ``"mlp_active"``: the MLP parameters one token actually uses (differs from ``"mlp"``
    only for a mixture of experts, where each token visits ``n_expert_per_token`` experts).
    """
    _check_config(config)
    d, L = config.n_embd, config.n_layer
    b = 1 if getattr(config, "bias", True) else 0
    n_head = config.n_head
    head = getattr(config, "head_dim", None) or d // n_head
    kv = getattr(config, "n_kv_head", None) or n_head
    qkv_bias = b if getattr(config, "qkv_bias", None) is None else int(bool(config.qkv_bias))
    q_dim, kv_dim = n_head * head, kv * head
    attn = d * (q_dim + 2 * kv_dim) + qkv_bias * (q_dim + 2 * kv_dim)  # c_attn: q | k | v
    attn += q_dim * d + b * d                                           # c_proj
    if getattr(config, "qk_norm", False):
        attn += 2 * head                                                # per-head RMSNorm gains
    h = getattr(config, "n_inner", None) or 4 * d
    kind = getattr(config, "mlp", "gelu")
    if kind == "gelu":
        mlp = mlp_active = d * h + b * h + h * d + b * d                # c_fc, c_proj
    elif kind == "swiglu":
        mlp = mlp_active = _swiglu_params(d, h, b)
    else:  # "moe": a router plus n_expert SwiGLU experts, k of them used per token
        router, expert = d * config.n_expert, _swiglu_params(d, h, b)
        mlp = router + config.n_expert * expert
        mlp_active = router + config.n_expert_per_token * expert
    learned_pos = getattr(config, "pos_emb", "learned") == "learned"
    return {
        "wte": config.vocab_size * d,
        "wpe": config.block_size * d if learned_pos else 0,
        "attention": L * attn,
        "mlp": L * mlp,
        "mlp_active": L * mlp_active,
        "norms": (2 * L + 1) * _norm_params(config, d),
        "lm_head": 0 if getattr(config, "tie_embeddings", True) else config.vocab_size * d,
    }


def count_params(config, *, exclude_embeddings: bool = False) -> int:
    """Number of parameters of ``GPT(config)``, a tied LM head counted once.

    For GPT-2, per block: two LayerNorms (``2·d`` each with bias), the attention's QKV
    projection (``d·3d + 3d``) and output projection (``d·d + d``), the MLP (``d·h + h`` and
    ``h·d + d``, ``h = 4d``): ``12d² + 13d``. Plus token (``V·d``) and position (``T·d``)
    tables, the final LayerNorm, and an untied LM head (``V·d``) if there is one. The Llama-style
    options (RMSNorm, SwiGLU, grouped-query attention, RoPE, mixture of experts) are counted too.

    Args:
        exclude_embeddings: leave out the token and position tables (as
            ``GPT.num_params(exclude_embeddings=True)``).

    >>> from llmnotes.model import GPTConfig
    >>> count_params(GPTConfig.from_preset("gpt2"))
    124439808
    """
    parts = param_breakdown(config)
    total = sum(v for k, v in parts.items() if k != "mlp_active")
    return total - parts["wte"] - parts["wpe"] if exclude_embeddings else total


# ---- FLOPs --------------------------------------------------------------------------------


def flops_per_token(config, seq_len: int | None = None, *, training: bool = True) -> int:
    """FLOPs to process one token, PaLM-style: ``6N + 12·L·T·d`` for training.

    ``N`` counts the weights that multiply activations: everything but the position table (and,
    with an untied head, the input token table, which is only a lookup); for a mixture of
    experts, only the experts a token is routed to. A matmul with ``N``
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
    parts = param_breakdown(config)
    # weights a token passes through: the token table only as the (tied) output head, and
    # only the experts it is routed to
    n = count_params(config) - parts["wpe"] - parts["mlp"] + parts["mlp_active"]
    if parts["lm_head"]:
        n -= parts["wte"]  # untied: the input table is a lookup, the head is the matmul
    n_head = config.n_head
    q_dim = n_head * (getattr(config, "head_dim", None) or config.n_embd // n_head)
    attention = 2 * config.n_layer * T * q_dim  # per forward matmul (QKᵀ or A·V) per token
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
    cpu: float = 0.0  # bytes moved to the host's memory by offloading (not counted in ``total``)

    @property
    def total(self) -> float:
        """GPU bytes: weights + gradients + optimizer states + activations."""
        return self.weights + self.gradients + self.optimizer + self.activations

    def gib(self) -> dict[str, float]:
        """Each component (and the total) in GiB (2**30 bytes)."""
        names = ("weights", "gradients", "optimizer", "activations", "total")
        return {k: getattr(self, k) / 2**30 for k in names}


def activation_bytes(config, batch_size: int, seq_len: int | None = None, *,
                     bytes_per_value: int = 2, recompute: bool = False,
                     tensor_parallel: int = 1, sequence_parallel: bool = False,
                     fused_attention: bool = False) -> float:
    """Activation memory kept for the backward pass, per Korthikanti et al. (2022).

    Each transformer layer stores about ``s·b·h·(34 + 5·a·s/h)`` bytes with 16-bit activations
    (``s`` sequence length, ``b`` batch, ``h`` width, ``a`` heads; the ``5·a·s/h`` term is the
    attention score matrices, which fused attention kernels such as FlashAttention do not store).
    With full activation recomputation only each layer's input (``2·s·b·h`` bytes) is kept.
    The output logits (``s·b·V`` fp32 values for the loss) are added on top.

    Tensor parallelism over ``t`` GPUs splits the attention and MLP activations but not those of
    the LayerNorms and dropouts between them: ``s·b·h·(10 + 24/t + 5·a·s/(h·t))``. Sequence
    parallelism splits those remaining ``10·s·b·h`` along the sequence too, so everything is
    divided by ``t``: ``s·b·h·(34 + 5·a·s/h)/t`` (Korthikanti et al. 2022, arXiv:2205.05198).
    The logits are split over ``t`` as well (Megatron's vocabulary-parallel output layer).

    ``fused_attention=True`` drops the ``5·a·s/h`` term: a fused kernel (FlashAttention, PyTorch's
    ``scaled_dot_product_attention``) recomputes the score matrices in the backward pass instead
    of storing them, so the per-layer count becomes ``s·b·h·34``.
    """
    _check_config(config)
    s = config.block_size if seq_len is None else seq_len
    _positive("batch_size", batch_size)
    _positive("seq_len", s)
    if isinstance(tensor_parallel, bool) or not isinstance(tensor_parallel, int) or tensor_parallel < 1:
        raise ValueError(f"tensor_parallel must be a positive integer (1 = no split), got {tensor_parallel!r}")
    if sequence_parallel and tensor_parallel == 1:
        raise ValueError("sequence_parallel=True splits over the tensor-parallel GPUs: "
                         "set tensor_parallel > 1 as well")
    if not isinstance(fused_attention, bool):
        raise TypeError(f"fused_attention must be True or False, got {fused_attention!r}")
    h, a, L, t = config.n_embd, getattr(config, "n_head", 1), config.n_layer, tensor_parallel
    a = 0 if fused_attention else a  # no stored score matrices: the 5·a·s/h term vanishes
    scale = bytes_per_value / 2
    sbh = s * batch_size * h
    if recompute:
        per_layer = 2 * sbh / (t if sequence_parallel else 1)
    elif sequence_parallel:
        per_layer = sbh * (34 + 5 * a * s / h) / t
    else:
        per_layer = sbh * (10 + 24 / t + 5 * a * s / (h * t))
    return L * per_layer * scale + 4.0 * s * batch_size * config.vocab_size / t


def training_memory(n_params: float, *, precision: str = "mixed", optimizer: str = "adam",
                    zero_stage: int = 0, n_gpus: int = 1, activations: float = 0.0,
                    tensor_parallel: int = 1, pipeline_parallel: int = 1,
                    offload_optimizer: bool = False) -> MemoryEstimate:
    """Training memory per GPU: weights, gradients, optimizer states (+ given activations).

    ZeRO (Rajbhandari et al. 2020, arXiv:1910.02054) removes the redundancy of plain data
    parallelism, where every one of ``n_gpus`` holds all of it: stage 1 partitions the optimizer
    states across the GPUs, stage 2 also the gradients, stage 3 also the weights themselves
    (PyTorch's FSDP is stage 3).

    Model parallelism splits the model before ZeRO shards what is left: tensor parallelism
    (Megatron-LM, Shoeybi et al. 2019, arXiv:1909.08053) splits every weight matrix, and so its
    gradients and optimizer states, over ``tensor_parallel`` GPUs; pipeline parallelism (GPipe,
    Huang et al. 2019, arXiv:1811.06965) gives each of ``pipeline_parallel`` stages a contiguous
    slice of the layers. Both are counted as an even split of the parameters (the small
    replicated pieces, such as LayerNorm gains, are ignored). The run then uses
    ``n_gpus * tensor_parallel * pipeline_parallel`` GPUs in all.

    ``offload_optimizer=True`` is ZeRO-Offload (Ren et al. 2021, arXiv:2101.06840): the 16-bit
    weights stay on the GPU for the forward and backward passes, while the gradients and the
    optimizer states move to CPU memory, where the CPU runs the optimizer step. Their bytes are
    reported in ``cpu`` and leave the GPU ``total``.

    Args:
        n_params: parameter count.
        precision: ``"fp32"`` (4 + 4 + 8 = 16 bytes per parameter with Adam) or ``"mixed"``
            (fp16/bf16 weights and grads + fp32 master weights and Adam moments: 2 + 2 + 12 = 16).
        optimizer: ``"adam"`` (also AdamW: two moments) or ``"sgd"`` (one momentum buffer).
        zero_stage: 0 (plain data parallel), 1, 2 or 3.
        n_gpus: data-parallel degree the states are partitioned over.
        activations: activation bytes per GPU (see ``activation_bytes``); not partitioned.
        tensor_parallel: GPUs each weight matrix is split over (``t``).
        pipeline_parallel: pipeline stages the layers are split over (``p``).
        offload_optimizer: keep gradients and optimizer states in CPU memory (ZeRO-Offload).

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
    for name, value in (("tensor_parallel", tensor_parallel), ("pipeline_parallel", pipeline_parallel)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer (1 = no split), got {value!r}")
    if not isinstance(offload_optimizer, bool):
        raise TypeError(f"offload_optimizer must be True or False, got {offload_optimizer!r}")
    if activations < 0:
        raise ValueError(f"activations must be >= 0 bytes, got {activations!r}")
    local = n_params / (tensor_parallel * pipeline_parallel)  # this GPU's slice of the model
    w, g, o = (b * local for b in _BYTES[(precision, optimizer)])
    if zero_stage >= 1:
        o /= n_gpus
    if zero_stage >= 2:
        g /= n_gpus
    if zero_stage >= 3:
        w /= n_gpus
    cpu = 0.0
    if offload_optimizer:
        cpu, g, o = g + o, 0.0, 0.0
    return MemoryEstimate(weights=w, gradients=g, optimizer=o, activations=float(activations), cpu=cpu)
