"""Optimizers from scratch: SGD (+ momentum, Nesterov), RMSprop, Adam and AdamW.

Each class is a ``torch.optim.Optimizer`` subclass built like its ``torch.optim`` namesake
(``SGD(params, lr=..., momentum=...)``) and produces the same parameters step for step:
tests/test_optim.py checks 1e-6 agreement over many configurations, and bit-identical training
against torch's single-tensor (``foreach=False``) path, whose tensor operations are mirrored in
the same order. They are written for reading, one parameter at a time, with the update rule in
the docstring; ``torch.optim`` adds fused and multi-tensor fast paths (benchmarks/optim.py),
sparse gradients, ``maximize``, ``capturable``, complex numbers and more, which are left out.

Smallest idea first:

* ``SGD``      step against the gradient; momentum keeps a running velocity.
* ``RMSprop``  divides the step by a running root-mean-square of the gradient (per coordinate).
* ``Adam``     momentum + RMSprop, both bias-corrected; weight decay added to the gradient (L2).
* ``AdamW``    Adam with weight decay applied to the weights directly (decoupled).

Learning-rate schedules live in :mod:`llmnotes.schedules` and are re-exported here.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Callable, Iterable

import torch

from llmnotes.schedules import OneCycle, StepDecay, WarmupCosine

__all__ = ["SGD", "RMSprop", "Adam", "AdamW", "StepDecay", "WarmupCosine", "OneCycle"]

Params = Iterable[torch.Tensor] | Iterable[dict]


# --------------------------------------------------------------------------- validation
def _check_number(name: str, value, *, low: float = 0.0, high: float | None = None,
                  high_open: bool = False) -> None:
    """Raise a ValueError/TypeError naming ``name`` unless ``low <= value (<|<=) high``."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    if math.isnan(value) or value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}; pass a non-negative value")
    if high is not None and (value >= high if high_open else value > high):
        bracket = ")" if high_open else "]"
        raise ValueError(f"{name} must be in [{low}, {high}{bracket}, got {value}")


def _check_betas(betas) -> None:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}; e.g. betas=(0.9, 0.999)")
    for i, beta in enumerate(betas):
        _check_number(f"betas[{i}]", beta, high=1.0, high_open=True)


def _grad(p: torch.Tensor) -> torch.Tensor:
    if p.grad.is_sparse:
        raise RuntimeError("llmnotes.optim does not support sparse gradients; use torch.optim")
    return p.grad


class _ScratchOptimizer(torch.optim.Optimizer):
    """Shared ``step`` plumbing: closure, no-grad, skip parameters without a gradient."""

    def _update(self, p: torch.Tensor, grad: torch.Tensor, state: dict, group: dict) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None):
        """Perform one update of every parameter that has a ``.grad``.

        Args:
            closure: optional callable that re-evaluates the model and returns the loss
                (needed only by optimizers such as L-BFGS; accepted for API compatibility).

        Returns:
            The closure's loss, or ``None``.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue  # a frozen or unused parameter: torch.optim skips it too
                self._update(p, _grad(p), self.state[p], group)
        return loss


# --------------------------------------------------------------------------- SGD
class SGD(_ScratchOptimizer):
    r"""Stochastic gradient descent with optional momentum, Nesterov momentum and L2 decay.

    Per parameter $\theta$ with gradient $g$ (same conventions as ``torch.optim.SGD``):

    $$g \leftarrow g + \lambda\theta, \qquad
      b \leftarrow \mu b + (1-\tau) g \;(\text{first step: } b = g), \qquad
      d = g + \mu b \;(\text{Nesterov}) \text{ or } b, \qquad
      \theta \leftarrow \theta - \eta d$$

    Args:
        params: an iterable of tensors or of param-group dicts.
        lr: learning rate $\eta \ge 0$.
        momentum: $\mu \ge 0$ (0 = plain SGD).
        dampening: $\tau$, scales the new gradient inside the velocity (0 = none).
        weight_decay: $\lambda \ge 0$, L2 penalty added to the gradient.
        nesterov: look ahead along the velocity (needs ``momentum > 0`` and ``dampening == 0``).
    """

    def __init__(self, params: Params, lr: float = 1e-3, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False):
        _check_number("lr", lr)
        _check_number("momentum", momentum)
        _check_number("dampening", dampening)
        _check_number("weight_decay", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(f"nesterov=True needs momentum > 0 and dampening == 0, got "
                             f"momentum={momentum}, dampening={dampening}; set momentum=0.9, dampening=0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _update(self, p, grad, state, group):
        d = grad
        if group["weight_decay"] != 0:
            d = d.add(p, alpha=group["weight_decay"])  # L2: the gradient of (wd/2)*||p||^2
        mu = group["momentum"]
        if mu != 0:
            if "momentum_buffer" not in state:
                buf = state["momentum_buffer"] = d.clone()  # start the velocity at the gradient
            else:
                buf = state["momentum_buffer"]
                buf.mul_(mu).add_(d, alpha=1 - group["dampening"])
            d = d.add(buf, alpha=mu) if group["nesterov"] else buf
        p.add_(d, alpha=-group["lr"])


# --------------------------------------------------------------------------- RMSprop
class RMSprop(_ScratchOptimizer):
    r"""RMSprop (Hinton, Coursera lecture 6e, 2012): per-coordinate steps scaled by 1/RMS(grad).

    $$v \leftarrow \alpha v + (1-\alpha) g^2, \qquad
      \theta \leftarrow \theta - \eta\, \frac{g}{\sqrt{v} + \epsilon}$$

    ``centered=True`` divides by the running *standard deviation* instead
    ($\sqrt{v - \bar g^2}$, with $\bar g$ the running mean of $g$); ``momentum > 0`` accumulates
    the scaled step in a buffer first. Same conventions and defaults as ``torch.optim.RMSprop``.

    Args:
        params: an iterable of tensors or of param-group dicts.
        lr: learning rate $\eta \ge 0$.
        alpha: smoothing constant of the squared-gradient average, in [0, 1).
        eps: $\epsilon \ge 0$, added to the denominator for numerical stability.
        weight_decay: L2 penalty added to the gradient.
        momentum: momentum factor (0 = none).
        centered: normalise by the gradient's running variance instead of its second moment.
    """

    def __init__(self, params: Params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False):
        _check_number("lr", lr)
        _check_number("alpha", alpha, high=1.0, high_open=True)
        _check_number("eps", eps)
        _check_number("weight_decay", weight_decay)
        _check_number("momentum", momentum)
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered))

    def _update(self, p, grad, state, group):
        if not state:
            state["step"] = 0
            state["square_avg"] = torch.zeros_like(p)
            if group["momentum"] > 0:
                state["momentum_buffer"] = torch.zeros_like(p)
            if group["centered"]:
                state["grad_avg"] = torch.zeros_like(p)
        state["step"] += 1
        if group["weight_decay"] != 0:
            grad = grad.add(p, alpha=group["weight_decay"])
        alpha = group["alpha"]
        v = state["square_avg"]
        v.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)  # running mean of g^2
        if group["centered"]:
            m = state["grad_avg"]
            m.lerp_(grad, 1 - alpha)  # running mean of g
            denom = v.addcmul(m, m, value=-1).sqrt_().add_(group["eps"])  # running std of g
        else:
            denom = v.sqrt().add_(group["eps"])
        if group["momentum"] > 0:
            buf = state["momentum_buffer"]
            buf.mul_(group["momentum"]).addcdiv_(grad, denom)
            p.add_(buf, alpha=-group["lr"])
        else:
            p.addcdiv_(grad, denom, value=-group["lr"])


# --------------------------------------------------------------------------- Adam / AdamW
class Adam(_ScratchOptimizer):
    r"""Adam (Kingma & Ba, 2015, arXiv:1412.6980) with *coupled* L2 weight decay.

    With step count $t$ (from 1) and gradient $g$ (plus $\lambda\theta$ when ``weight_decay > 0``,
    exactly as ``torch.optim.Adam``):

    $$m \leftarrow \beta_1 m + (1-\beta_1) g, \qquad v \leftarrow \beta_2 v + (1-\beta_2) g^2$$
    $$\hat m = \frac{m}{1-\beta_1^t}, \qquad \hat v = \frac{v}{1-\beta_2^t}, \qquad
      \theta \leftarrow \theta - \eta\,\frac{\hat m}{\sqrt{\hat v} + \epsilon}$$

    The bias corrections undo the zero initialisation of $m$ and $v$: without them the first
    steps would be too small by a factor $1-\beta_1^t$. ``amsgrad=True`` (Reddi et al., 2018)
    divides by the running maximum of $\hat v$ instead.

    Args:
        params: an iterable of tensors or of param-group dicts.
        lr: learning rate $\eta \ge 0$.
        betas: $(\beta_1, \beta_2)$, each in [0, 1).
        eps: $\epsilon \ge 0$.
        weight_decay: $\lambda \ge 0$, added to the gradient (so it is rescaled by $1/\sqrt{\hat v}$
            like the rest of the gradient; AdamW avoids that).
        amsgrad: use the running maximum of the second moment.
    """

    _decoupled = False

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False):
        _check_number("lr", lr)
        _check_betas(betas)
        _check_number("eps", eps)
        _check_number("weight_decay", weight_decay)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad))

    def _update(self, p, grad, state, group):
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)     # m: first moment
            state["exp_avg_sq"] = torch.zeros_like(p)  # v: second moment
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = torch.zeros_like(p)
        state["step"] += 1
        t = state["step"]
        lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]

        if wd != 0:
            if self._decoupled:
                p.mul_(1 - lr * wd)  # AdamW: shrink the weights, outside the adaptive scaling
            else:
                grad = grad.add(p, alpha=wd)  # Adam: L2 term joins the gradient

        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(grad, 1 - beta1)  # m = beta1*m + (1-beta1)*g
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        if group["amsgrad"]:
            v = torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])

        bias_correction1 = 1 - beta1**t
        bias_correction2 = 1 - beta2**t
        # theta -= lr * m_hat / (sqrt(v_hat) + eps), arranged as torch does to round the same way
        denom = (v.sqrt() / bias_correction2**0.5).add_(group["eps"])
        p.addcdiv_(m, denom, value=-lr / bias_correction1)


class AdamW(Adam):
    r"""AdamW (Loshchilov & Hutter, 2019, arXiv:1711.05101): Adam with *decoupled* weight decay.

    Before the Adam step the weights shrink by $\theta \leftarrow \theta(1 - \eta\lambda)$, and the
    gradient stays free of the decay term. Every weight then decays at the same relative rate,
    whereas Adam's L2 term is divided by $\sqrt{\hat v}$ and so barely touches weights with large
    gradients. Same arguments as :class:`Adam`; ``weight_decay`` defaults to 0.01 as in
    ``torch.optim.AdamW``.
    """

    _decoupled = True

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad)
