"""Pretraining: ``Trainer``, ``TrainConfig`` and checkpoints that resume to the bit-identical run.

* :mod:`~llmnotes.train.config` -- ``TrainConfig`` and the learning-rate schedule (``lr_at``);
* :mod:`~llmnotes.train.trainer` -- the ``Trainer`` loop (optimizer, data order, DDP/FSDP);
* :mod:`~llmnotes.train.checkpoint` -- atomic checkpoints holding everything a step depends on;
* :mod:`~llmnotes.train.bf16` -- bf16 weights with fp32 master weights on a CPU.

The ``llmnotes train`` command is ``llmnotes/cli/train.py``.
"""

from llmnotes.train import checkpoint
from llmnotes.train.config import DTYPES, TRAIN_DTYPES, TrainConfig, lr_at
from llmnotes.train.trainer import (EpochSampler, Trainer, TrainingDiverged, as_dataset, collate, dist_info,
                                    init_distributed, make_optimizer, param_groups, plot_history)

__all__ = ["Trainer", "TrainConfig", "TrainingDiverged", "lr_at", "plot_history", "DTYPES", "TRAIN_DTYPES",
           "EpochSampler", "as_dataset", "collate", "param_groups", "make_optimizer", "dist_info",
           "init_distributed", "checkpoint"]
