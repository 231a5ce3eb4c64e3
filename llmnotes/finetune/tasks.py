"""Every finetuning task through one trainer: ``FinetuneTrainer`` runs ``llmnotes.train``'s loop
(checkpoints, resume, progress bar, ``metrics.jsonl``) with a task's loss, and ``build_task``
assembles model, datasets, loss and evaluation for ``classify``, ``instruct`` or ``dpo`` (what
the ``llmnotes finetune`` command runs)."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from llmnotes.finetune.classify import (ClassificationDataset, GPTClassifier, accuracy, classification_loss,
                                       confusion_matrix, predict)
from llmnotes.finetune.data import load_classification, load_instructions, load_preferences
from llmnotes.finetune.dpo import DPOLoss, PreferenceDataset, preference_accuracy, preference_margin
from llmnotes.finetune.instruct import InstructionDataset, evaluate_instructions, sft_loss
from llmnotes.train import Trainer, TrainConfig
from llmnotes.utils import autocast



class FinetuneTrainer(Trainer):
    """``Trainer`` with a task loss: ``loss_fn(model, x, y) -> scalar``.

    Everything else — AdamW over the parameters that require grad, warmup + cosine schedule,
    gradient clipping, evaluation, checkpoints that resume exactly, ``metrics.jsonl`` — is the
    pretraining loop's. Datasets return stackable ``(x, y)`` tensors (padded to one length).
    """

    def __init__(self, model: nn.Module, train_data, val_data=None, config: TrainConfig | None = None, *,
                 loss_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable (model, x, y) -> loss, got {type(loss_fn).__name__}")
        if not any(p.requires_grad for p in model.parameters()):
            raise ValueError("no parameter of model requires grad; unfreeze some (freeze(model, 'all')) "
                             "or apply_lora(model, ...)")
        self.loss_fn = loss_fn
        super().__init__(model, train_data, val_data, config)

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.amp_dtype):
            return self.loss_fn(self.model, x, y).float()




def build_task(task: str, model: nn.Module, tokenizer, data: str | None = None, *, style: str = "alpaca",
               beta: float = 0.1, reference: nn.Module | None = None):
    """``(model, train_dataset, test_dataset, loss_fn, evaluate)`` for ``task``; ``evaluate(model)``
    returns a dict of task metrics on the test split."""
    max_len = model.config.block_size
    if task == "classify":
        train_rows, test_rows = load_classification("train", data), load_classification("test", data)
        num_classes = max(r["label"] for r in train_rows + test_rows) + 1
        model = GPTClassifier(model, max(2, num_classes))
        train, test = ClassificationDataset(train_rows, tokenizer, max_len), ClassificationDataset(test_rows, tokenizer, max_len)

        def evaluate(m):
            pred = predict(m, test)
            return {"accuracy": accuracy(pred, test.y[:, 0]),
                    "confusion_matrix": confusion_matrix(pred, test.y[:, 0], m.num_classes).tolist()}
        return model, train, test, classification_loss, evaluate
    if task == "instruct":
        train_rows, test_rows = load_instructions("train", data), load_instructions("test", data)
        train = InstructionDataset(train_rows, tokenizer, style, max_len)
        test = InstructionDataset(test_rows, tokenizer, style, max_len)

        def evaluate(m):
            r = evaluate_instructions(m, tokenizer, test_rows, style)
            return {"score": r["score"], "by_kind": r["by_kind"], "examples": r["replies"][:5]}
        return model, train, test, sft_loss, evaluate
    if task == "dpo":
        train = PreferenceDataset(load_preferences("train", data), tokenizer, style, max_len)
        test = PreferenceDataset(load_preferences("test", data), tokenizer, style, max_len)
        return model, train, test, DPOLoss(reference, beta), lambda m: {"margin": preference_margin(m, test),
                                                                     "preferred": preference_accuracy(m, test)}
    raise ValueError(f"task must be 'classify', 'instruct' or 'dpo', got {task!r}")
