"""GGUF export of Llama-style models (RoPE, RMSNorm, SwiGLU, grouped-query attention) as
llama.cpp's ``llama`` architecture.

Two details differ from the ``gpt2`` layout in ``gguf.py``:

* llama.cpp wants q, k, v and the MLP's gate and up as separate tensors (``attn_q``, ``attn_k``,
  ``attn_v``, ``ffn_gate``, ``ffn_up``); llmnotes fuses them, so they are split here.
* llama.cpp's ``llama`` architecture rotates *adjacent* pairs of dimensions (the layout of
  Meta's original checkpoints), while Hugging Face and llmnotes rotate dimension i with i + d/2.
  The rows of ``attn_q`` and ``attn_k`` are therefore permuted within each head, exactly as
  llama.cpp's own ``convert_hf_to_gguf.py`` does for Hugging Face Llama checkpoints, so that both
  conventions compute the same attention scores.
"""

from __future__ import annotations

import torch

from llmnotes.config import GPTConfig


def check_exportable(config: GPTConfig) -> None:
    """Raise ``ValueError`` unless llama.cpp's ``llama`` architecture computes this model."""
    problems = []
    if config.norm != "rmsnorm" or config.pos_emb != "rope" or config.mlp != "swiglu":
        problems.append("needs norm='rmsnorm', pos_emb='rope', mlp='swiglu'")
    if config.bias or config.qkv_bias:
        problems.append("llama has no biases (Qwen2-style qkv biases are not exported)")
    if config.qk_norm:
        problems.append("QK-norm (Qwen3) is not part of the llama architecture")
    if config.sliding_window is not None:
        problems.append("sliding-window attention is not part of the llama architecture")
    if config.rope_scaling and config.rope_scaling.get("rope_type", config.rope_scaling.get("type")) != "linear":
        problems.append("only linear RoPE scaling is exported")
    if problems:
        raise ValueError("cannot export this model as llama.cpp's 'llama' architecture: " + "; ".join(problems))


def to_interleaved_rope(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Reorder the rows of a q or k projection (n_head * hs, C) from rotate-half pairs (i, i + hs/2)
    to adjacent pairs (2i, 2i + 1), head by head."""
    rows = w.shape[0]
    hs = rows // n_head
    return w.reshape(n_head, 2, hs // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def from_interleaved_rope(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """The inverse of ``to_interleaved_rope``."""
    hs = w.shape[0] // n_head
    return w.reshape(n_head, hs // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def llama_tensors(weights: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """llmnotes state-dict tensors → llama.cpp ``llama`` tensor names (split, permuted)."""
    hs = config.head_dim
    q_dim, kv_dim = config.n_head * hs, config.n_kv_head * hs
    out = {"token_embd.weight": weights["transformer.wte.weight"],
           "output_norm.weight": weights["transformer.ln_f.weight"]}
    if not config.tie_embeddings:
        out["output.weight"] = weights["lm_head.weight"]
    for i in range(config.n_layer):
        p = f"transformer.h.{i}."
        q, k, v = weights[p + "attn.c_attn.weight"].split((q_dim, kv_dim, kv_dim), 0)
        gate, up = weights[p + "mlp.c_fc.weight"].split(config.n_inner, 0)
        out.update({
            f"blk.{i}.attn_norm.weight": weights[p + "ln_1.weight"],
            f"blk.{i}.attn_q.weight": to_interleaved_rope(q, config.n_head),
            f"blk.{i}.attn_k.weight": to_interleaved_rope(k, config.n_kv_head),
            f"blk.{i}.attn_v.weight": v,
            f"blk.{i}.attn_output.weight": weights[p + "attn.c_proj.weight"],
            f"blk.{i}.ffn_norm.weight": weights[p + "ln_2.weight"],
            f"blk.{i}.ffn_gate.weight": gate,
            f"blk.{i}.ffn_up.weight": up,
            f"blk.{i}.ffn_down.weight": weights[p + "mlp.c_proj.weight"],
        })
    return out


def llama_metadata(config: GPTConfig, uint32: int, float32: int, string: int) -> list[tuple[str, int, object]]:
    """The ``llama.*`` keys beyond the shapes every architecture has (``gguf.shape_metadata``);
    the value-type codes come from ``gguf.py``."""
    meta = [
        ("llama.attention.head_count_kv", uint32, config.n_kv_head),
        ("llama.attention.layer_norm_rms_epsilon", float32, config.layer_norm_eps),
        ("llama.rope.dimension_count", uint32, config.head_dim),
        ("llama.rope.freq_base", float32, config.rope_theta),
        ("llama.vocab_size", uint32, config.vocab_size),
    ]
    if config.head_dim * config.n_head != config.n_embd:  # llama.cpp's default is n_embd / n_head
        meta += [("llama.attention.key_length", uint32, config.head_dim),
                 ("llama.attention.value_length", uint32, config.head_dim)]
    if config.rope_scaling:
        meta += [("llama.rope.scaling.type", string, "linear"),
                 ("llama.rope.scaling.factor", float32, float(config.rope_scaling["factor"]))]
    return meta
