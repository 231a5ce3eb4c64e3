"""A GPT, small enough to read top to bottom: LayerNorm → attention → MLP → Block → GPT.

The architecture is GPT-2's (Radford et al., 2019): learned token and position embeddings,
pre-LayerNorm transformer blocks with causal multi-head self-attention and a GELU MLP, a final
LayerNorm and a language-model head tied to the token embedding. Module names mirror the
Hugging Face GPT-2 checkpoint keys (``transformer.h.0.attn.c_attn``...), so loading real GPT-2
weights is a matter of renaming nothing and transposing four matrices (see ``hf.py``).

Attention has two paths, chosen by ``GPTConfig.attn_impl``: ``"manual"`` writes out
softmax(QKᵀ/√d + mask)·V for teaching and returns the attention weights; ``"sdpa"`` calls
PyTorch's fused ``scaled_dot_product_attention``. Tests check they agree.

Decoding uses a pre-allocated key/value cache (``KVCache``): feeding one token at a time with the
cache gives the same logits as a full forward pass, without recomputing the past.

Over 400 lines because it is nanoGPT's one-file model grown by the Llama-family options (RoPE,
grouped-query attention, SwiGLU, MoE): cache, attention, MLP, block and model stay in reading
order; the configuration is in ``config.py`` and the layers it shares in ``layers.py``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from llmnotes import fused
from llmnotes.config import PRESETS, GPTConfig
from llmnotes.layers import MoE, RMSNorm, SwiGLU, apply_rope, rope_cos_sin, rope_frequencies

# GPTConfig and PRESETS live in config.py; they stay importable from here, where pages import them.
__all__ = ["GPT", "GPTConfig", "PRESETS", "KVCache", "CausalSelfAttention", "MLP", "Block",
           "attention_mask_bias", "expected_param_count", "lm_loss", "make_norm", "make_mlp"]

# --------------------------------------------------------------------------------------------
# The key/value cache
# --------------------------------------------------------------------------------------------


class KVCache:
    """Pre-allocated keys and values of every layer, for incremental decoding.

    Each layer owns two buffers of shape (B, n_head, max_len, head_dim). A forward pass over T
    new positions writes them at ``[seq_len, seq_len + T)``; the model then advances ``seq_len``.
    Because the buffers never grow, decode steps allocate nothing.

    Args:
        fixed_shape: attend over the whole buffer (masking unused slots) instead of the filled
            prefix, and keep the fill level as a device tensor (``position``) rather than a
            Python int, so every decode step has identical shapes and no Python number changes:
            what ``torch.compile`` (and CUDA graphs) need to compile the step once. Eager
            decoding is faster without it.
    """

    def __init__(self, n_layer: int, batch_size: int, n_head: int, max_len: int, head_dim: int,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
                 fixed_shape: bool = False) -> None:
        shape = (batch_size, n_head, max_len, head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.max_len = max_len
        self.fixed_shape = fixed_shape
        self.position = torch.zeros((), dtype=torch.long, device=device) if fixed_shape else None
        self._seq_len = 0

    @property
    def seq_len(self) -> int:
        """Positions filled so far (read from ``position`` for a fixed-shape cache)."""
        return int(self.position) if self.fixed_shape else self._seq_len

    @seq_len.setter
    def seq_len(self, n: int) -> None:
        if self.fixed_shape:
            self.position.fill_(n)
        else:
            self._seq_len = n

    @property
    def batch_size(self) -> int:
        return self.k[0].shape[0]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k, v`` (B, nh, T, hs) for ``layer``; return all keys/values to attend to."""
        if self.fixed_shape:  # write at tensor positions: no Python int for a compiler to specialise on
            slots = self.position + torch.arange(k.shape[2], device=k.device)
            self.k[layer].index_copy_(2, slots, k)
            self.v[layer].index_copy_(2, slots, v)
            return self.k[layer], self.v[layer]
        start, end = self._seq_len, self._seq_len + k.shape[2]
        self.k[layer][:, :, start:end] = k
        self.v[layer][:, :, start:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def crop(self, n: int) -> None:
        """Forget every position from ``n`` on (e.g. draft tokens a verifier rejected)."""
        if not 0 <= n <= self.seq_len:
            raise ValueError(f"crop length must be in [0, {self.seq_len}], got {n}")
        self.seq_len = n

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows ``index`` (LongTensor (B,)), e.g. the surviving beams of a beam search."""
        for layer in range(len(self.k)):
            self.k[layer] = self.k[layer].index_select(0, index)
            self.v[layer] = self.v[layer].index_select(0, index)


# --------------------------------------------------------------------------------------------
# The pieces: attention, MLP, block
# --------------------------------------------------------------------------------------------


NO_MASK = torch.empty(0)  # sentinel: "attend to every key" (a lone new token and its whole past)


def attention_mask_bias(q_pos: torch.Tensor, k_len: int, key_padding: torch.Tensor | None,
                        dtype: torch.dtype, window: int | None = None) -> torch.Tensor:
    """Additive attention bias: 0 where a query may look, -inf where it may not.

    Args:
        q_pos: (T,) absolute positions of the queries in the cache/sequence.
        k_len: number of keys.
        key_padding: optional (B, k_len) bool, True for real tokens, False for padding.
        window: sliding-window size: a query sees only keys less than ``window`` positions back.

    Returns:
        (1 or B, 1, T, k_len) bias to add to the attention scores.
    """
    k_pos = torch.arange(k_len, device=q_pos.device)
    allowed = k_pos[None, :] <= q_pos[:, None]  # (T, k_len): causal
    if window is not None:
        allowed = allowed & (q_pos[:, None] - k_pos[None, :] < window)
    allowed = allowed[None, None]  # (1, 1, T, k_len)
    if key_padding is not None:
        allowed = allowed & key_padding[:, None, None, :]
        # A padding query that can see nothing would softmax to NaN; let it see itself. Its
        # output is never used by a real token (real tokens never attend to padding).
        allowed = allowed | (k_pos[None, :] == q_pos[:, None])[None, None]
    bias = torch.zeros(allowed.shape, dtype=dtype, device=q_pos.device)
    return bias.masked_fill(~allowed, float("-inf"))


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where each position sees only itself and the past.

    With ``n_kv_head < n_head`` (grouped-query attention, Ainslie et al., 2023, arXiv:2305.13245)
    groups of query heads share one key/value head, shrinking the KV cache by n_head/n_kv_head.
    """

    def __init__(self, config: GPTConfig, layer_idx: int = 0) -> None:
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.n_kv_head, config.head_dim
        self.layer_idx = layer_idx
        self.impl = config.attn_impl
        qkv_bias = config.bias if config.qkv_bias is None else config.qkv_bias
        q_dim, kv_dim = self.n_head * self.head_dim, self.n_kv_head * self.head_dim
        self.splits = (q_dim, kv_dim, kv_dim)
        self.c_attn = nn.Linear(config.n_embd, q_dim + 2 * kv_dim, bias=qkv_bias)  # q|k|v
        self.c_proj = nn.Linear(q_dim, config.n_embd, bias=config.bias)
        if config.qk_norm:  # Qwen3: normalise each head's queries and keys (stabilises logits)
            self.q_norm = RMSNorm(self.head_dim, config.layer_norm_eps)
            self.k_norm = RMSNorm(self.head_dim, config.layer_norm_eps)
        self.qk_norm = config.qk_norm
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None, cache: KVCache | None = None,
                need_weights: bool = False, rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, T, C) → (y (B, T, C), attention weights (B, nh, T, S) or None).

        ``bias`` is the additive mask from ``attention_mask_bias``; ``None`` means plain causal
        attention over exactly these T positions (training), which lets SDPA use its fastest
        path; ``NO_MASK`` means every key is visible (one new token attending to its past).
        ``rope`` is the (cos, sin) pair of rotary embeddings for these positions, if used.
        """
        B, T, _ = x.shape
        q, k, v = self.c_attn(x).split(self.splits, dim=2)
        # (B, T, nh*hs) -> (B, nh, T, hs): each head attends in its own subspace
        q = q.view(B, T, self.n_head, self.head_dim)
        k = k.view(B, T, self.n_kv_head, self.head_dim)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        v = v.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)  # (B, n_kv, S, hs) with S = past + T
        grouped = self.n_kv_head != self.n_head  # each key/value head serves n_head / n_kv_head queries
        manual = self.impl == "manual" or need_weights
        if grouped and manual:  # SDPA groups the heads itself (enable_gqa) without copying k and v
            k = k.repeat_interleave(self.n_head // self.n_kv_head, dim=1)
            v = v.repeat_interleave(self.n_head // self.n_kv_head, dim=1)
        gqa = {"enable_gqa": True} if grouped and not manual else {}

        p = self.dropout if self.training else 0.0
        weights = None
        if manual:
            att = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)  # (B, nh, T, S)
            if bias is None:
                causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
                att = att.masked_fill(~causal, float("-inf"))
            elif bias is not NO_MASK:
                att = att + bias
            att = F.softmax(att, dim=-1)
            weights = att
            y = self.attn_dropout(att) @ v  # (B, nh, T, hs)
        elif bias is None:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True, **gqa)
        elif bias is NO_MASK:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, **gqa)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), dropout_p=p, **gqa)
        y = y.transpose(1, 2).contiguous().view(B, T, self.n_head * self.head_dim)  # heads side by side
        return self.resid_dropout(self.c_proj(y)), weights


class MLP(nn.Module):
    """Position-wise feed-forward: expand 4x, GELU (tanh approximation, as GPT-2), project back."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, config.n_inner, bias=config.bias)
        self.c_proj = nn.Linear(config.n_inner, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


def make_norm(config: GPTConfig) -> nn.Module:
    """LayerNorm (GPT-2) or RMSNorm (Llama, Qwen), as the config says."""
    if config.norm == "rmsnorm":
        return RMSNorm(config.n_embd, config.layer_norm_eps)
    return nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)


def make_mlp(config: GPTConfig) -> nn.Module:
    """GELU MLP (GPT-2), SwiGLU (Llama, Qwen) or a mixture of SwiGLU experts (Mixtral)."""
    if config.mlp == "swiglu":
        return SwiGLU(config.n_embd, config.n_inner, config.bias)
    if config.mlp == "moe":
        return MoE(config.n_embd, config.n_inner, config.n_expert, config.n_expert_per_token, config.bias)
    return MLP(config)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: GPTConfig, layer_idx: int = 0) -> None:
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config, layer_idx)
        self.ln_2 = make_norm(config)
        self.mlp = make_mlp(config)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None, cache: KVCache | None = None,
                need_weights: bool = False, rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        a, weights = self.attn(self.ln_1(x), bias, cache, need_weights, rope)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, weights


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


class GPT(nn.Module):
    """GPT-2-style decoder-only language model.

    Example:
        >>> model = GPT(GPTConfig.from_preset("nano"))
        >>> model(torch.zeros(1, 8, dtype=torch.long)).shape
        torch.Size([1, 8, 512])
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config, i) for i in range(config.n_layer)]),
            ln_f=make_norm(config),
        ))
        if config.pos_emb == "learned":  # RoPE models encode positions inside attention instead
            self.transformer["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.transformer.wte.weight  # one matrix reads and writes tokens
        self.apply(self._init_weights)
        # GPT-2 scales residual projections by 1/sqrt(2 * n_layer): each block adds two of them
        # to the residual stream, and this keeps its variance from growing with depth.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    # ---- bookkeeping ---------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.transformer.wte.weight.device

    def num_params(self, exclude_embeddings: bool = False) -> int:
        """Parameter count, the tied LM head counted once (GPT-2 small: 124,439,808)."""
        n = sum(p.numel() for p in self.parameters())  # parameters() yields shared tensors once
        if exclude_embeddings:
            n -= self.transformer.wte.weight.numel()
            if "wpe" in self.transformer:
                n -= self.transformer.wpe.weight.numel()
        return n

    def aux_loss(self) -> torch.Tensor:
        """Mixture-of-experts load-balancing loss of the last forward pass, already scaled by
        ``config.moe_aux_loss_coef`` (zero for dense models): add it to the training loss."""
        losses = [b.mlp.aux_loss for b in self.transformer.h if isinstance(b.mlp, MoE)]
        if not losses:
            return torch.zeros((), device=self.device)
        return self.config.moe_aux_loss_coef * torch.stack(losses).mean()

    def make_cache(self, batch_size: int, max_len: int | None = None, *, fixed_shape: bool = False,
                   dtype: torch.dtype | None = None) -> KVCache:
        """An empty key/value cache for ``batch_size`` sequences of up to ``max_len`` positions."""
        max_len = self.config.block_size if max_len is None else max_len
        if not 0 < max_len <= self.config.block_size:
            raise ValueError(f"max_len must be in [1, block_size={self.config.block_size}], got {max_len}")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        c = self.config
        dtype = dtype or self.transformer.wte.weight.dtype
        return KVCache(c.n_layer, batch_size, c.n_kv_head, max_len, c.head_dim, self.device, dtype, fixed_shape)

    def prepare_for_decode(self, enable: bool = True) -> "GPT":
        """Make CPU decoding faster, in place: each linear layer gets the layout measured fastest
        for its shape on this machine -- plain, column-major, split across threads, a
        oneDNN-packed copy or llmnotes' own kernel -- and stays plain where nothing beats it;
        then the decode step runs as one C++ call where that measures faster
        (:func:`llmnotes.fast_linear.prepare_for_decode` explains the paths).

        Same parameters, values, shapes and state dict; outputs equal to float rounding.
        Call it once after loading a model you will generate with; ``enable=False`` undoes it.
        """
        from llmnotes.fast_linear import prepare_for_decode

        return prepare_for_decode(self, enable)

    # ---- forward -------------------------------------------------------------------------

    def _check_input(self, idx: torch.Tensor, past: int, max_len: int) -> None:
        if not isinstance(idx, torch.Tensor):
            raise TypeError(f"idx must be a LongTensor of shape (B, T), got {type(idx).__name__}")
        if idx.ndim != 2:
            raise ValueError(f"idx must have shape (B, T), got shape {tuple(idx.shape)}; "
                             "add a batch dimension with idx[None]")
        if idx.dtype not in (torch.long, torch.int32, torch.int64):
            raise TypeError(f"idx must hold integer token ids (torch.long), got {idx.dtype}")
        if past + idx.shape[1] > max_len:
            raise ValueError(f"sequence of {past + idx.shape[1]} positions ({past} cached + "
                             f"{idx.shape[1]} new) exceeds the limit of {max_len}; "
                             "truncate the input (keep its last tokens)")
        if not torch.compiler.is_compiling() and idx.numel() and (
                int(idx.min()) < 0 or int(idx.max()) >= self.config.vocab_size):
            raise ValueError(f"token ids must be in [0, {self.config.vocab_size}), got values in "
                             f"[{int(idx.min())}, {int(idx.max())}]; is this the model's tokenizer?")

    def hidden_states(self, idx: torch.Tensor, cache: KVCache | None = None,
                      attention_mask: torch.Tensor | None = None,
                      position_ids: torch.Tensor | None = None,
                      output_attentions: bool = False):
        """Final-LayerNorm hidden states (B, T, n_embd); with ``output_attentions`` also a
        list of per-layer attention weights (B, nh, T, S)."""
        if (cache is not None and not cache.fixed_shape and idx.shape == (1, 1) and not output_attentions
                and attention_mask is None and position_ids is None and not self.training
                and not torch.is_grad_enabled() and not torch.compiler.is_compiling() and fused.is_fused(self)):
            # the plain decode step of a model prepared with a fused step (llmnotes/fused.py)
            self._check_input(idx, cache.seq_len, cache.max_len)
            past = cache.seq_len
            x = self.transformer.wte(idx) + self.transformer.wpe(torch.tensor([[past]], device=idx.device))
            h = fused.step(self, x, cache)
            if h is not None:
                cache.seq_len = past + 1
                return h
        fixed = cache is not None and cache.fixed_shape
        past = None if fixed else (cache.seq_len if cache is not None else 0)
        # A compiled decode step skips the checks: reading the cache position back as a Python
        # number would break the graph, and the decode loop checked every length up front.
        if not (fixed and torch.compiler.is_compiling()):
            limit = cache.max_len if cache is not None else self.config.block_size
            self._check_input(idx, cache.seq_len if fixed else past, limit)
        B, T = idx.shape
        device = idx.device
        if fixed:  # the fill level as a tensor: no Python number here changes from step to step
            q_pos = cache.position + torch.arange(T, device=device)
        else:
            q_pos = torch.arange(past, past + T, device=device)

        if position_ids is None:
            if attention_mask is not None:
                # Left padding: a row's first real token sits at position 0, as Hugging Face does.
                pos_all = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
                position_ids = pos_all.index_select(1, q_pos) if fixed else pos_all[:, past:past + T]
            else:
                position_ids = q_pos[None]

        window = self.config.sliding_window
        bias = None
        if cache is not None and T == 1 and attention_mask is None and not fixed and (
                window is None or past < window):
            bias = NO_MASK  # the usual decode step: the new token may see everything cached
        elif cache is not None or attention_mask is not None or window is not None:
            k_len = cache.max_len if fixed else past + T
            padding = None
            if attention_mask is not None:
                padding = attention_mask.bool()
                if padding.shape[1] < k_len:  # fixed-shape cache: future slots count as padding
                    padding = F.pad(padding, (0, k_len - padding.shape[1]), value=False)
            bias = attention_mask_bias(q_pos, k_len, padding, self.transformer.wte.weight.dtype, window)

        x = self.transformer.wte(idx)  # (B, T, C)
        rope = None
        if self.config.pos_emb == "learned":
            x = x + self.transformer.wpe(position_ids)
        else:  # rotary: computed once here, applied to q and k in every layer
            c = self.config
            inv_freq = rope_frequencies(c.head_dim, c.rope_theta, c.rope_scaling, device)
            rope = rope_cos_sin(position_ids, inv_freq, x.dtype)  # (1 or B, 1, T, hs): broadcasts over B
        x = self.transformer.drop(x)
        attentions = []
        for block in self.transformer.h:
            x, w = block(x, bias, cache, output_attentions, rope)
            attentions.append(w)
        if fixed:
            cache.position += T
        elif cache is not None:
            cache.seq_len = past + T
        x = self.transformer.ln_f(x)
        return (x, attentions) if output_attentions else x

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None,
                attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None,
                output_attentions: bool = False, logits_to_keep: int = 0):
        """Next-token logits for every position.

        Args:
            idx: (B, T) token ids.
            cache: a ``KVCache`` from ``make_cache``; the new positions are appended to it.
            attention_mask: (B, past + T) of 1 (token) / 0 (padding), for left-padded batches.
            position_ids: (B, T) explicit positions; default from the cache/attention mask.
            output_attentions: also return per-layer attention weights (uses the manual path).
            logits_to_keep: if positive, logits for only the last this many positions (as in
                Hugging Face): a prompt's prefill needs only the last one, and the output layer
                over every prompt position is a large share of its cost.

        Returns:
            logits (B, T, vocab_size), or ``(logits, attentions)`` with ``output_attentions``.
        """
        out = self.hidden_states(idx, cache, attention_mask, position_ids, output_attentions)
        if output_attentions:
            h, attentions = out
            return self.lm_head(h), attentions
        return self.lm_head(out[:, -logits_to_keep:] if logits_to_keep > 0 else out)

    # ---- Hugging Face interop (implemented in hf.py) ---------------------------------------

    @classmethod
    def from_pretrained(cls, path, device: torch.device | str | None = None,
                        dtype: torch.dtype | None = None) -> "GPT":
        """Load a Hugging Face directory (config.json + model.safetensors): GPT-2, or the Llama
        family (Llama, Mistral, Qwen2, Qwen3, Mixtral)."""
        from llmnotes.hf import read_model_dir

        config, state = read_model_dir(path)
        return cls._from_state(config, state, path, device, dtype)

    @classmethod
    def _from_state(cls, config: GPTConfig, state: dict[str, torch.Tensor], path, device=None,
                    dtype: torch.dtype | None = None) -> "GPT":
        """A model of ``config`` holding ``state`` (llmnotes names), every tensor checked by name
        and shape on the meta device before any memory of the model's size is allocated."""
        with torch.device("meta"):
            model = cls(config)
        expected = model.state_dict()
        if config.tie_embeddings:
            state.pop("lm_head.weight", None)  # tied: the embedding is the head
            expected.pop("lm_head.weight")
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        if missing or unexpected:
            raise ValueError(f"checkpoint {path} does not match the config: missing tensors {missing[:8]}"
                             f"{'...' if len(missing) > 8 else ''}, unexpected tensors {unexpected[:8]}")
        for key, tensor in state.items():
            if tuple(tensor.shape) != tuple(expected[key].shape):
                raise ValueError(f"tensor {key} has shape {tuple(tensor.shape)} in {path}, "
                                 f"expected {tuple(expected[key].shape)} from config.json")
        model = model.to_empty(device=device or "cpu")
        model.load_state_dict(state, strict=False)
        if config.tie_embeddings:
            model.lm_head.weight = model.transformer.wte.weight
        if dtype is not None:
            model = model.to(dtype)
        return model.eval()

    def save_pretrained(self, path) -> None:
        """Write a directory that ``transformers`` loads: ``GPT2LMHeadModel`` for GPT-2-style
        configs, ``LlamaForCausalLM``/``Qwen3ForCausalLM``/... for Llama-style ones."""
        from llmnotes.hf import save_model_dir

        save_model_dir(self, path)


def expected_param_count(config: GPTConfig) -> int:
    """Parameters of ``GPT(config)`` (tied ones once), from two 1- and 2-layer models built on the
    meta device: the count is linear in ``n_layer``, so nothing of the real size is created."""
    counts = []
    for n in (1, 2):
        with torch.device("meta"):
            model = GPT(config.replace(n_layer=n))
        counts.append(sum(p.numel() for p in model.parameters()))
    return counts[0] + (config.n_layer - 1) * (counts[1] - counts[0])


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Mean next-token cross-entropy over positions whose target is not ``ignore_index``.

    Args:
        logits: (B, T, V) model output.
        targets: (B, T) the ids that should have been predicted (inputs shifted left by one).
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} "
                         "disagree: expected logits (B, T, V) and targets (B, T)")
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=ignore_index)
