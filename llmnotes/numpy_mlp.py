"""Backpropagation by hand: a two-layer network in NumPy, with a finite-difference check.

The network is ``logits = act(X W1 + b1) W2 + b2`` trained with softmax cross-entropy. Its
forward pass keeps what the backward pass needs (a *cache*); the backward pass applies the
chain rule one layer at a time, from the loss back to ``W1``; ``step`` does gradient descent.

Smallest pieces first: toy datasets (``make_moons``, ``make_spirals``) -> ``NumpyMLP``
(forward / backward / step) -> ``numerical_grad`` and ``grad_check`` (central differences)
-> ``train``. ``tests/test_numpy_mlp.py`` compares the gradients with finite differences and
with ``torch.autograd``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from llmnotes.probability import log_softmax, softmax

# ----------------------------------------------------------------------------------------------
# toy data


def make_moons(n: int = 200, noise: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved half circles, ``X (n, 2)`` float and ``y (n,)`` in {0, 1}.

    Not linearly separable, so a model needs a hidden layer to classify it.
    """
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    rng = np.random.default_rng(seed)
    n0 = n // 2
    t0 = np.linspace(0, np.pi, n0)
    t1 = np.linspace(0, np.pi, n - n0)
    upper = np.stack([np.cos(t0), np.sin(t0)], axis=1)
    lower = np.stack([1 - np.cos(t1), 0.5 - np.sin(t1)], axis=1)
    X = np.concatenate([upper, lower]) + noise * rng.standard_normal((n, 2))
    y = np.concatenate([np.zeros(n0, dtype=np.int64), np.ones(n - n0, dtype=np.int64)])
    perm = rng.permutation(n)
    return X[perm], y[perm]


def make_spirals(n_per_class: int = 100, n_classes: int = 3, noise: float = 0.2,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n_classes`` interleaved spiral arms: ``X (n_per_class * n_classes, 2)``, ``y`` class ids."""
    if n_per_class < 1 or n_classes < 2:
        raise ValueError(f"need n_per_class >= 1 and n_classes >= 2, got {n_per_class} and {n_classes}")
    rng = np.random.default_rng(seed)
    Xs, ys = [], []
    for c in range(n_classes):
        r = np.linspace(0.05, 1.0, n_per_class)
        theta = np.linspace(c * 2 * np.pi / n_classes, c * 2 * np.pi / n_classes + 4.0, n_per_class)
        theta = theta + noise * rng.standard_normal(n_per_class)
        Xs.append(np.stack([r * np.sin(theta), r * np.cos(theta)], axis=1))
        ys.append(np.full(n_per_class, c, dtype=np.int64))
    return np.concatenate(Xs), np.concatenate(ys)


# ----------------------------------------------------------------------------------------------
# the network


@dataclass
class MLPConfig:
    n_in: int
    n_hidden: int
    n_out: int
    activation: str = "tanh"  # or "relu"

    def __post_init__(self) -> None:
        for name in ("n_in", "n_hidden", "n_out"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.activation not in ("tanh", "relu"):
            raise ValueError(f"activation must be 'tanh' or 'relu', got {self.activation!r}")


class NumpyMLP:
    """Two-layer classifier with hand-written backward pass.

    Parameters live in ``self.params``: ``W1 (n_in, n_hidden)``, ``b1 (n_hidden,)``,
    ``W2 (n_hidden, n_out)``, ``b2 (n_out,)``. Rows of ``X`` are examples (``x @ W + b``,
    the PyTorch convention is ``x @ W.T + b`` with ``W`` stored transposed).
    """

    def __init__(self, config: MLPConfig, seed: int = 0):
        self.config = config
        rng = np.random.default_rng(seed)
        c = config
        # scale 1/sqrt(fan_in) keeps the pre-activations of order 1 at the start
        self.params = {
            "W1": rng.standard_normal((c.n_in, c.n_hidden)) / np.sqrt(c.n_in),
            "b1": np.zeros(c.n_hidden),
            "W2": rng.standard_normal((c.n_hidden, c.n_out)) / np.sqrt(c.n_hidden),
            "b2": np.zeros(c.n_out),
        }

    def _check_batch(self, X: np.ndarray, y: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.config.n_in:
            raise ValueError(f"X must have shape (N, {self.config.n_in}), got {X.shape}")
        if y is not None:
            y = np.asarray(y)
            if y.shape != (X.shape[0],) or not np.issubdtype(y.dtype, np.integer):
                raise ValueError(f"y must be integer class ids of shape ({X.shape[0]},), got {y.dtype} {y.shape}")
            if y.min() < 0 or y.max() >= self.config.n_out:
                raise ValueError(f"y must be class ids in [0, {self.config.n_out}), got {y.min()}..{y.max()}")
        return X, y

    def forward(self, X: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Return ``logits (N, n_out)`` and the cache the backward pass reads."""
        X, _ = self._check_batch(X)
        p = self.params
        Z1 = X @ p["W1"] + p["b1"]  # (N, H) pre-activations
        H = np.tanh(Z1) if self.config.activation == "tanh" else np.maximum(Z1, 0.0)  # (N, H)
        logits = H @ p["W2"] + p["b2"]  # (N, C)
        return logits, {"X": X, "Z1": Z1, "H": H, "logits": logits}

    def loss(self, X: np.ndarray, y: np.ndarray) -> float:
        """Mean softmax cross-entropy of the batch."""
        X, y = self._check_batch(X, y)
        logits, _ = self.forward(X)
        return float(-np.mean(log_softmax(logits)[np.arange(len(y)), y]))

    def backward(self, cache: dict[str, np.ndarray], y: np.ndarray) -> dict[str, np.ndarray]:
        """Gradients of the mean cross-entropy with respect to every parameter.

        Read it bottom-up against the forward pass: each line is one application of the chain
        rule, and every gradient has the shape of the thing it is the gradient of.
        """
        p, X, Z1, H = self.params, cache["X"], cache["Z1"], cache["H"]
        N = X.shape[0]
        # d loss / d logits of softmax + cross-entropy is (probabilities - one_hot) / N
        dlogits = softmax(cache["logits"])  # (N, C)
        dlogits[np.arange(N), y] -= 1.0
        dlogits /= N
        dW2 = H.T @ dlogits  # (H, C): logits = H @ W2 + b2
        db2 = dlogits.sum(axis=0)  # (C,): b2 was broadcast over the N rows, so sum them
        dH = dlogits @ p["W2"].T  # (N, H)
        if self.config.activation == "tanh":
            dZ1 = dH * (1.0 - H ** 2)  # tanh'(z) = 1 - tanh(z)^2, reusing H from the forward pass
        else:
            dZ1 = dH * (Z1 > 0)  # relu'(z) = 1 where z > 0 (0 at z = 0, as PyTorch)
        dW1 = X.T @ dZ1  # (D, H)
        db1 = dZ1.sum(axis=0)  # (H,)
        return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}

    def loss_and_grads(self, X: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        X, y = self._check_batch(X, y)
        logits, cache = self.forward(X)
        loss = float(-np.mean(log_softmax(logits)[np.arange(len(y)), y]))
        return loss, self.backward(cache, y)

    def step(self, grads: dict[str, np.ndarray], lr: float) -> None:
        """Gradient descent: ``param -= lr * grad`` (in place)."""
        for name, g in grads.items():
            self.params[name] -= lr * g

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Most likely class for each row, ``(N,)``."""
        return np.argmax(self.forward(X)[0], axis=1)

    def accuracy(self, X: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(self.predict(X) == np.asarray(y)))


# ----------------------------------------------------------------------------------------------
# gradient checking


def numerical_grad(f: Callable[[], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of the scalar ``f()`` with respect to every entry of ``x``.

    ``x`` is perturbed in place (and restored), so ``f`` must read it: e.g. ``x`` is one of
    a model's parameter arrays and ``f`` recomputes the loss. The error of the central
    difference ``(f(x + eps) - f(x - eps)) / (2 eps)`` is ``O(eps^2)``, against ``O(eps)`` for a
    one-sided difference; ``eps`` near ``1e-6`` balances it against float64 rounding.

    Example:
        >>> x = np.array([1.0, -2.0])
        >>> numerical_grad(lambda: float(np.sum(x ** 2)), x).round(6).tolist()   # 2x
        [2.0, -4.0]
    """
    if not (isinstance(x, np.ndarray) and x.dtype == np.float64):
        raise TypeError("x must be a float64 NumPy array that f reads (it is perturbed in place)")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        f_plus = f()
        x[i] = old - eps
        f_minus = f()
        x[i] = old
        grad[i] = (f_plus - f_minus) / (2 * eps)
    return grad


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """Largest ``|a - b| / max(|a| + |b|, 1e-12)``: about 1e-7 or less means the gradients agree."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), 1e-12)))


def grad_check(model: NumpyMLP, X: np.ndarray, y: np.ndarray, eps: float = 1e-6) -> dict[str, float]:
    """Relative error between ``model.backward`` and finite differences, per parameter."""
    _, grads = model.loss_and_grads(X, y)
    return {name: rel_error(grads[name], numerical_grad(lambda: model.loss(X, y), arr, eps))
            for name, arr in model.params.items()}


# ----------------------------------------------------------------------------------------------
# training


def train(model: NumpyMLP, X: np.ndarray, y: np.ndarray, *, steps: int = 1000, lr: float = 0.5) -> list[float]:
    """Full-batch gradient descent; returns the loss before each step."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    history = []
    for _ in range(steps):
        loss, grads = model.loss_and_grads(X, y)
        model.step(grads, lr)
        history.append(loss)
    return history
