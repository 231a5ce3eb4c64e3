"""Learning-rate schedules from scratch: step decay, linear warmup + cosine decay, one-cycle.

Each schedule is a small frozen dataclass with

* ``lr_at(step)``: the learning rate at optimizer step ``step`` (0-based), a pure function;
* ``multiplier(step)``: ``lr_at(step) / peak``, the factor ``torch.optim.lr_scheduler.LambdaLR``
  expects as its ``lr_lambda``;
* ``lambda_lr(optimizer)``: a ready ``LambdaLR`` driving a torch optimizer (built with
  ``lr=peak``) along the same curve.

Usage in a loop (the scheduler is stepped *after* the optimizer, as PyTorch expects)::

    sched = WarmupCosine(max_lr=6e-4, warmup_steps=100, total_steps=5000, min_lr=6e-5)
    opt = torch.optim.AdamW(model.parameters(), lr=sched.max_lr)
    lr_sched = sched.lambda_lr(opt)
    for step in range(sched.total_steps):
        ...; opt.step(); lr_sched.step()

tests/test_schedules.py checks them against ``torch.optim.lr_scheduler.StepLR``, ``LinearLR`` +
``CosineAnnealingLR``, ``OneCycleLR`` and Hugging Face's cosine-with-warmup schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

import torch

__all__ = ["StepDecay", "WarmupCosine", "OneCycle", "cosine_anneal"]


def _check_step(step) -> int:
    if isinstance(step, bool) or not isinstance(step, Integral):
        raise TypeError(f"step must be an int, got {step!r} ({type(step).__name__})")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}; steps count from 0")
    return int(step)


def _positive(name: str, value, *, integer: bool = False, allow_zero: bool = False) -> None:
    kind = Integral if integer else Real
    if isinstance(value, bool) or not isinstance(value, kind):
        want = "an int" if integer else "a real number"
        raise TypeError(f"{name} must be {want}, got {value!r} ({type(value).__name__})")
    if math.isnan(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value}")


def cosine_anneal(start: float, end: float, pct: float) -> float:
    """Half a cosine from ``start`` (pct=0) to ``end`` (pct=1): flat at both ends, steep mid-way."""
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)


class _Schedule:
    """``multiplier`` and ``lambda_lr`` for any schedule with ``lr_at`` and a ``peak``."""

    peak: float

    def lr_at(self, step: int) -> float:  # pragma: no cover - overridden
        raise NotImplementedError

    def multiplier(self, step: int) -> float:
        """``lr_at(step) / peak``: LambdaLR multiplies each group's initial lr by this."""
        return self.lr_at(step) / self.peak

    def lambda_lr(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
        """A ``LambdaLR`` on ``optimizer`` following this schedule.

        The optimizer's groups should start at ``lr=peak`` (a group built with another lr follows
        the same *shape*, scaled). Constructing it sets the lr of step 0 immediately.
        """
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        # The schedule itself is the lambda (not a bound method), so LambdaLR.state_dict() saves
        # its fields and a resumed run restores them.
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=self)

    def __call__(self, step: int) -> float:
        """``multiplier(step)``: a schedule is the ``lr_lambda`` of its ``LambdaLR``."""
        return self.multiplier(step)

    def curve(self, steps: int) -> list[float]:
        """``[lr_at(0), ..., lr_at(steps - 1)]``, for plotting."""
        return [self.lr_at(s) for s in range(steps)]


@dataclass(frozen=True)
class StepDecay(_Schedule):
    """Multiply the lr by ``gamma`` every ``step_size`` steps: ``base_lr * gamma ** (step // step_size)``.

    Identical to ``torch.optim.lr_scheduler.StepLR(opt, step_size, gamma)``.
    """

    base_lr: float
    step_size: int
    gamma: float = 0.1

    def __post_init__(self):
        _positive("base_lr", self.base_lr)
        _positive("step_size", self.step_size, integer=True)
        _positive("gamma", self.gamma)

    @property
    def peak(self) -> float:
        return self.base_lr

    def lr_at(self, step: int) -> float:
        return self.base_lr * self.gamma ** (_check_step(step) // self.step_size)


@dataclass(frozen=True)
class WarmupCosine(_Schedule):
    r"""Linear warmup from 0 to ``max_lr``, then half a cosine down to ``min_lr``.

    $$\eta(s) = \begin{cases}
      \eta_{\max}\, s / W & s < W \\
      \eta_{\min} + \tfrac12(\eta_{\max}-\eta_{\min})\bigl(1 + \cos(\pi p)\bigr),\;
      p = \frac{s - W}{S - W} & W \le s \le S \\
      \eta_{\min} & s > S
    \end{cases}$$

    with $W$ = ``warmup_steps`` and $S$ = ``total_steps``. Step 0 has lr 0 and step $W$ reaches
    the peak: the convention of Hugging Face's ``get_cosine_with_min_lr_schedule_with_warmup``,
    which this equals for ``s <= S`` (past $S$ Hugging Face's cosine climbs again; this one
    stays at ``min_lr``). The warmup keeps Adam's first updates, made with noisy second-moment
    estimates, small; the cosine spends most steps at a high lr and anneals gently at the end.

    With ``start_above_zero=True`` the warmup is shifted by one step, as in nanoGPT and
    ``llmnotes.train.Trainer``: step 0 already has ``max_lr / W`` and step ``W - 1`` the peak, so
    no optimizer step is spent at lr 0; the cosine is unchanged.

    Args:
        max_lr: peak learning rate (> 0).
        warmup_steps: steps of linear warmup (>= 0; 0 = start at the peak).
        total_steps: step at which the decay reaches ``min_lr`` (> ``warmup_steps``; with
            ``start_above_zero``, >= ``warmup_steps``, the peak being reached a step earlier).
        min_lr: floor, in [0, max_lr]; GPT-3 and nanoGPT use max_lr / 10.
        start_above_zero: the warmup's first step has ``max_lr / W`` instead of 0.
    """

    max_lr: float
    warmup_steps: int
    total_steps: int
    min_lr: float = 0.0
    start_above_zero: bool = False

    def __post_init__(self):
        _positive("max_lr", self.max_lr)
        _positive("warmup_steps", self.warmup_steps, integer=True, allow_zero=True)
        _positive("total_steps", self.total_steps, integer=True, allow_zero=self.start_above_zero)
        if not isinstance(self.start_above_zero, bool):
            raise TypeError(f"start_above_zero must be a bool, got {self.start_above_zero!r}")
        if self.total_steps < self.warmup_steps or (self.total_steps == self.warmup_steps and not self.start_above_zero):
            bound = ">=" if self.start_above_zero else ">"
            raise ValueError(f"total_steps must be {bound} warmup_steps, got total_steps={self.total_steps}, "
                             f"warmup_steps={self.warmup_steps}; lengthen the run or shorten the warmup")
        _positive("min_lr", self.min_lr, allow_zero=True)
        if self.min_lr > self.max_lr:
            raise ValueError(f"min_lr must be <= max_lr, got min_lr={self.min_lr}, max_lr={self.max_lr}")

    @property
    def peak(self) -> float:
        return self.max_lr

    def lr_at(self, step: int) -> float:
        step = _check_step(step)
        if step < self.warmup_steps:
            return self.max_lr * (step + self.start_above_zero) / self.warmup_steps
        if step >= self.total_steps:
            return self.min_lr
        pct = (step - self.warmup_steps) / (self.total_steps - self.warmup_steps)
        return cosine_anneal(self.max_lr, self.min_lr, pct)


@dataclass(frozen=True)
class OneCycle(_Schedule):
    """Smith & Topin's one-cycle policy (2017, arXiv:1708.07120), as ``torch``'s ``OneCycleLR``.

    Two cosine phases: from ``max_lr / div_factor`` up to ``max_lr`` over the first
    ``pct_start * total_steps - 1`` steps, then down to ``max_lr / div_factor / final_div_factor``
    at step ``total_steps - 1``. Momentum moves the opposite way (high when the lr is low),
    between ``max_momentum`` and ``base_momentum``: see :meth:`momentum_at`.

    Equal to ``OneCycleLR(opt, max_lr, total_steps, pct_start, anneal_strategy="cos",
    div_factor, final_div_factor, three_phase=False)`` for steps ``0 .. total_steps - 1``.
    Differences: ``OneCycleLR`` also accepts ``total_steps`` itself (where its cosine has already
    turned back up) and raises after it, while this stays at the final lr; its ``three_phase``
    and ``anneal_strategy="linear"`` variants are not implemented here.
    """

    max_lr: float
    total_steps: int
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    base_momentum: float = 0.85
    max_momentum: float = 0.95

    def __post_init__(self):
        _positive("max_lr", self.max_lr)
        _positive("total_steps", self.total_steps, integer=True)
        _positive("pct_start", self.pct_start)
        if self.pct_start >= 1:
            raise ValueError(f"pct_start must be in (0, 1), got {self.pct_start}")
        _positive("div_factor", self.div_factor)
        _positive("final_div_factor", self.final_div_factor)
        _positive("base_momentum", self.base_momentum, allow_zero=True)
        _positive("max_momentum", self.max_momentum, allow_zero=True)
        if self.base_momentum > self.max_momentum:
            raise ValueError(f"base_momentum must be <= max_momentum, got {self.base_momentum} > "
                             f"{self.max_momentum}")
        if self.pct_start * self.total_steps - 1 <= 0:
            raise ValueError(f"pct_start * total_steps must be > 1 so the warmup phase has a step, got "
                             f"{self.pct_start} * {self.total_steps}; raise total_steps or pct_start")

    @property
    def peak(self) -> float:
        return self.max_lr

    @property
    def initial_lr(self) -> float:
        return self.max_lr / self.div_factor

    @property
    def final_lr(self) -> float:
        return self.initial_lr / self.final_div_factor

    def _phase(self, step: int) -> tuple[int, float]:
        """(phase index, fraction of that phase done) at ``step``; torch's phase boundaries."""
        step = _check_step(step)
        up_end = self.pct_start * self.total_steps - 1  # a float, as in OneCycleLR
        down_end = self.total_steps - 1
        if step <= up_end:
            return 0, step / up_end
        return 1, min(1.0, (step - up_end) / (down_end - up_end))

    def lr_at(self, step: int) -> float:
        phase, pct = self._phase(step)
        if phase == 0:
            return cosine_anneal(self.initial_lr, self.max_lr, pct)
        return cosine_anneal(self.max_lr, self.final_lr, pct)

    def momentum_at(self, step: int) -> float:
        """Momentum (or Adam's beta1) at ``step``: falls while the lr rises, and back."""
        phase, pct = self._phase(step)
        if phase == 0:
            return cosine_anneal(self.max_momentum, self.base_momentum, pct)
        return cosine_anneal(self.base_momentum, self.max_momentum, pct)
