"""Sequence classification with a pretrained GPT: the last real token's hidden state -> a label.

``GPTClassifier`` puts a linear head on the body, ``freeze`` picks what trains (all, the head
only, the last N blocks), ``ClassificationDataset`` pads texts so batches stack, and
``classification_loss``/``predict``/``accuracy``/``confusion_matrix`` train and measure it.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from llmnotes.finetune.data import PairDataset
from llmnotes.tokenizer import eos_id_of


# --------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last real token, (B, T) 0/1 mask -> (B,); works for left or right padding."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (attention_mask.long() * positions).argmax(dim=1)


class GPTClassifier(nn.Module):
    """A GPT body with a linear classification head on the last real token's hidden state.

    In a causal model only the last token has attended to the whole text, so its final hidden
    state (after ``ln_f``) is the summary the head reads. The language-model head is not used.

    Args:
        model: a ``GPT`` (any preset).
        num_classes: number of labels.

    Example:
        >>> from llmnotes.model import GPT, GPTConfig
        >>> clf = GPTClassifier(GPT(GPTConfig.from_preset("nano")), num_classes=4)
        >>> clf(torch.zeros(2, 5, dtype=torch.long)).shape
        torch.Size([2, 4])
    """

    def __init__(self, model: nn.Module, num_classes: int) -> None:
        super().__init__()
        if not hasattr(model, "hidden_states"):
            raise TypeError(f"model must be a GPT with hidden_states(), got {type(model).__name__}")
        if not (isinstance(num_classes, int) and not isinstance(num_classes, bool) and num_classes >= 2):
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        self.model, self.num_classes = model, num_classes
        self.config = model.config  # so the Trainer and tools can read block_size
        ref = model.transformer.wte.weight
        self.head = nn.Linear(model.config.n_embd, num_classes, device=ref.device, dtype=ref.dtype)
        nn.init.normal_(self.head.weight, std=0.02)  # like every GPT-2 linear layer
        nn.init.zeros_(self.head.bias)

    def forward(self, idx: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Class logits (B, num_classes) for token ids (B, T), 0/1 ``attention_mask`` (B, T)."""
        h = self.model.hidden_states(idx, attention_mask=attention_mask)  # (B, T, C)
        if attention_mask is None:
            last = torch.full((idx.shape[0],), idx.shape[1] - 1, device=idx.device)
        else:
            last = last_token_index(attention_mask)
        return self.head(h[torch.arange(idx.shape[0], device=idx.device), last])  # (B, num_classes)


def freeze(model: nn.Module, policy: str = "all") -> nn.Module:
    """Choose which parameters train: ``"all"``, ``"head_only"``, or ``"last_blocks:N"``.

    ``"last_blocks:N"`` trains the last N transformer blocks, the final norm and the head; the
    embeddings and early blocks (generic features) stay fixed. Works on a ``GPTClassifier`` (the
    head is ``head``) or a bare ``GPT`` (the head is ``lm_head``, tied to the embedding).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    gpt = model.model if isinstance(model, GPTClassifier) else model
    head = model.head if isinstance(model, GPTClassifier) else gpt.lm_head
    blocks = gpt.transformer.h
    if policy == "all":
        model.requires_grad_(True)
        return model
    n = None
    if policy.startswith("last_blocks:"):
        try:
            n = int(policy.split(":", 1)[1])
        except ValueError:
            n = -1
        if not 0 <= n <= len(blocks):
            raise ValueError(f"policy 'last_blocks:N' needs N in [0, {len(blocks)}], got {policy!r}")
    elif policy != "head_only":
        raise ValueError(f"policy must be 'all', 'head_only' or 'last_blocks:N', got {policy!r}")
    model.requires_grad_(False)
    head.requires_grad_(True)
    if n:
        for block in blocks[len(blocks) - n:]:
            block.requires_grad_(True)
        gpt.transformer.ln_f.requires_grad_(True)
    return model


class ClassificationDataset(PairDataset):
    """Items ``x`` (L,) right-padded ids and ``y`` = ``[label, length]`` (2,), so batches stack."""

    def __init__(self, rows: Sequence[dict], tokenizer, max_len: int | None = None) -> None:
        if not rows:
            raise ValueError("rows is empty; load some with load_classification()")
        ids = [tokenizer.encode(r["text"], allowed_special="none") for r in rows]
        if max_len is not None:
            ids = [s[-max_len:] for s in ids]  # keep the end: the last token does the classifying
        L = max(len(s) for s in ids)
        pad = eos_id_of(tokenizer) or 0
        x = torch.full((len(ids), L), pad, dtype=torch.long)
        for i, s in enumerate(ids):
            x[i, : len(s)] = torch.tensor(s)
        super().__init__(x, torch.tensor([[r["label"], len(s)] for r, s in zip(rows, ids)], dtype=torch.long))


def _split_batch(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    lengths = y[:, 1]
    x = x[:, : int(lengths.max())]  # drop the batch's shared padding
    mask = (torch.arange(x.shape[1], device=x.device)[None] < lengths[:, None]).long()
    return x, mask, y[:, 0]


def classification_loss(model: GPTClassifier, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the class logits: ``x`` (B, L) ids, ``y`` (B, 2) ``[label, length]``."""
    x, mask, labels = _split_batch(x, y)
    return F.cross_entropy(model(x, mask).float(), labels)


@torch.no_grad()
def predict(model: GPTClassifier, dataset: ClassificationDataset, batch_size: int = 64) -> torch.Tensor:
    """Predicted labels (N,) for a ``ClassificationDataset``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    preds = []
    for i in range(0, len(dataset), batch_size):
        x, mask, _ = _split_batch(dataset.x[i:i + batch_size].to(device), dataset.y[i:i + batch_size].to(device))
        preds.append(model(x, mask).argmax(-1).cpu())
    model.train(was_training)
    return torch.cat(preds)


def accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of ``predictions`` equal to ``labels`` (both (N,))."""
    predictions, labels = torch.as_tensor(predictions), torch.as_tensor(labels)
    if predictions.shape != labels.shape or predictions.ndim != 1 or not len(labels):
        raise ValueError(f"predictions and labels must be non-empty 1-D tensors of one shape, got "
                         f"{tuple(predictions.shape)} and {tuple(labels.shape)}")
    return (predictions == labels).float().mean().item()


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes, num_classes) counts; row = true label, column = predicted (sklearn's layout)."""
    predictions, labels = torch.as_tensor(predictions).long(), torch.as_tensor(labels).long()
    if predictions.shape != labels.shape or predictions.ndim != 1:
        raise ValueError(f"predictions and labels must be 1-D tensors of one shape, got "
                         f"{tuple(predictions.shape)} and {tuple(labels.shape)}")
    for name, t in (("predictions", predictions), ("labels", labels)):
        if len(t) and (int(t.min()) < 0 or int(t.max()) >= num_classes):
            raise ValueError(f"{name} must be in [0, {num_classes}), got values in [{int(t.min())}, {int(t.max())}]")
    return torch.bincount(labels * num_classes + predictions, minlength=num_classes ** 2).view(num_classes, num_classes)
