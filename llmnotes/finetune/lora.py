"""LoRA: low-rank adapters (Hu et al., 2021, "LoRA: Low-Rank Adaptation of Large Language
Models", arXiv:2106.09685), and QLoRA when the frozen base is NF4 (Dettmers et al., 2023,
arXiv:2305.14314).

Finetuning changes a pretrained weight ``W`` (out, in) by some ``ΔW``. LoRA bets that the
useful ``ΔW`` has low rank and trains it in factored form::

    h = W x + (alpha / r) · B A x          A: (r, in), B: (out, r), r ≪ min(in, out)

``W`` stays frozen; only ``A`` and ``B`` learn: ``r · (in + out)`` numbers instead of
``in · out``. ``A`` starts random (Kaiming-uniform, as in the reference implementation and
Hugging Face ``peft``) and ``B`` at zero, so at step 0 the adapted model *is* the pretrained
model. Because ``B A`` has the same shape as ``W``, it can be folded in after training
(``merge_lora``): the finetuned model then costs nothing extra at inference.

The base layer can be anything with ``in_features``/``out_features`` that maps (..., in) to
(..., out): an ``nn.Linear``, or a ``QuantizedLinear``/``NF4Linear`` from ``llmnotes.quantize``
whose forward dequantizes its 4-bit weight on the fly — that is QLoRA.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from llmnotes.utils import set_module

DEFAULT_TARGETS = ("c_attn", "c_proj", "c_fc")  # attention q|k|v and output, MLP in and out


class LoRALinear(nn.Module):
    """A frozen base layer plus a trainable low-rank update ``(alpha / r) · B A``.

    Args:
        base: the layer to adapt (``nn.Linear`` or a quantized linear); its parameters are frozen.
        r: rank of the update.
        alpha: scale numerator; the update is multiplied by ``alpha / r`` so that changing ``r``
            does not change the size of the initial learning dynamics much.
        dropout: dropout applied to the adapter's input only (the base path sees ``x`` unchanged).

    Attributes:
        lora_A: ``nn.Linear(in, r)``, weight (r, in), Kaiming-uniform init.
        lora_B: ``nn.Linear(r, out)``, weight (out, r), zero init.
        scaling: ``alpha / r``.
        merged: whether ``B A · scaling`` has been added into the base weight.
    """

    def __init__(self, base: nn.Module, r: int = 8, alpha: float = 16.0, dropout: float = 0.0) -> None:
        super().__init__()
        if not (isinstance(r, int) and not isinstance(r, bool) and r > 0):
            raise ValueError(f"r must be a positive integer, got {r!r}")
        if not (isinstance(alpha, (int, float)) and alpha > 0):
            raise ValueError(f"alpha must be a positive number, got {alpha!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if isinstance(base, LoRALinear):
            raise TypeError("base is already a LoRALinear; apply LoRA once (or merge_lora first)")
        if not (hasattr(base, "in_features") and hasattr(base, "out_features")):
            raise TypeError(f"base must be a linear layer with in_features/out_features, got {type(base).__name__}")
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.r, self.alpha, self.scaling = r, float(alpha), float(alpha) / r
        ref = next(iter(base.parameters()), None)
        ref = ref if ref is not None else next(iter(base.buffers()))
        # Adapters train in fp32 even on a bf16/fp16 or quantized base (peft's default too):
        # they are small, and half-precision Adam updates on them would round away.
        dtype = ref.dtype if ref.dtype in (torch.float32, torch.float64) else torch.float32
        self.lora_A = nn.Linear(self.in_features, r, bias=False, device=ref.device, dtype=dtype)
        self.lora_B = nn.Linear(r, self.out_features, bias=False, device=ref.device, dtype=dtype)
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        self.disabled = False
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # A: the default nn.Linear init (Kaiming-uniform with a=sqrt(5)), as peft does; B: zeros,
        # so B A = 0 and training starts exactly from the pretrained function.
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha:g}, scaling={self.scaling:g}, merged={self.merged}"

    def delta_weight(self) -> torch.Tensor:
        """``ΔW = (alpha / r) · B A``, shape (out, in): what merging adds to the base weight."""
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (..., in) -> (..., out)
        y = self.base(x)
        if self.merged or self.disabled:
            return y
        # Two thin matmuls, (..., in) -> (..., r) -> (..., out); never form the (out, in) ΔW.
        a = self.lora_A(self.lora_dropout(x).to(self.lora_A.weight.dtype))
        return y + (self.lora_B(a) * self.scaling).to(y.dtype)

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """The same function with ΔW formed explicitly: ``x (W + ΔW)ᵀ + b`` (eval, no dropout)."""
        w, bias = base_weight(self.base), getattr(self.base, "bias", None)
        if not self.merged:
            w = w + self.delta_weight()
        return F.linear(x, w.to(x.dtype), None if bias is None else bias.to(x.dtype))

    @torch.no_grad()
    def merge(self) -> None:
        """Add ΔW into an ``nn.Linear`` base weight (in place)."""
        if not isinstance(self.base, nn.Linear):
            raise TypeError(f"cannot merge into a {type(self.base).__name__} in place; "
                            "use merge_lora(model), which replaces it with a dense nn.Linear")
        if not self.merged:
            self.base.weight += self.delta_weight().to(self.base.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract ΔW again: back to the frozen base plus a separate adapter."""
        if self.merged:
            self.base.weight -= self.delta_weight().to(self.base.weight.dtype)
            self.merged = False


def base_weight(layer: nn.Module) -> torch.Tensor:
    """The (out, in) float weight of a linear or quantized linear layer."""
    if isinstance(layer, nn.Linear):
        return layer.weight
    if hasattr(layer, "dequantize_weight"):
        return layer.dequantize_weight()
    raise TypeError(f"cannot read a weight matrix from {type(layer).__name__}")


def lora_layers(model: nn.Module) -> list[tuple[str, LoRALinear]]:
    """Every ``LoRALinear`` in ``model`` with its qualified name."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoRALinear)]


def apply_lora(model: nn.Module, r: int = 8, alpha: float = 16.0,
               target_modules: Iterable[str] = DEFAULT_TARGETS, dropout: float = 0.0,
               freeze_rest: bool = True) -> nn.Module:
    """Wrap every layer whose name ends with one of ``target_modules`` in a ``LoRALinear``.

    Args:
        model: a ``GPT`` (any preset: GPT-2 style, Llama/Qwen style with GQA and SwiGLU, MoE), or
            any module; quantized linears (``quantize_model(model, "nf4")``) give QLoRA.
        r, alpha, dropout: see ``LoRALinear``.
        target_modules: name suffixes, e.g. ``("c_attn",)`` for the attention input projection
            only; ``"c_proj"`` matches both the attention and the MLP output projections.
        freeze_rest: freeze every other parameter (embeddings, norms, biases), the LoRA recipe.

    Returns:
        ``model``, changed in place.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(target_modules, str):
        target_modules = (target_modules,)
    targets = tuple(target_modules)
    if not targets:
        raise ValueError("target_modules is empty; name at least one layer, e.g. ('c_attn',)")
    if lora_layers(model):
        raise ValueError("model already has LoRA adapters; merge_lora(model) first or adapt a fresh model")
    chosen = [(n, m) for n, m in model.named_modules()
              if n and n.split(".")[-1] in targets and hasattr(m, "in_features") and hasattr(m, "out_features")]
    if not chosen:
        names = sorted({n.split(".")[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(f"no layer matches target_modules={targets}; this model's linear layers are {names}")
    if freeze_rest:
        for p in model.parameters():
            p.requires_grad_(False)
    for name, module in chosen:
        set_module(model, name, LoRALinear(module, r, alpha, dropout))
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every ``LoRALinear`` by a plain ``nn.Linear`` holding ``W + ΔW``; return ``model``.

    A quantized base is dequantized first (the merged layer is dense float: re-quantize it
    afterwards if you want a 4-bit model again). The result has no adapter parameters left.
    """
    for name, layer in lora_layers(model):
        with torch.no_grad():
            w = base_weight(layer.base).float()
            if not layer.merged:
                w = w + layer.delta_weight().float()
            bias = getattr(layer.base, "bias", None)
            # keep a float base's dtype; a quantized base becomes the adapters' float dtype
            dtype = layer.base.weight.dtype if isinstance(layer.base, nn.Linear) else layer.lora_A.weight.dtype
            dense = nn.Linear(layer.in_features, layer.out_features, bias=bias is not None,
                              device=w.device, dtype=dtype)
            dense.weight.copy_(w)
            if bias is not None:
                dense.bias.copy_(bias)
        set_module(model, name, dense)
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Undo ``LoRALinear.merge()`` on every adapter still in place (the inverse of merging in place)."""
    for _, layer in lora_layers(model):
        layer.unmerge()
    return model


@contextlib.contextmanager
def disable_lora(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` without its adapters: the frozen base model (DPO's reference model for free)."""
    layers = [m for _, m in lora_layers(model)]
    if any(m.merged for m in layers):
        raise ValueError("adapters are merged into the base weights; unmerge_lora(model) first")
    previous = [m.disabled for m in layers]
    for m in layers:
        m.disabled = True
    try:
        yield model
    finally:
        for m, d in zip(layers, previous):
            m.disabled = d


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter weights (``...lora_A.weight``, ``...lora_B.weight``): the small file to ship."""
    return {k: v for k, v in model.state_dict().items() if ".lora_A." in k or ".lora_B." in k}


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts, each shared tensor counted once.

    A quantized layer's packed 4-bit weight is a buffer, not a parameter; it is counted in
    ``total`` by its number of weights (``in * out``), so totals compare across precisions.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    for m in model.modules():
        if hasattr(m, "qweight") and hasattr(m, "in_features") and not isinstance(m, nn.Linear):
            total += m.in_features * m.out_features
    return trainable, total


def memory_breakdown(model: nn.Module, optimizer_states: int = 2) -> dict[str, int]:
    """Bytes a training step must hold, from the model's actual tensors (activations excluded).

    ``weights``: every parameter and buffer (shared tensors once) — fp32, bf16 or packed 4-bit;
    ``gradients``: one per trainable element, in its dtype; ``optimizer``: ``optimizer_states``
    fp32 tensors per trainable element (AdamW keeps two moments). Works on ``meta`` tensors too,
    so big configurations can be counted without allocating them.
    """
    seen, weights = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) not in seen:
            seen.add(id(t))
            weights += t.numel() * t.element_size()
    trainable = [p for p in model.parameters() if p.requires_grad]
    grads = sum(p.numel() * p.element_size() for p in trainable)
    opt = optimizer_states * 4 * sum(p.numel() for p in trainable)
    return {"weights": weights, "gradients": grads, "optimizer": opt, "total": weights + grads + opt}


# --- adapters on disk, in the PEFT layout -------------------------------------------------

PEFT_PREFIX = "base_model.model."  # how peft names a wrapped model's weights


def save_adapter(model: nn.Module, path, base_model: str, dtype: torch.dtype = torch.float32) -> None:
    """Write ``model``'s LoRA adapters as a PEFT adapter directory.

    The layout is the one ``peft.PeftModel.from_pretrained`` reads: ``adapter_config.json``
    (rank, alpha, target modules, the base model's name) and ``adapter_model.safetensors``
    with keys ``base_model.model.<layer>.lora_A.weight`` / ``lora_B.weight``. A GPT-2-style
    model saved with ``save_pretrained`` plus this directory loads in Hugging Face + peft with
    the same logits (tested).

    Args:
        model: a model with un-merged adapters (``apply_lora``).
        path: the directory to write (created).
        base_model: what the adapter was trained on: a shipped name (``"tiny"``) or a path.
        dtype: storage dtype of the adapter weights.
    """
    import json
    from pathlib import Path

    from safetensors.torch import save_file

    from llmnotes.utils import atomic_path, atomic_write_text

    layers = lora_layers(model)
    if not layers:
        raise ValueError("model has no LoRA adapters to save; apply_lora(model) and train first")
    if any(m.merged for _, m in layers):
        raise ValueError("adapters are merged into the base weights; unmerge_lora(model) first")
    ranks = {m.r for _, m in layers}
    alphas = {m.alpha for _, m in layers}
    if len(ranks) != 1 or len(alphas) != 1:
        raise ValueError(f"one rank and alpha per adapter file, got ranks {ranks}, alphas {alphas}")
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_model,
              "r": ranks.pop(), "lora_alpha": alphas.pop(), "lora_dropout": 0.0, "bias": "none",
              # GPT-2 checkpoints store these layers as (in, out) Conv1D weights; peft needs to know.
              "fan_in_fan_out": True,
              "target_modules": sorted({n.split(".")[-1] for n, _ in layers}),
              "inference_mode": True}
    tensors = {PEFT_PREFIX + k: v.detach().to(dtype).contiguous().cpu() for k, v in lora_state_dict(model).items()}
    with atomic_path(out / "adapter_model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    atomic_write_text(out / "adapter_config.json", json.dumps(config, indent=2) + "\n")


def read_adapter_config(path) -> dict:
    """``adapter_config.json`` of an adapter directory, checked for what :func:`load_adapter` needs."""
    import json
    from pathlib import Path

    file = Path(path) / "adapter_config.json"
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{file} is not a readable adapter config: {err}") from err
    if not isinstance(config, dict) or config.get("peft_type") != "LORA":
        raise ValueError(f"{file}: only LoRA adapters (peft_type 'LORA') are supported")
    for key, kind in (("r", int), ("lora_alpha", (int, float)), ("target_modules", list),
                      ("base_model_name_or_path", str)):
        if not isinstance(config.get(key), kind) or isinstance(config.get(key), bool):
            raise ValueError(f"{file}: '{key}' must be {getattr(kind, '__name__', 'a number')}, "
                             f"got {config.get(key)!r}")
    return config


def load_adapter(model: nn.Module, path, merge: bool = True) -> nn.Module:
    """Apply the PEFT LoRA adapter in directory ``path`` to ``model`` (in place) and return it.

    ``merge=True`` folds ``W + (alpha / r) B A`` into plain linear layers, so inference costs
    nothing extra; ``merge=False`` keeps the adapters separate (to keep training them).
    """
    from pathlib import Path

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config = read_adapter_config(path)
    apply_lora(model, r=config["r"], alpha=float(config["lora_alpha"]),
               target_modules=config["target_modules"], freeze_rest=not merge)
    file = Path(path) / "adapter_model.safetensors"
    try:
        tensors = load_file(str(file))
    except (OSError, SafetensorError) as err:
        raise ValueError(f"cannot read the adapter weights {file}: {err}") from err
    ours = {PEFT_PREFIX + k: k for k in lora_state_dict(model)}
    missing, unexpected = sorted(set(ours) - set(tensors)), sorted(set(tensors) - set(ours))
    if missing or unexpected:
        raise ValueError(f"{file} does not fit this model: missing {missing[:3]}, unexpected {unexpected[:3]}; "
                         f"was it trained on {config['base_model_name_or_path']!r}?")
    state = model.state_dict()
    for key, name in ours.items():
        if tensors[key].shape != state[name].shape:
            raise ValueError(f"{file}: {key} has shape {tuple(tensors[key].shape)}, "
                             f"this model expects {tuple(state[name].shape)}")
    model.load_state_dict({name: tensors[key] for key, name in ours.items()}, strict=False)
    return merge_lora(model) if merge else model
