"""Read and write Hugging Face Llama, Mistral, Qwen2, Qwen3 and Mixtral directories.

These checkpoints keep q, k and v (and the MLP's gate and up) as separate matrices; llmnotes fuses
each group into one ``nn.Linear`` (``c_attn``, ``c_fc``) so that one matmul computes them. Loading
concatenates along the output dimension, saving splits. Hugging Face's q/k layout is already the
"rotate half" RoPE convention that ``llmnotes.layers`` uses, so no permutation is needed (Meta's
original Llama files differ; Hugging Face's conversion script permutes them once).
"""

from __future__ import annotations

import torch

from llmnotes.config import GPTConfig

ARCHITECTURES = {  # model_type -> class name in transformers
    "llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM", "mixtral": "MixtralForCausalLM",
}


def _rope(hf: dict) -> tuple[float, dict | None]:
    """RoPE base and scaling from either transformers 4.x (rope_theta, rope_scaling) or 5.x
    (rope_parameters) config layouts."""
    params = dict(hf.get("rope_parameters") or {})
    theta = float(hf.get("rope_theta", params.pop("rope_theta", 10000.0)))
    params.pop("rope_theta", None)
    scaling = hf.get("rope_scaling") or params or None
    if scaling and scaling.get("rope_type", scaling.get("type", "default")) == "default":
        scaling = None
    return theta, scaling


def config_from_hf(hf: dict) -> GPTConfig:
    """Translate a Llama-family ``config.json`` dict to a ``GPTConfig``."""
    from llmnotes.load_checks import field as f

    kind = hf["model_type"]
    if hf.get("hidden_act", "silu") != "silu":
        raise ValueError(f"hidden_act {hf['hidden_act']!r} is not supported; llmnotes' SwiGLU uses silu")
    if hf.get("mlp_bias"):
        raise ValueError("mlp_bias=True is not supported")
    n_head, d = f(hf, "num_attention_heads", int), f(hf, "hidden_size", int)
    head_dim = f(hf, "head_dim", int, None, optional=True) or d // max(n_head, 1)
    theta, scaling = _rope(hf)
    window = hf.get("sliding_window")
    if kind in ("qwen2", "qwen3"):
        layer_types = set(hf.get("layer_types") or [])
        if hf.get("use_sliding_window") and layer_types != {"sliding_attention"}:
            raise ValueError("Qwen checkpoints that mix sliding and full attention layers are not supported")
        window = window if hf.get("use_sliding_window") else None
    cfg = dict(
        vocab_size=f(hf, "vocab_size", int), block_size=f(hf, "max_position_embeddings", int, 2048),
        n_layer=f(hf, "num_hidden_layers", int), n_head=n_head,
        n_kv_head=f(hf, "num_key_value_heads", int, None, optional=True) or n_head, n_embd=d,
        head_dim=head_dim,
        n_inner=f(hf, "intermediate_size", int), layer_norm_eps=f(hf, "rms_norm_eps", float, 1e-6),
        norm="rmsnorm", mlp="swiglu", pos_emb="rope", bias=False, rope_theta=theta, rope_scaling=scaling,
        tie_embeddings=f(hf, "tie_word_embeddings", bool, False), sliding_window=window,
        qkv_bias=True if kind == "qwen2" else bool(hf.get("attention_bias", False)),
        qk_norm=kind == "qwen3", dropout=0.0,
    )
    if kind == "mixtral":
        cfg.update(mlp="moe", n_expert=f(hf, "num_local_experts", int),
                   n_expert_per_token=f(hf, "num_experts_per_tok", int),
                   moe_aux_loss_coef=hf.get("router_aux_loss_coef", 0.01))
    extra = {k: hf[k] for k in ("bos_token_id", "eos_token_id") if hf.get(k) is not None}
    return GPTConfig(**cfg, extra=extra)


def model_type_for(config: GPTConfig) -> str:
    """The Hugging Face family whose code computes exactly what this config describes."""
    if config.mlp == "moe":
        return "mixtral"
    if config.qk_norm:
        return "qwen3"
    if config.qkv_bias:
        return "qwen2"
    return "mistral" if config.sliding_window else "llama"


def config_to_hf(config: GPTConfig) -> dict:
    kind = model_type_for(config)
    if config.norm != "rmsnorm" or config.pos_emb != "rope" or config.mlp == "gelu" or config.bias:
        raise ValueError("only RMSNorm + RoPE + SwiGLU/MoE models without MLP/output biases map to a "
                         "Llama-family checkpoint")
    hf = {
        "architectures": [ARCHITECTURES[kind]], "model_type": kind, "vocab_size": config.vocab_size,
        "max_position_embeddings": config.block_size, "num_hidden_layers": config.n_layer,
        "num_attention_heads": config.n_head, "num_key_value_heads": config.n_kv_head,
        "hidden_size": config.n_embd, "head_dim": config.head_dim, "intermediate_size": config.n_inner,
        "hidden_act": "silu", "rms_norm_eps": config.layer_norm_eps, "rope_theta": config.rope_theta,
        "rope_scaling": config.rope_scaling, "tie_word_embeddings": config.tie_embeddings,
        "attention_bias": bool(config.qkv_bias) if kind == "llama" else False, "attention_dropout": 0.0,
        "sliding_window": config.sliding_window, "use_sliding_window": config.sliding_window is not None,
        "torch_dtype": "float32", "use_cache": True,
        "bos_token_id": config.extra.get("bos_token_id"), "eos_token_id": config.extra.get("eos_token_id"),
    }
    if kind in ("qwen2", "qwen3"):
        layer = "sliding_attention" if config.sliding_window else "full_attention"
        hf["layer_types"] = [layer] * config.n_layer
        hf["max_window_layers"] = config.n_layer
    if kind == "mixtral":
        hf.update(num_local_experts=config.n_expert, num_experts_per_tok=config.n_expert_per_token,
                  router_aux_loss_coef=config.moe_aux_loss_coef, output_router_logits=False)
    return hf


# ---- tensor names ---------------------------------------------------------------------------

_FUSED_ATTN = ("q_proj", "k_proj", "v_proj")
_FUSED_MLP = ("gate_proj", "up_proj")
_PLAIN = {  # ours (inside transformer.h.N.) -> theirs (inside model.layers.N.)
    "ln_1.weight": "input_layernorm.weight", "ln_2.weight": "post_attention_layernorm.weight",
    "attn.c_proj.weight": "self_attn.o_proj.weight", "attn.q_norm.weight": "self_attn.q_norm.weight",
    "attn.k_norm.weight": "self_attn.k_norm.weight", "mlp.c_proj.weight": "mlp.down_proj.weight",
    "mlp.router.weight": "block_sparse_moe.gate.weight",
}


def _renamed(config: GPTConfig) -> list[tuple[str, str]]:
    """(ours, theirs) for every tensor that is only renamed, not fused or split: the embedding,
    the final norm, an untied output layer and ``_PLAIN`` in every layer."""
    pairs = [("transformer.wte.weight", "model.embed_tokens.weight"), ("transformer.ln_f.weight", "model.norm.weight")]
    if not config.tie_embeddings:
        pairs.append(("lm_head.weight", "lm_head.weight"))
    for i in range(config.n_layer):
        pairs += [(f"transformer.h.{i}.{o}", f"model.layers.{i}.{t}") for o, t in _PLAIN.items()]
    return pairs


def state_from_hf(raw: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """Rename and fuse a Llama-family state dict into llmnotes' names."""
    state = {ours: raw[theirs] for ours, theirs in _renamed(config) if theirs in raw}
    for i in range(config.n_layer):
        ours, theirs = f"transformer.h.{i}.", f"model.layers.{i}."
        for kind in ("weight", "bias"):
            parts = [raw.get(f"{theirs}self_attn.{n}.{kind}") for n in _FUSED_ATTN]
            if all(p is not None for p in parts):
                state[f"{ours}attn.c_attn.{kind}"] = torch.cat(parts, 0)
        if config.mlp == "moe":
            for e in range(config.n_expert):
                ex = f"{theirs}block_sparse_moe.experts.{e}."
                if ex + "w1.weight" in raw:  # w1 = gate, w3 = up, w2 = down (Mixtral's names)
                    state[f"{ours}mlp.experts.{e}.c_fc.weight"] = torch.cat([raw[ex + "w1.weight"], raw[ex + "w3.weight"]], 0)
                    state[f"{ours}mlp.experts.{e}.c_proj.weight"] = raw[ex + "w2.weight"]
        else:
            parts = [raw.get(f"{theirs}mlp.{n}.weight") for n in _FUSED_MLP]
            if all(p is not None for p in parts):
                state[f"{ours}mlp.c_fc.weight"] = torch.cat(parts, 0)
    return state


def state_to_hf(state: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """Split and rename llmnotes' state dict into Llama-family names (the inverse of state_from_hf)."""
    hs, q_dim = config.head_dim, config.n_head * config.head_dim
    kv_dim = config.n_kv_head * hs
    out = {theirs: state[ours] for ours, theirs in _renamed(config) if ours in state}
    for i in range(config.n_layer):
        ours, theirs = f"transformer.h.{i}.", f"model.layers.{i}."
        for kind in ("weight", "bias"):
            if f"{ours}attn.c_attn.{kind}" in state:
                q, k, v = state[f"{ours}attn.c_attn.{kind}"].split((q_dim, kv_dim, kv_dim), 0)
                for name, t in zip(_FUSED_ATTN, (q, k, v)):
                    out[f"{theirs}self_attn.{name}.{kind}"] = t
        if config.mlp == "moe":
            for e in range(config.n_expert):
                gate, up = state[f"{ours}mlp.experts.{e}.c_fc.weight"].split(config.n_inner, 0)
                ex = f"{theirs}block_sparse_moe.experts.{e}."
                out[ex + "w1.weight"], out[ex + "w3.weight"] = gate, up
                out[ex + "w2.weight"] = state[f"{ours}mlp.experts.{e}.c_proj.weight"]
        else:
            gate, up = state[f"{ours}mlp.c_fc.weight"].split(config.n_inner, 0)
            out[f"{theirs}mlp.gate_proj.weight"], out[f"{theirs}mlp.up_proj.weight"] = gate, up
    return out
