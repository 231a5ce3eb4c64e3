"""Saving and loading quantized models.

A quantized model directory holds ``quantized.safetensors`` (the packed codes, scales and every
float tensor, tied matrices stored once), ``quantization.json`` (the ``GPTConfig`` and, for each
replaced layer, its class and constructor arguments) and the tokenizer files. Loading rebuilds
a float ``GPT`` skeleton, swaps in empty quantized layers of the recorded shapes, and fills
everything from the safetensors file (no pickle anywhere).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from llmnotes.quantize.layers import LLMInt8Linear, NF4Linear, QuantizedEmbedding, QuantizedLayer, QuantizedLinear
from llmnotes.utils import atomic_path, atomic_write_text, set_module

LAYER_CLASSES = {cls.__name__: cls for cls in (QuantizedLinear, NF4Linear, LLMInt8Linear, QuantizedEmbedding)}
# Constructor arguments renamed since: directories saved before still load.
_RENAMED_ARGS = {"NF4Linear": {"block_size": "quant_block", "dq_block_size": "dq_block"}}


def save_quantized(model, method: str, directory: str | os.PathLike, tokenizer=None) -> Path:
    """Write a quantized ``GPT`` (and optionally its tokenizer) to ``directory``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tables = {m.qweight.data_ptr(): n for n, m in model.named_modules() if isinstance(m, QuantizedEmbedding)}
    layers = {}
    for name, m in model.named_modules():
        if isinstance(m, QuantizedLinear) and m.qweight.data_ptr() in tables:  # a head tied to a table
            layers[name] = {"class": "tied_head", "of": tables[m.qweight.data_ptr()]}
        elif isinstance(m, QuantizedLayer):
            layers[name] = {"class": type(m).__name__, "args": m.init_args()}
    state, seen = {}, set()
    for k, v in model.state_dict().items():
        if v.data_ptr() in seen and v.numel():  # tied (lm_head = wte): keep the first name only
            continue
        seen.add(v.data_ptr())
        state[k] = v.detach().cpu().contiguous()
    with atomic_path(directory / "quantized.safetensors") as tmp:
        save_file(state, str(tmp))
    meta = {"method": method, "config": model.config.to_dict(), "layers": layers}
    atomic_write_text(directory / "quantization.json", json.dumps(meta, indent=2) + "\n")
    if tokenizer is not None:
        tokenizer.save(directory)
    return directory


def _skeleton(meta: dict, meta_path: Path):
    """The ``GPT`` with the recorded quantized layers swapped in (empty), as ``quantization.json``
    describes it; built on whatever device is current (the meta device for checking)."""
    from llmnotes.config import GPTConfig
    from llmnotes.model import GPT

    model = GPT(GPTConfig.from_dict(meta["config"]))
    heads = {}
    for name, spec in meta["layers"].items():
        if not isinstance(spec, dict) or not isinstance(spec.get("class"), str):
            raise ValueError(f"{meta_path}: layer {name!r} must be an object with a 'class'")
        if spec["class"] == "tied_head":
            heads[name] = spec["of"]
            continue
        if spec["class"] not in LAYER_CLASSES:
            raise ValueError(f"unknown quantized layer class {spec['class']!r} in {meta_path}")
        if not isinstance(spec.get("args"), dict):
            raise ValueError(f"{meta_path}: layer {name!r} needs an 'args' object")
        try:
            renamed = _RENAMED_ARGS.get(spec["class"], {})
            args = {renamed.get(k, k): v for k, v in spec["args"].items()}
            set_module(model, name, LAYER_CLASSES[spec["class"]](**args))
        except (TypeError, AttributeError) as err:  # wrong argument names, or no such submodule
            raise ValueError(f"{meta_path}: layer {name!r} cannot be built from {spec} ({err})") from None
    for name, table in heads.items():  # share the table's tensors again, as when saved
        set_module(model, name, model.get_submodule(table).tied_head())
    return model, heads


def _check_fits(meta: dict, meta_path: Path, weights: Path) -> None:
    """Compare ``quantization.json`` with the weights' header before allocating the model."""
    from llmnotes import load_checks
    from llmnotes.config import GPTConfig

    header = load_checks.safetensors_header(weights)
    config = GPTConfig.from_dict(meta["config"])
    layers = {int(m.group(1)) for k in header if (m := load_checks._LAYER_RE.search(k))}
    if (max(layers) + 1 if layers else 0) != config.n_layer:
        raise ValueError(f"{meta_path} says n_layer={config.n_layer} but {weights} holds "
                         f"{max(layers) + 1 if layers else 0} layers; they do not belong together")
    with torch.device("meta"):
        skeleton, _ = _skeleton(meta, meta_path)
    for key, tensor in skeleton.state_dict().items():
        if key in header and tuple(header[key][0]) != tuple(tensor.shape):
            raise ValueError(f"{weights}: tensor {key} has shape {header[key][0]}, but {meta_path} "
                             f"describes {tuple(tensor.shape)}; they do not belong together")


def load_quantized(directory: str | os.PathLike, device: torch.device | str | None = None):
    """Load a model written by ``save_quantized``; returns the ``GPT`` in eval mode.

    ``quantization.json`` is checked against the weights' header (layer count, every shape) on
    the meta device before any real memory is allocated.
    """
    from safetensors.torch import load_file

    from llmnotes import load_checks

    directory = Path(directory)
    meta_path = directory / "quantization.json"
    if not meta_path.exists() and (directory / "config.json").is_file():
        raise ValueError(f"{directory} is a float model directory (config.json), not a quantized one; "
                         "load it with llmnotes.load_pretrained(path)")
    if not meta_path.is_file() and not meta_path.exists():
        raise FileNotFoundError(f"{meta_path} not found; is {directory} a directory written by save_quantized "
                                "(`llmnotes quantize --out`)?")
    meta = load_checks.read_json_object(meta_path, "quantization config")
    if not isinstance(meta.get("config"), dict) or not isinstance(meta.get("layers"), dict):
        raise ValueError(f"{meta_path} must hold 'config' and 'layers' objects; the file is not "
                         "written by save_quantized")
    weights = directory / "quantized.safetensors"
    _check_fits(meta, meta_path, weights)
    model, heads = _skeleton(meta, meta_path)
    state = load_file(str(weights))
    load_checks.check_finite({k: v for k, v in state.items() if v.is_floating_point()}, weights)
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if model.config.tie_embeddings else set()
    tied |= {f"{h}.{b}" for h in heads for b in ("qweight", "scale")}
    if set(missing) - tied or unexpected:
        raise ValueError(f"{directory}: checkpoint does not match its quantization.json "
                         f"(missing {sorted(set(missing) - tied)}, unexpected {sorted(unexpected)})")
    return model.to(device or "cpu").eval()
