"""Read and write Hugging Face model directories (``config.json`` + ``model.safetensors``).

GPT-2 checkpoints are handled here; the Llama family (Llama, Mistral, Qwen2, Qwen3, Mixtral) in
``hf_llama.py``. Both end in the same checks: every tensor present, none left over, every shape
as the config says.

Two facts make this more than a rename:

* GPT-2's original code stores its linear layers as ``Conv1D`` modules whose weight is
  (in_features, out_features), the transpose of ``nn.Linear``'s (out, in). The four matrices
  ``c_attn``, ``c_proj`` (attention), ``c_fc`` and ``c_proj`` (MLP) are transposed on the way in
  and on the way out.
* Checkpoints name keys with or without the ``transformer.`` prefix (the original OpenAI upload
  has ``h.0.attn.c_attn.weight``; ``save_pretrained`` writes ``transformer.h.0...``), carry
  non-parameter buffers (``attn.bias``, ``attn.masked_bias``: a causal mask) and usually omit the
  tied ``lm_head.weight``.

Weights are read with safetensors (no code execution). A ``pytorch_model.bin`` is accepted only if
``torch.load(weights_only=True)`` can read it, which refuses arbitrary pickled objects.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from llmnotes import hf_llama, load_checks
from llmnotes.config import GPTConfig
from llmnotes.utils import atomic_path, atomic_write_text

CONV1D_SUFFIXES = (".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight")
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers, not parameters
SUPPORTED_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")  # all the tanh GELU


def weight_files(path: str | Path) -> list[Path]:
    """The safetensors files of a model directory: ``model.safetensors`` or the shards that
    ``model.safetensors.index.json`` names (each checked to lie inside the directory)."""
    path = Path(path)
    single = path / "model.safetensors"
    if single.exists() or single.is_symlink():
        return [load_checks.regular_file(single, "weights file")]
    index = path / "model.safetensors.index.json"
    if index.exists():
        return load_checks.shard_paths(path, index)
    return []


def read_header(path: str | Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{name: (shape, dtype)}`` over a directory's safetensors files, from their headers only."""
    header: dict[str, tuple[tuple[int, ...], str]] = {}
    for file in weight_files(path):
        header.update(load_checks.safetensors_header(file))
    return header


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint directory: ``model.safetensors`` (preferred) or a weights-only
    ``pytorch_model.bin``. Sharded safetensors (``model.safetensors.index.json``) are supported."""
    path = Path(path)
    from safetensors.torch import load_file

    files = weight_files(path)
    if files:
        state: dict[str, torch.Tensor] = {}
        for file in files:
            load_checks.safetensors_header(file)  # a one-line error for a damaged file
            try:
                state.update(load_file(str(file)))
            except Exception as err:  # the header was fine but the data is cut short
                raise ValueError(f"weights file {str(file)!r} is damaged ({' '.join(str(err).split())}); "
                                 "copy or download it again") from None
        return state
    if (path / "pytorch_model.bin").exists():
        load_checks.regular_file(path / "pytorch_model.bin", "weights file")
        try:
            return torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
        except Exception as err:  # the unpickler refused something that is not a plain tensor
            raise ValueError(
                f"{path / 'pytorch_model.bin'} is not a plain tensor checkpoint and will not be "
                f"unpickled (weights_only=True refused it: {' '.join(str(err).split())[:200]}); "
                "convert it to safetensors"
            ) from None
    raise FileNotFoundError(f"no model.safetensors or pytorch_model.bin in {path}")


def config_from_hf(hf: dict) -> GPTConfig:
    """Translate a Hugging Face ``GPT2Config`` dict to a ``GPTConfig`` (every field type-checked)."""
    f = load_checks.field
    if hf.get("model_type", "gpt2") != "gpt2":
        raise ValueError(f"expected a GPT-2 checkpoint (model_type 'gpt2'), got {hf.get('model_type')!r}")
    act = hf.get("activation_function", "gelu_new")
    if act not in SUPPORTED_ACTIVATIONS:
        raise ValueError(f"activation_function {act!r} is not supported; expected one of {SUPPORTED_ACTIVATIONS}")
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if f(hf, flag, bool, False, optional=True):
            raise ValueError(f"{flag}=True is not supported by llmnotes' GPT")
    if f(hf, "scale_attn_weights", bool, True, optional=True) is False:
        raise ValueError("scale_attn_weights=False is not supported by llmnotes' GPT")
    block = f(hf, "n_positions", int, None, optional=True) or f(hf, "n_ctx", int, 1024, optional=True) or 1024
    return GPTConfig(
        vocab_size=f(hf, "vocab_size", int), block_size=block,
        n_layer=f(hf, "n_layer", int), n_head=f(hf, "n_head", int), n_embd=f(hf, "n_embd", int),
        n_inner=f(hf, "n_inner", int, None, optional=True),
        layer_norm_eps=f(hf, "layer_norm_epsilon", float, 1e-5),
        tie_embeddings=f(hf, "tie_word_embeddings", bool, True), dropout=0.0,
    )


def config_to_hf(config: GPTConfig) -> dict:
    """The ``config.json`` Hugging Face writes for an equivalent ``GPT2LMHeadModel``."""
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": config.vocab_size, "n_positions": config.block_size, "n_ctx": config.block_size,
        "n_embd": config.n_embd, "n_layer": config.n_layer, "n_head": config.n_head,
        "n_inner": config.n_inner, "activation_function": "gelu_new",
        "layer_norm_epsilon": config.layer_norm_eps, "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout, "attn_pdrop": config.dropout, "initializer_range": 0.02,
        "scale_attn_weights": True, "use_cache": True, "tie_word_embeddings": config.tie_embeddings,
        "bos_token_id": config.extra.get("bos_token_id", config.vocab_size - 1),
        "eos_token_id": config.extra.get("eos_token_id", config.vocab_size - 1),
        "torch_dtype": "float32", "llmnotes": {"attn_impl": config.attn_impl, "extra": config.extra},
    }


def _normalise_key(key: str) -> str:
    return key if key.startswith(("transformer.", "lm_head.")) else "transformer." + key


def _gpt2_state(raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = {}
    for key, tensor in raw.items():
        key = _normalise_key(key)
        if key.endswith(IGNORED_SUFFIXES):
            continue
        if key.endswith(CONV1D_SUFFIXES):
            tensor = tensor.t()
        state[key] = tensor
    return state


def is_gpt2_layout(config: GPTConfig) -> bool:
    return config.norm == "layernorm" and config.pos_emb == "learned" and config.mlp == "gelu" and (
        config.n_kv_head == config.n_head and config.head_dim * config.n_head == config.n_embd and not config.qk_norm
        and config.qkv_bias in (None, config.bias) and config.bias and config.sliding_window is None)


def read_model_dir(path: str | Path) -> tuple[GPTConfig, dict[str, torch.Tensor]]:
    """The ``GPTConfig`` and the tensors (by llmnotes names) of a Hugging Face directory (GPT-2 or
    Llama family), checked against each other and for NaN; ``GPT.from_pretrained`` builds the
    model from them after checking every tensor's name and shape."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model directory {path} does not exist")
    cfg_path = path / "config.json"
    if not cfg_path.exists():
        if (path / "quantization.json").is_file():
            raise ValueError(f"{path} is a quantized model directory (quantization.json), not a float one; "
                             "load it with llmnotes.load_pretrained(path)")
        raise FileNotFoundError(f"{cfg_path} is missing: a model directory needs config.json; "
                                "llmnotes.load_pretrained(path) also reads quantized and adapter directories")
    hf_cfg = load_checks.read_json_object(cfg_path, "model config")
    model_type = hf_cfg.get("model_type", "gpt2")
    if model_type == "gpt2":
        config = config_from_hf(hf_cfg)
        extras = hf_cfg.get("llmnotes", {})
        if not isinstance(extras, dict) or not isinstance(extras.get("extra", {}), dict):
            raise ValueError(f"{cfg_path}: the 'llmnotes' field must be an object with an 'extra' object, "
                             f"got {extras!r}")
        if extras:
            config = config.replace(attn_impl=extras.get("attn_impl", "sdpa"), extra=extras.get("extra", {}))
        for key in ("bos_token_id", "eos_token_id"):
            if load_checks.field(hf_cfg, key, int, None, optional=True) is not None:
                config.extra.setdefault(key, hf_cfg[key])
        ignored = IGNORED_SUFFIXES
    elif model_type in hf_llama.ARCHITECTURES:
        config = hf_llama.config_from_hf(hf_cfg)
        ignored = ()
    else:
        supported = ["gpt2", *hf_llama.ARCHITECTURES]
        raise ValueError(f"model_type {model_type!r} in {cfg_path} is not supported; supported: {supported}")
    # The header decides whether the config fits the weights before a model of its size is built.
    header = read_header(path)
    if header:
        load_checks.check_header_fits(config, header, path, ignored)  # from_pretrained checks shapes
    raw = read_state_dict(path)
    if model_type == "gpt2":
        state = _gpt2_state(raw)
    else:
        state = hf_llama.state_from_hf(raw, config)
        leftover = len(raw) - len([k for k in raw if k.startswith(("model.", "lm_head."))])
        if leftover:
            raise ValueError(f"checkpoint {path} has {leftover} tensors outside model.* and lm_head.*")
    load_checks.check_finite(state, path)
    return config, state


def save_model_dir(model, path: str | Path) -> None:
    """Write ``config.json`` + ``model.safetensors`` in Hugging Face layout, atomically: GPT-2's
    for GPT-2-style configs, the matching Llama-family layout for RoPE/RMSNorm/SwiGLU configs."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = model.config
    state = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
    if is_gpt2_layout(config):
        tensors = {}
        for key, tensor in state.items():
            if key == "lm_head.weight" and config.tie_embeddings:
                continue  # stored once, as the embedding; loaders re-tie it
            tensors[key] = tensor.t() if key.endswith(CONV1D_SUFFIXES) else tensor
        hf_config = config_to_hf(config)
    else:
        tensors = hf_llama.state_to_hf(state, config)
        hf_config = hf_llama.config_to_hf(config)
    tensors = {k: v.contiguous().clone() for k, v in tensors.items()}
    with atomic_path(path / "model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    atomic_write_text(path / "config.json", json.dumps(hf_config, indent=2) + "\n")
