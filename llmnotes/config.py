"""``GPTConfig``, the hyper-parameters of a GPT, and ``PRESETS``, the named ones.

One typed dataclass, validated in ``__post_init__`` (every error names the field, the value and
the fix), and ``GPTConfig.from_preset(name)`` for GPT-2's sizes and the small teaching models.
Each value has one name: the sizes that default to a function of others (``n_inner``,
``n_kv_head``, ``head_dim``) are fields that ``__post_init__`` fills in when left ``None``. It lives apart
from ``model.py`` so that the modules that only read or write a model's configuration (the
Hugging Face and GGUF converters, the calculators) need not import the model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

__all__ = ["GPTConfig", "PRESETS", "ConfigDict"]


class ConfigDict:
    """``to_dict``/``from_dict`` for a dataclass config: the JSON round trip of ``config.json``,
    ``train_summary.json`` and checkpoints. ``from_dict`` ignores keys the class does not know, so
    a file written by a newer version (or holding extra fields) still loads."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

_LLAMA = dict(norm="rmsnorm", mlp="swiglu", pos_emb="rope", bias=False, tie_embeddings=False,
              layer_norm_eps=1e-6)

PRESETS: dict[str, dict[str, Any]] = {
    # GPT-2 family (Radford et al. 2019); vocab 50257, context 1024.
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768),
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024),
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280),
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600),
    # Teaching presets: train in seconds to minutes on a laptop CPU.
    "tiny": dict(vocab_size=2048, block_size=256, n_layer=4, n_head=4, n_embd=192),
    "nano": dict(vocab_size=512, block_size=64, n_layer=2, n_head=2, n_embd=32),
    # Llama/Qwen-style teaching models: RoPE, RMSNorm, SwiGLU, grouped-query attention, no biases.
    "llama-tiny": dict(vocab_size=2048, block_size=256, n_layer=4, n_head=4, n_kv_head=2, n_embd=192,
                       n_inner=512, **_LLAMA),
    "qwen-tiny": dict(vocab_size=2048, block_size=256, n_layer=4, n_head=4, n_kv_head=2, n_embd=192,
                      n_inner=512, **{**_LLAMA, "qk_norm": True, "tie_embeddings": True, "rope_theta": 1e6}),
    "moe-tiny": dict(vocab_size=2048, block_size=256, n_layer=4, n_head=4, n_kv_head=2, n_embd=192,
                     n_inner=256, n_expert=4, n_expert_per_token=2, **{**_LLAMA, "mlp": "moe"}),
    "llama-nano": dict(vocab_size=512, block_size=64, n_layer=2, n_head=4, n_kv_head=2, n_embd=32,
                       n_inner=64, **_LLAMA),
    # Published shapes, for the calculators and the comparison tables (weights not shipped).
    "llama-3.2-1b": dict(vocab_size=128256, block_size=131072, n_layer=16, n_head=32, n_kv_head=8,
                         n_embd=2048, n_inner=8192, **{**_LLAMA, "rope_theta": 500000.0, "tie_embeddings": True}),
    "qwen3-0.6b": dict(vocab_size=151936, block_size=40960, n_layer=28, n_head=16, n_kv_head=8,
                       n_embd=1024, head_dim=128, n_inner=3072,
                       **{**_LLAMA, "qk_norm": True, "tie_embeddings": True, "rope_theta": 1e6}),
}


@dataclass
class GPTConfig(ConfigDict):
    """Hyper-parameters of a GPT. Defaults are GPT-2 small's.

    Attributes:
        vocab_size: number of token ids the model reads and predicts.
        block_size: longest sequence (context length) the position table covers.
        n_layer: transformer blocks.
        n_head: attention heads per block; must divide ``n_embd``.
        n_embd: width of the residual stream (embedding size).
        dropout: dropout probability on embeddings, attention weights and residual branches.
        bias: biases in linear layers and LayerNorms (GPT-2: True).
        layer_norm_eps: LayerNorm epsilon (GPT-2: 1e-5).
        n_inner: MLP hidden width (per expert for ``mlp="moe"``); ``None`` means ``4 * n_embd``.
            Hugging Face calls it ``n_inner`` (GPT-2) or ``intermediate_size`` (Llama).
        attn_impl: ``"sdpa"`` (fused kernel) or ``"manual"`` (explicit softmax(QKᵀ/√d)V).
        tie_embeddings: share the LM head's weight with the token embedding (GPT-2: True).

    Llama/Qwen-style options (see ``layers.py`` and the "From GPT-2 to Llama" page):
        norm: ``"layernorm"`` (GPT-2) or ``"rmsnorm"``.
        mlp: ``"gelu"`` (GPT-2), ``"swiglu"`` or ``"moe"`` (mixture of SwiGLU experts).
        pos_emb: ``"learned"`` (GPT-2 position table) or ``"rope"`` (rotary).
        rope_theta, rope_scaling: RoPE base and optional context scaling (``layers.rope_frequencies``).
        n_kv_head: key/value heads for grouped-query attention; ``None`` means ``n_head``
            (multi-head), 1 is multi-query. Hugging Face: ``num_key_value_heads``.
        head_dim: per-head width; ``None`` means ``n_embd // n_head``. Set it where it differs
            (Qwen3). Hugging Face: ``head_dim``.

    ``n_inner``, ``n_kv_head`` and ``head_dim`` are never ``None`` after construction: a default
    is filled in. ``replace`` recomputes a filled-in default when what it derives from changes.
        qkv_bias: biases on the q/k/v projection (Qwen2: True); ``None`` follows ``bias``.
        qk_norm: RMSNorm on each head's queries and keys before RoPE (Qwen3).
        sliding_window: each position attends to at most this many most recent positions.
        n_expert, n_expert_per_token, moe_aux_loss_coef: mixture-of-experts routing.
    """

    vocab_size: int = 50257
    block_size: int = 1024
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True
    layer_norm_eps: float = 1e-5
    n_inner: int | None = None
    attn_impl: str = "sdpa"
    tie_embeddings: bool = True
    norm: str = "layernorm"
    mlp: str = "gelu"
    pos_emb: str = "learned"
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    n_kv_head: int | None = None
    head_dim: int | None = None
    qkv_bias: bool | None = None
    qk_norm: bool = False
    sliding_window: int | None = None
    n_expert: int = 0
    n_expert_per_token: int = 2
    moe_aux_loss_coef: float = 0.01
    extra: dict[str, Any] = field(default_factory=dict, repr=False)  # free-form metadata

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("bias", "tie_embeddings", "qk_norm"):  # "no" or 0 must not pass as a flag
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.qkv_bias is not None and not isinstance(self.qkv_bias, bool):
            raise ValueError(f"qkv_bias must be True, False or None, got {self.qkv_bias!r}")
        eps = self.layer_norm_eps
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
            raise ValueError(f"layer_norm_eps must be a small positive number such as 1e-5, got {eps!r}")
        if self.head_dim is None and self.n_embd % self.n_head != 0:
            raise ValueError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}); "
                f"try n_embd={self.n_head * max(1, round(self.n_embd / self.n_head))}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.attn_impl not in ("sdpa", "manual"):
            raise ValueError(f"attn_impl must be 'sdpa' or 'manual', got {self.attn_impl!r}")
        for name in ("n_inner", "n_kv_head", "head_dim"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        for name, default in self._defaults().items():  # fill in the derived sizes
            if getattr(self, name) is None:
                setattr(self, name, default)
        for name, allowed in (("norm", ("layernorm", "rmsnorm")), ("mlp", ("gelu", "swiglu", "moe")),
                              ("pos_emb", ("learned", "rope"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.n_head % self.n_kv_head != 0:
            raise ValueError(f"n_head ({self.n_head}) must be a multiple of n_kv_head ({self.n_kv_head}): "
                             "each key/value head serves an equal group of query heads")
        if self.pos_emb == "rope" and self.head_dim % 2:
            raise ValueError(f"RoPE rotates pairs of dimensions: head size must be even, got {self.head_dim}")
        if self.sliding_window is not None and self.sliding_window <= 0:
            raise ValueError(f"sliding_window must be a positive integer or None, got {self.sliding_window!r}")
        if self.mlp == "moe" and not 1 <= self.n_expert_per_token <= self.n_expert:
            raise ValueError(f"mlp='moe' needs 1 <= n_expert_per_token ({self.n_expert_per_token}) "
                             f"<= n_expert ({self.n_expert})")

    def _defaults(self) -> dict[str, int]:
        """What ``n_inner``, ``n_kv_head`` and ``head_dim`` are when not given."""
        return {"n_inner": 4 * self.n_embd, "n_kv_head": self.n_head, "head_dim": self.n_embd // self.n_head}

    # Files written before ``head_size`` was renamed ``head_dim`` still load.
    _RENAMED = {"head_size": "head_dim"}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GPTConfig":
        return super().from_dict({cls._RENAMED.get(k, k): v for k, v in d.items()})

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "GPTConfig":
        """A named configuration (``"gpt2"``, ``"gpt2-medium"``, ``"tiny"``, ``"nano"``, ...).

        Keyword arguments override preset fields, e.g. ``from_preset("nano", vocab_size=300)``.
        """
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown GPTConfig field(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**{**PRESETS[name], **overrides})

    def replace(self, **changes: Any) -> "GPTConfig":
        """A copy with ``changes``. A derived size still at its default follows what it derives
        from: ``from_preset("gpt2").replace(n_embd=1024).n_inner`` is 4096, not 3072."""
        divisible = self.n_embd % self.n_head == 0
        for name, default in self._defaults().items():
            if name not in changes and getattr(self, name) == default and (divisible or name != "head_dim"):
                changes[name] = None
        return replace(self, **changes)
