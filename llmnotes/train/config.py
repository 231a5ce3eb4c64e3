"""What decides a training run: ``TrainConfig``, and the learning-rate schedule every run follows.

``lr_at`` is the Trainer's schedule (linear warmup, then a cosine to ``min_lr``): the
``WarmupCosine`` of :mod:`llmnotes.schedules` with nanoGPT's warmup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from llmnotes.config import ConfigDict

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# TrainConfig.dtype: the DTYPES (autocast for bf16/fp16), bf16 weights with fp32 masters, or auto
TRAIN_DTYPES = ("auto", "bf16-master", *DTYPES)


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass
class TrainConfig(ConfigDict):
    """Everything that decides a training run (the model's shape lives in ``GPTConfig``).

    Attributes:
        max_steps: optimizer steps to take.
        batch_size: sequences per micro-batch *per process*.
        grad_accum_steps: micro-batches whose gradients are summed before each optimizer step.
            One step sees ``batch_size * grad_accum_steps * world_size`` sequences.
        lr: peak learning rate, reached at the end of warmup.
        min_lr: floor of the cosine decay; ``None`` means ``lr / 10`` (Chinchilla's choice).
        warmup_steps: steps of linear warmup from ``lr / warmup_steps`` up to ``lr``.
        lr_decay_steps: step at which the cosine reaches ``min_lr``; ``None`` means ``max_steps``
            (or ``warmup_steps`` if that is larger).
        weight_decay: AdamW decoupled weight decay, applied to matrix weights only.
        betas: AdamW ``(beta1, beta2)``; GPT-3 used (0.9, 0.95).
        eps: AdamW epsilon.
        grad_clip: clip the global gradient L2 norm to this; 0 disables clipping.
        eval_interval: evaluate on the validation data every this many steps (0: only at the end).
        eval_steps: validation micro-batches per evaluation.
        log_interval: record the training loss every this many steps.
        save_interval: write a checkpoint every this many steps (0: only at the end).
        keep_checkpoints: how many recent checkpoints to keep on disk.
        out_dir: where checkpoints and ``metrics.jsonl`` go; ``None`` writes nothing.
        resume: continue from the latest checkpoint in ``out_dir``.
        dtype: ``"fp32"``, ``"bf16"`` (autocast), ``"fp16"`` (autocast + gradient scaler),
            ``"bf16-master"`` (bf16 weights, fp32 master weights: ``llmnotes.train.bf16``) or
            ``"auto"``: bf16-master on a CPU with native bf16 where a step measures faster
            (``llmnotes.train.bf16.choose_precision``), else fp32. ``Trainer.precision`` says which.
        compile: run the model through ``torch.compile``.
        device: ``"cpu"``, ``"cuda"``, ``"mps"``...; ``None`` picks the best available.
        seed: seeds initialisation-independent randomness: data order, dropout.
        fsdp: under ``torchrun``, shard the model with FSDP instead of replicating it with DDP.
        progress: show a tqdm progress bar (rank 0 only).
    """

    max_steps: int = 1000
    batch_size: int = 8
    grad_accum_steps: int = 1
    lr: float = 6e-4
    min_lr: float | None = None
    warmup_steps: int = 100
    lr_decay_steps: int | None = None
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = 1.0
    eval_interval: int = 100
    eval_steps: int = 20
    log_interval: int = 10
    save_interval: int = 0
    keep_checkpoints: int = 2
    out_dir: str | None = None
    resume: bool = False
    dtype: str = "auto"
    compile: bool = False
    device: str | None = None
    seed: int = 1337
    fsdp: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "grad_accum_steps", "eval_steps", "keep_checkpoints"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        for name in ("warmup_steps", "eval_interval", "save_interval"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
        if not isinstance(self.log_interval, int) or self.log_interval <= 0:
            raise ValueError(f"log_interval must be a positive integer, got {self.log_interval!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        if self.min_lr is None:
            self.min_lr = self.lr / 10
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr must be in [0, lr={self.lr}], got {self.min_lr!r}")
        if self.lr_decay_steps is None:
            self.lr_decay_steps = max(self.max_steps, self.warmup_steps)
        if self.lr_decay_steps < self.warmup_steps:
            raise ValueError(f"lr_decay_steps ({self.lr_decay_steps}) must be >= warmup_steps "
                             f"({self.warmup_steps}); lower warmup_steps or raise max_steps")
        self.betas = tuple(float(b) for b in self.betas)  # JSON round-trips give lists
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0 (0 disables clipping), got {self.grad_clip!r}")
        if self.dtype not in TRAIN_DTYPES:
            raise ValueError(f"dtype must be one of {sorted(TRAIN_DTYPES)}, got {self.dtype!r}")
        if self.resume and self.out_dir is None:
            raise ValueError("resume=True needs out_dir: the directory holding the checkpoint")


# --------------------------------------------------------------------------------------------
# Learning-rate schedule
# --------------------------------------------------------------------------------------------


def lr_at(step: int, lr: float, min_lr: float, warmup_steps: int, decay_steps: int) -> float:
    """The learning rate for optimizer step ``step`` (0-based): linear warmup, then cosine.

    Warmup climbs linearly so that step ``warmup_steps - 1`` uses the peak ``lr``: early
    gradients are large and Adam's second-moment estimate is still poor, so full-size steps
    would be unstable. Then the rate follows half a cosine from ``lr`` down to ``min_lr`` at
    ``decay_steps`` and stays there (Loshchilov & Hutter 2016, arXiv:1608.03983; as in GPT-3 and
    Chinchilla, which decays to 10% of the peak).

    >>> lr_at(0, 1.0, 0.1, 10, 100), lr_at(9, 1.0, 0.1, 10, 100), lr_at(100, 1.0, 0.1, 10, 100)
    (0.1, 1.0, 0.1)
    """
    return _schedule(lr, min_lr, warmup_steps, decay_steps).lr_at(step)


def _schedule(lr: float, min_lr: float, warmup_steps: int, decay_steps: int):
    """The Trainer's schedule: ``llmnotes.schedules.WarmupCosine`` with nanoGPT's warmup (step 0
    already above zero, the peak on step ``warmup_steps - 1``)."""
    from llmnotes.schedules import WarmupCosine

    return WarmupCosine(max_lr=lr, warmup_steps=warmup_steps, total_steps=decay_steps, min_lr=min_lr,
                        start_above_zero=True)
