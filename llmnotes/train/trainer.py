"""Pretraining: the training loop, with checkpoints that resume exactly.

The loop is the one every GPT trainer runs (nanoGPT's, Hugging Face's, Megatron's):

    for step in range(max_steps):
        set the learning rate for this step (linear warmup, then cosine decay to min_lr)
        for each of grad_accum_steps micro-batches:
            loss = cross_entropy(model(x), y) / grad_accum_steps   # under autocast
            loss.backward()                                         # gradients add up
        clip the global gradient norm; optimizer.step(); zero the gradients

``Trainer`` wraps exactly that with what a real run needs: AdamW with weight decay only on
matrix weights, mixed precision (bf16 autocast, or fp16 with a gradient scaler), optional
``torch.compile``, periodic evaluation (loss and perplexity), a progress bar, a ``metrics.jsonl``
log, DDP/FSDP under ``torchrun``, and checkpoints that hold *everything* the next step depends on
(weights, optimizer moments, schedule position, RNG states and the data order), so that a run
stopped and resumed in a new process continues bit for bit as if it had never stopped.

``TrainConfig`` and the schedule are in :mod:`llmnotes.train.config`, checkpoint helpers in
:mod:`llmnotes.train.checkpoint`; the ``llmnotes train`` command is ``llmnotes/cli/train.py``.
Over 400 lines because ``Trainer`` is the one loop (precision, accumulation, DDP/FSDP, evaluation,
checkpoints) that must resume bit for bit; its data order and optimizer set-up come first.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from llmnotes.train import checkpoint as ckpt
from llmnotes.train.config import DTYPES, TrainConfig, _schedule
from llmnotes.utils import autocast, pick_device, seed_everything

# --------------------------------------------------------------------------------------------
# Optimizer
# --------------------------------------------------------------------------------------------


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split parameters into a decayed and a non-decayed AdamW group.

    Decay only the weight matrices of linear layers (attention and MLP projections). Biases,
    LayerNorm gains and embedding tables are left alone, as in GPT-2-era practice (minGPT's
    ``configure_optimizers``; nanoGPT instead decays every tensor with ≥ 2 dimensions,
    embeddings included). Pulling a LayerNorm gain toward 0 or a bias toward 0 is not a useful
    prior, and an embedding row is only updated when its token appears, so decay would shrink
    rare tokens' rows for no reason. The LM head tied to the token embedding counts as an
    embedding.
    """
    no_decay_ids = set()
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            no_decay_ids.add(id(module.weight))
    decay, no_decay = [], []
    for _, p in model.named_parameters():  # shared (tied) tensors appear once
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and id(p) not in no_decay_ids else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def make_optimizer(model: nn.Module, config: TrainConfig, device: torch.device, master=None) -> torch.optim.AdamW:
    """AdamW (Loshchilov & Hutter 2017, arXiv:1711.05101), PyTorch's fused kernel on CUDA and CPU.

    With ``master`` (a ``llmnotes.train.bf16.MasterWeights``) it updates the float32 master copies,
    grouped exactly as the model's own parameters would be."""
    # fused: one pass over memory per tensor. On a CPU, GPT-2 small's update took 82-88 ms fused
    # against 425-841 ms for the default for-loop kernel (1 thread); the results agree to float
    # rounding (tests/test_train.py compares with the for-loop optimizer).
    extra = {"fused": True} if device.type in ("cuda", "cpu") else {}
    groups = param_groups(model, config.weight_decay)
    if master is not None:
        to_master = {id(p): m for p, m in zip(master.model_params, master.masters)}
        groups = [{**g, "params": [to_master[id(p)] for p in g["params"]]} for g in groups]
    return torch.optim.AdamW(groups, lr=config.lr,
                             betas=config.betas, eps=config.eps, **extra)


# --------------------------------------------------------------------------------------------
# Data: windows of tokens (llmnotes.data.TokenDataset), served in a seeded, resumable order
# --------------------------------------------------------------------------------------------


class EpochSampler:
    """Dataset indices in a fresh seeded permutation each epoch; ``(epoch, position)`` is state.

    ``take(k)`` returns the next ``k`` indices, wrapping into the next epoch when one runs out.
    Saving ``state_dict()`` in a checkpoint and loading it later continues the exact order.
    """

    def __init__(self, n: int, seed: int) -> None:
        if n <= 0:
            raise ValueError(f"cannot sample from an empty dataset (n={n})")
        self.n, self.seed, self.epoch, self.pos = n, seed, 0, 0
        self._perm, self._perm_epoch = None, -1

    def _permutation(self) -> torch.Tensor:
        if self._perm_epoch != self.epoch:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            self._perm, self._perm_epoch = torch.randperm(self.n, generator=g), self.epoch
        return self._perm

    def take(self, k: int) -> list[int]:
        out: list[int] = []
        while len(out) < k:
            perm = self._permutation()
            m = min(k - len(out), self.n - self.pos)
            out += perm[self.pos:self.pos + m].tolist()
            self.pos += m
            if self.pos == self.n:
                self.epoch, self.pos = self.epoch + 1, 0
        return out

    def state_dict(self) -> dict[str, int]:
        return {"n": self.n, "seed": self.seed, "epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state["n"] != self.n or state["seed"] != self.seed:
            raise ValueError(f"checkpoint's data order was for {state['n']} windows with seed "
                             f"{state['seed']}, this run has {self.n} windows with seed {self.seed}; "
                             "resume with the same data and seed")
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])


def as_dataset(data, block_size: int | None):
    """Accept a dataset of (x, y) pairs, or a 1-D token array/tensor (made into windows)."""
    if hasattr(data, "__getitem__") and hasattr(data, "__len__") and not hasattr(data, "ndim"):
        return data
    if getattr(data, "ndim", None) == 1:
        if block_size is None:
            raise ValueError("a 1-D token array needs the model's block_size to cut windows")
        from llmnotes.data import TokenDataset

        return TokenDataset(data, block_size)  # non-overlapping windows, y = x shifted by one
    raise TypeError("data must be a dataset of (x, y) pairs or a 1-D array of token ids, "
                    f"got {type(data).__name__}")


def collate(dataset, indices: Sequence[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*(dataset[i] for i in indices))
    x, y = torch.stack(xs), torch.stack(ys)  # (B, T) each
    if device.type == "cuda":  # pinned memory lets the copy overlap with compute
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


# --------------------------------------------------------------------------------------------
# Distributed set-up (torchrun sets RANK, LOCAL_RANK and WORLD_SIZE)
# --------------------------------------------------------------------------------------------


def dist_info() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment; (0, 0, 1) without it."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
            int(os.environ.get("WORLD_SIZE", 1)))


def init_distributed(device: torch.device) -> None:
    """Join the process group torchrun prepared: NCCL between GPUs, Gloo between CPU processes."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint was left untouched."""


# --------------------------------------------------------------------------------------------
# The Trainer
# --------------------------------------------------------------------------------------------


class Trainer:
    """Train a language model: ``Trainer(model, train_data, val_data, config).fit()``.

    Args:
        model: any ``nn.Module`` mapping token ids (B, T) to logits (B, T, vocab).
        train_data: a dataset of ``(x, y)`` LongTensor pairs of shape (T,), or a 1-D array of
            token ids (cut into non-overlapping windows of the model's ``block_size``).
        val_data: the same for validation, or ``None`` to skip evaluation.
        config: a ``TrainConfig``.

    Attributes:
        step: optimizer steps taken so far.
        history: list of metric records (dicts), also appended to ``out_dir/metrics.jsonl``.
    """

    def __init__(self, model: nn.Module, train_data, val_data=None, config: TrainConfig | None = None) -> None:
        config = TrainConfig() if config is None else config
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.config = config
        self.rank, self.local_rank, self.world_size = dist_info()
        self.distributed = self.world_size > 1
        self.is_main = self.rank == 0

        device = pick_device(config.device)
        if self.distributed and device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        self.device = device
        if config.dtype == "fp16" and device.type not in ("cuda", "cpu"):
            raise ValueError(f"dtype='fp16' needs a CUDA (or CPU) device, got {device}; use 'bf16'")
        if config.dtype == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError("dtype='bf16' is not supported on this GPU; use dtype='fp16'")
        self.amp_dtype = DTYPES.get(config.dtype, torch.float32)  # no autocast for auto / bf16-master

        block_size = getattr(getattr(model, "config", None), "block_size", None)
        self.train_data = as_dataset(train_data, block_size)
        self.val_data = None if val_data is None else as_dataset(val_data, block_size)
        per_step = config.batch_size * config.grad_accum_steps * self.world_size
        if len(self.train_data) < per_step:
            raise ValueError(
                f"train_data has {len(self.train_data)} windows but one optimizer step needs "
                f"batch_size*grad_accum_steps*world_size = {per_step}; use more data or a smaller batch_size")
        if self.val_data is not None and len(self.val_data) < config.batch_size * self.world_size:
            raise ValueError(f"val_data has {len(self.val_data)} windows, fewer than one batch "
                             f"({config.batch_size * self.world_size}); use more data or a smaller batch_size")

        self.out_dir = None if config.out_dir is None else Path(config.out_dir)
        if self.out_dir is not None and self.is_main:
            ckpt.check_writable(self.out_dir)
            self._lock = ckpt.claim(self.out_dir)  # also removes temp folders of killed saves
            if not config.resume and ckpt.latest_checkpoint(self.out_dir) is not None:
                raise ValueError(f"out_dir {str(self.out_dir)!r} already holds a checkpoint; pass "
                                 "resume=True (--resume) to continue it, or choose another out_dir")

        seed_everything(config.seed)
        if self.distributed:
            init_distributed(device)
        self.raw_model = model.to(device)
        self.precision, self.precision_reason = self._choose_precision()
        self.master = None
        if self.precision == "bf16-master":
            from llmnotes.train.bf16 import MasterWeights

            self.master = MasterWeights(self.raw_model)
            impl, why = self.master.choose_attention(collate(self.train_data, [0], device)[0])
            if impl is not None and self.is_main and config.progress:
                print(f"Trainer: bf16 attention -> {'explicit' if impl == 'manual' else 'fused'} ({why})",
                      flush=True)
        self.model = self._wrap(self.raw_model)
        self.optimizer = make_optimizer(self.model, config, device, self.master)
        self.scheduler = _schedule(config.lr, config.min_lr, config.warmup_steps,
                                   config.lr_decay_steps).lambda_lr(self.optimizer)
        self.scaler = torch.amp.GradScaler(device.type, enabled=config.dtype == "fp16")
        self.sampler = EpochSampler(len(self.train_data), config.seed)
        self.step = 0
        self.tokens_seen = 0
        self.history: list[dict[str, Any]] = []
        if config.resume:
            self.load_checkpoint()

    def _choose_precision(self) -> tuple[str, str]:
        """Resolve ``config.dtype`` to the precision this run uses, and why (printed once)."""
        c = self.config
        if c.dtype != "auto":
            if c.dtype == "bf16-master" and (self.distributed or self.device.type != "cpu"):
                raise ValueError("dtype='bf16-master' runs on one CPU process; on GPUs or under "
                                 "torchrun use dtype='bf16' (autocast)")
            return c.dtype, "set in TrainConfig.dtype"
        if self.distributed or self.device.type != "cpu":
            return "fp32", "auto: fp32 (bf16 master weights are chosen on a single CPU process only)"
        from llmnotes.train.bf16 import choose_precision

        x, _ = collate(self.train_data, [0], self.device)
        precision, why = choose_precision(self.raw_model, x)
        if self.is_main and "measured" in why:  # a real choice was made: say so (small models stay quiet)
            print(f"Trainer: dtype auto -> {precision} ({why})", flush=True)
        return precision, f"auto: {why}"

    def _wrap(self, model: nn.Module) -> nn.Module:
        if self.distributed and self.config.fsdp:
            from torch.distributed.fsdp import fully_shard

            for block in getattr(getattr(model, "transformer", None), "h", []):
                fully_shard(block)  # shard each block's parameters across ranks (ZeRO-3 style)
            fully_shard(model)
        elif self.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            model = DDP(model, device_ids=ids)
        if self.config.compile:
            model = torch.compile(model)
        return model

    # ---- one step ------------------------------------------------------------------------

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.amp_dtype):
            logits = self.model(x)  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), ignore_index=-100)
        aux = getattr(self.raw_model, "aux_loss", None)  # mixture-of-experts load balancing
        return loss + aux() if callable(aux) and self.model.training else loss  # not in val loss

    def _micro_indices(self) -> list[list[int]]:
        """This rank's micro-batches for one step, cut from the global batch all ranks share."""
        c = self.config
        idx = self.sampler.take(c.batch_size * c.grad_accum_steps * self.world_size)
        # micro-batch m of rank r = slice (m * world + r): one process with grad_accum_steps
        # multiplied by world_size would see exactly the same examples in the same step.
        return [idx[(m * self.world_size + self.rank) * c.batch_size:][:c.batch_size]
                for m in range(c.grad_accum_steps)]

    def train_step(self) -> float:
        """One optimizer step; returns its loss (mean over the step's micro-batches and ranks)."""
        c, model = self.config, self.model
        model.train()
        if self.master is not None:
            self.master.to_bf16()  # no-op unless fit() handed the float32 weights back
        total = torch.zeros((), device=self.device)
        micro = self._micro_indices()
        for m, indices in enumerate(micro):
            x, y = collate(self.train_data, indices, self.device)
            last = m == len(micro) - 1
            # DDP all-reduces gradients on every backward; skip it until the last micro-batch.
            sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
            with sync:
                loss = self._loss(x, y) / c.grad_accum_steps  # mean over the whole step
                self.scaler.scale(loss).backward()
            total += loss.detach()
            self.tokens_seen += x.numel() * self.world_size
        if self.distributed:
            import torch.distributed as dist

            dist.all_reduce(total, op=dist.ReduceOp.AVG if self.device.type == "cuda" else dist.ReduceOp.SUM)
            if self.device.type != "cuda":  # Gloo has no AVG
                total /= self.world_size
        loss_value = total.item()
        if not math.isfinite(loss_value):
            self.optimizer.zero_grad(set_to_none=True)
            raise TrainingDiverged(
                f"loss is {loss_value} at step {self.step}; stopped before updating the weights. "
                "The last checkpoint (if any) is untouched. Lower lr, raise warmup_steps, or use "
                "dtype='bf16' instead of 'fp16'")
        if self.master is not None:
            self.master.grads_to_masters()  # the optimizer updates the float32 masters
        if c.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
            params = self.model.parameters() if self.master is None else self.master.masters
            torch.nn.utils.clip_grad_norm_(params, c.grad_clip)
        self.scaler.step(self.optimizer)
        if self.master is not None:
            self.master.masters_to_model()
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1
        return loss_value

    @torch.no_grad()
    def evaluate(self, steps: int | None = None) -> float:
        """Mean validation loss over ``steps`` micro-batches (the same windows every call)."""
        if self.val_data is None:
            raise ValueError("evaluate() needs val_data; pass it to Trainer(...)")
        steps = self.config.eval_steps if steps is None else steps
        b = self.config.batch_size
        n = len(self.val_data)
        # a fixed spread of windows, so successive evaluations are comparable
        order = torch.randperm(n, generator=torch.Generator().manual_seed(0)).tolist()
        self.model.eval()
        total = torch.zeros(2, device=self.device, dtype=torch.float64)  # (sum of losses, count)
        for s in range(steps):
            start = ((s * self.world_size + self.rank) * b) % n
            indices = [order[(start + j) % n] for j in range(b)]
            x, y = collate(self.val_data, indices, self.device)
            total += torch.stack([self._loss(x, y).double(), torch.ones((), device=self.device, dtype=torch.float64)])
        if self.distributed:
            import torch.distributed as dist

            dist.all_reduce(total)
        self.model.train()
        return (total[0] / total[1]).item()

    # ---- the loop ------------------------------------------------------------------------

    def _record(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if self.out_dir is not None and self.is_main:
            with open(self.out_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def fit(self) -> list[dict[str, Any]]:
        """Train until ``max_steps``; returns the history of metric records."""
        c = self.config
        bar = None
        if c.progress and self.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=c.max_steps, initial=self.step, desc="train", dynamic_ncols=True)
        t0, tokens0 = time.perf_counter(), self.tokens_seen
        try:
            while self.step < c.max_steps:
                lr = self.optimizer.param_groups[0]["lr"]
                loss = self.train_step()
                if self.step % c.log_interval == 0 or self.step == c.max_steps:
                    dt = time.perf_counter() - t0
                    tps = (self.tokens_seen - tokens0) / dt if dt > 0 else float("nan")
                    self._record({"step": self.step, "loss": loss, "lr": lr,
                                  "tokens": self.tokens_seen, "tok_per_s": tps})
                    if bar is not None:
                        bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tps:,.0f}")
                if self.val_data is not None and (
                        (c.eval_interval and self.step % c.eval_interval == 0) or self.step == c.max_steps):
                    val = self.evaluate()
                    self._record({"step": self.step, "val_loss": val, "val_ppl": math.exp(min(val, 50.0))})
                if self.out_dir is not None and (
                        (c.save_interval and self.step % c.save_interval == 0) or self.step == c.max_steps):
                    self.save_checkpoint()
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
            if self.master is not None:
                self.master.to_float()  # the model leaves fit() with its float32 (master) weights
        return self.history

    # ---- checkpoints ---------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything except the weights, as tensors and plain containers (weights_only-safe)."""
        return {
            "step": self.step,
            "tokens_seen": self.tokens_seen,
            "optimizer": ckpt.optimizer_state(self.model, self.optimizer, self.config.fsdp and self.distributed),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": ckpt.rng_state(),
            "train_config": self.config.to_dict(),
            **({"bf16_attention": self.master.attention_impl} if self.master is not None else {}),
        }

    def save_checkpoint(self) -> Path | None:
        """Write ``out_dir/checkpoints/step-NNNNNNN/`` atomically; returns its path (rank 0)."""
        if self.out_dir is None:
            raise ValueError("save_checkpoint() needs TrainConfig.out_dir")
        fsdp = self.config.fsdp and self.distributed
        weights = ckpt.model_state(self.model, self.raw_model, fsdp)  # collective under FSDP
        if self.master is not None:  # store the float32 masters, not their bf16 roundings
            weights = {**weights, **self.master.state_dict()}
        state = self.state()
        path = None
        if self.is_main:
            path = ckpt.save(self.out_dir, self.step, weights, state, keep=self.config.keep_checkpoints)
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()
        return path

    def load_checkpoint(self, path: str | os.PathLike | None = None) -> None:
        """Restore weights, optimizer, schedule, data order and RNG states from a checkpoint."""
        path = ckpt.latest_checkpoint(self.out_dir) if path is None else Path(path)
        if path is None:
            raise ValueError(f"resume=True but {str(self.out_dir)!r} holds no checkpoint; "
                             "drop --resume to start a new run")
        weights, state = ckpt.load(path)
        ckpt.check_weights_fit(self.raw_model, weights, path)
        fsdp = self.config.fsdp and self.distributed
        ckpt.load_model_state(self.model, self.raw_model, weights, fsdp)
        if self.master is not None:
            self.master.load_state_dict(weights)
            if "bf16_attention" in state:  # continue on the kernel the run started with
                self.master.use_attention(state["bf16_attention"], "as the checkpoint's run")
        ckpt.load_optimizer_state(self.model, self.optimizer, state["optimizer"], fsdp)
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.sampler.load_state_dict(state["sampler"])
        ckpt.set_rng_state(state["rng"])
        self.step, self.tokens_seen = int(state["step"]), int(state["tokens_seen"])
        if self.out_dir is not None and self.is_main:
            ckpt.truncate_metrics(self.out_dir / "metrics.jsonl", self.step)
        self.history = []


# --------------------------------------------------------------------------------------------
# Plotting
# --------------------------------------------------------------------------------------------


def plot_history(history: Sequence[dict[str, Any]], ax=None, title: str | None = None):
    """Training (and validation) loss against step; returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
    else:
        fig = ax.figure
    train = [(r["step"], r["loss"]) for r in history if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in history if "val_loss" in r]
    if not train and not val:
        raise ValueError("history holds no 'loss' or 'val_loss' records; run Trainer.fit() first")
    if train:
        ax.plot(*zip(*train), label="train loss", lw=1.2)
    if val:
        ax.plot(*zip(*val), "o-", label="val loss", ms=4)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats/token)")
    if title:
        ax.set_title(title)
    ax.legend()
    return fig
