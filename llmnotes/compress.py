"""Compression beyond quantization: pruning and knowledge distillation.

* **Magnitude pruning** (unstructured): zero the weights of smallest absolute value, per layer or
  globally across layers (Han et al., 2015, arXiv:1506.02626). Sparse weights save memory and
  time only with sparse storage or kernels; the quality cost is what this module measures.
* **Structured pruning**: remove whole attention heads or MLP channels, which shrinks the dense
  matrices themselves (Michel et al., 2019, arXiv:1905.10650, found many heads removable).
  Heads are removed by zeroing their slice of the output projection, which makes their
  contribution exactly zero; MLP channels can also be sliced out for real (``shrink_mlp``).
* **Knowledge distillation** (Hinton et al., 2015, arXiv:1503.02531): train a small student on
  the teacher's softened output distribution as well as on the data.
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from llmnotes.model import GPT

# ---- unstructured magnitude pruning --------------------------------------------------------


def prunable_linears(model: nn.Module, include_head: bool = False) -> list[tuple[str, nn.Linear]]:
    """The linear layers pruning applies to (the tied LM head / embeddings are left alone)."""
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, nn.Linear) and (include_head or not n.endswith("lm_head"))]


def _check_sparsity(sparsity: float) -> None:
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}: it is the fraction of weights removed")


@torch.no_grad()
def magnitude_prune(model: nn.Module, sparsity: float, scope: str = "layer",
                    include_head: bool = False) -> dict[str, torch.Tensor]:
    """Zero the ``sparsity`` fraction of smallest-|w| weights in every linear layer, in place.

    Args:
        scope: ``"layer"`` prunes each matrix to the same sparsity; ``"global"`` ranks all weights
            together, so layers with small weights lose more.

    Returns:
        The boolean keep-masks, by layer name (True = kept).
    """
    _check_sparsity(sparsity)
    if scope not in ("layer", "global"):
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
    layers = prunable_linears(model, include_head)
    masks: dict[str, torch.Tensor] = {}
    if scope == "global":
        all_w = torch.cat([m.weight.abs().flatten() for _, m in layers])
        k = int(round(sparsity * all_w.numel()))
        threshold = all_w.kthvalue(k).values if k > 0 else all_w.new_tensor(-1.0)
    for name, layer in layers:
        w = layer.weight
        if scope == "layer":
            k = int(round(sparsity * w.numel()))
            mask = torch.ones_like(w, dtype=torch.bool)
            if k > 0:  # exactly k smallest, ties broken by position (as torch.nn.utils.prune)
                mask.view(-1)[w.abs().flatten().topk(k, largest=False).indices] = False
        else:
            mask = w.abs() > threshold
        w.mul_(mask)
        masks[name] = mask
    return masks


def sparsity_of(model: nn.Module, include_head: bool = False) -> float:
    """Fraction of zero weights over the prunable linear layers."""
    layers = prunable_linears(model, include_head)
    zeros = sum(int((m.weight == 0).sum()) for _, m in layers)
    return zeros / sum(m.weight.numel() for _, m in layers)


# ---- structured pruning: attention heads and MLP channels ----------------------------------


def _blocks(model: GPT):
    if not isinstance(model, GPT):
        raise TypeError(f"structured pruning works on llmnotes.GPT models, got {type(model).__name__}")
    return model.transformer.h


@torch.no_grad()
def prune_heads(model: GPT, heads: dict[int, Iterable[int]]) -> None:
    """Remove attention heads in place: ``{layer: [head, ...]}``.

    The head's slice of the output projection (and its q/k/v rows) is zeroed, so its contribution
    to the residual stream is exactly zero.
    """
    blocks = _blocks(model)
    for layer, hs in heads.items():
        if not 0 <= layer < len(blocks):
            raise ValueError(f"layer {layer} out of range [0, {len(blocks)})")
        attn = blocks[layer].attn
        for h in hs:
            if not 0 <= h < attn.n_head:
                raise ValueError(f"head {h} out of range [0, {attn.n_head}) in layer {layer}")
            cols = slice(h * attn.head_dim, (h + 1) * attn.head_dim)
            attn.c_proj.weight[:, cols] = 0
            attn.c_attn.weight[cols] = 0  # the query rows (keys/values may be shared under GQA)
            if attn.c_attn.bias is not None:
                attn.c_attn.bias[cols] = 0


@torch.no_grad()
def head_importance(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    """(n_layer, n_head) increase in loss on ``idx`` (B, T) when each head alone is removed."""
    model.eval()

    def loss() -> float:
        logits = model(idx[:, :-1])
        return F.cross_entropy(logits.flatten(0, 1), idx[:, 1:].flatten()).item()

    base = loss()
    blocks = _blocks(model)
    scores = torch.zeros(len(blocks), blocks[0].attn.n_head)
    for layer, block in enumerate(blocks):
        saved = (block.attn.c_proj.weight.clone(), block.attn.c_attn.weight.clone(),
                 None if block.attn.c_attn.bias is None else block.attn.c_attn.bias.clone())
        for h in range(block.attn.n_head):
            prune_heads(model, {layer: [h]})
            scores[layer, h] = loss() - base
            block.attn.c_proj.weight.copy_(saved[0])
            block.attn.c_attn.weight.copy_(saved[1])
            if saved[2] is not None:
                block.attn.c_attn.bias.copy_(saved[2])
    return scores


@torch.no_grad()
def mlp_channel_importance(model: GPT, idx: torch.Tensor) -> list[torch.Tensor]:
    """Per layer, the mean |activation| × ‖output weight column‖ of every MLP channel on ``idx``:
    a first-order estimate of how much each channel writes into the residual stream."""
    acts: list[torch.Tensor] = []
    hooks = [b.mlp.c_proj.register_forward_hook(lambda m, inp, out: acts.append(inp[0].abs().mean((0, 1))))
             for b in _blocks(model)]
    try:
        model.eval()
        model(idx)
    finally:
        for h in hooks:
            h.remove()
    return [a * b.mlp.c_proj.weight.norm(dim=0) for a, b in zip(acts, _blocks(model))]


@torch.no_grad()
def prune_mlp_channels(model: GPT, fraction: float, idx: torch.Tensor) -> None:
    """Zero the least important ``fraction`` of MLP channels in every layer (structured), in place."""
    _check_sparsity(fraction)
    for imp, block in zip(mlp_channel_importance(model, idx), _blocks(model)):
        k = int(round(fraction * imp.numel()))
        if k == 0:
            continue
        drop = imp.topk(k, largest=False).indices
        block.mlp.c_proj.weight[:, drop] = 0
        block.mlp.c_fc.weight[drop] = 0
        if block.mlp.c_fc.bias is not None:
            block.mlp.c_fc.bias[drop] = 0


@torch.no_grad()
def shrink_mlp(model: GPT) -> GPT:
    """Physically remove MLP channels whose output column is all zero (after
    ``prune_mlp_channels``), keeping the widest layer's width for all: returns a smaller GPT with
    identical outputs. GPT-2 MLPs only (one ``c_fc``)."""
    blocks = _blocks(model)
    if model.config.mlp != "gelu":
        raise ValueError("shrink_mlp supports the GELU MLP of GPT-2-style models")
    keep = [(b.mlp.c_proj.weight != 0).any(0).nonzero().flatten() for b in blocks]
    width = max(int(k.numel()) for k in keep)
    small = GPT(model.config.replace(n_inner=width)).to(model.device)
    state = model.state_dict()
    for i, (b, k) in enumerate(zip(blocks, keep)):
        # pad with still-zero channels so every layer has the same width
        dead = torch.tensor([c for c in range(b.mlp.c_fc.out_features) if c not in set(k.tolist())])
        k = torch.cat([k, dead[: width - k.numel()]]).sort().values
        p = f"transformer.h.{i}.mlp."
        state[p + "c_fc.weight"] = b.mlp.c_fc.weight[k]
        if b.mlp.c_fc.bias is not None:
            state[p + "c_fc.bias"] = b.mlp.c_fc.bias[k]
        state[p + "c_proj.weight"] = b.mlp.c_proj.weight[:, k]
    small.load_state_dict(state)
    return small.eval()


# ---- knowledge distillation ----------------------------------------------------------------


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                      temperature: float = 2.0, alpha: float = 0.5, ignore_index: int = -100) -> torch.Tensor:
    """alpha · T² · KL(teacher_T ‖ student_T) + (1 − alpha) · CE(student, targets).

    Both distributions are softened by temperature T; the T² factor keeps the soft term's
    gradients on the same scale as the hard term's as T changes (Hinton et al., 2015).

    Args:
        student_logits, teacher_logits: (B, T, V).
        targets: (B, T) next-token ids; ``ignore_index`` positions count in neither term.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student {tuple(student_logits.shape)} and teacher {tuple(teacher_logits.shape)} "
                         "logits must have the same shape (same vocabulary)")
    keep = (targets != ignore_index).flatten()
    s = student_logits.flatten(0, 1)[keep].float()
    t = teacher_logits.flatten(0, 1)[keep].float()
    soft = F.kl_div(F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1),
                    log_target=True, reduction="batchmean") * temperature ** 2
    hard = F.cross_entropy(s, targets.flatten()[keep])
    return alpha * soft + (1 - alpha) * hard


def distill(teacher: nn.Module, student: nn.Module, train_data, val_data=None, config=None,
            temperature: float = 2.0, alpha: float = 0.5):
    """Train ``student`` on ``train_data`` with ``distillation_loss`` against a frozen ``teacher``,
    using the project's ``Trainer`` (progress bar, schedules, checkpoints). Returns the Trainer."""
    from llmnotes.train import Trainer
    from llmnotes.utils import autocast

    teacher = teacher.eval().requires_grad_(False)

    class DistillTrainer(Trainer):
        def _loss(self, x, y):
            if not self.model.training:  # validation: plain next-token loss
                return super()._loss(x, y)
            with autocast(self.device, self.amp_dtype), torch.no_grad():
                t_logits = teacher.to(self.device)(x)
            with autocast(self.device, self.amp_dtype):
                s_logits = self.model(x)
            return distillation_loss(s_logits, t_logits, y, temperature, alpha)

    trainer = DistillTrainer(student, train_data, val_data, config)
    trainer.fit()
    return trainer
