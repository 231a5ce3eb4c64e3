"""Probability for language models, from scratch in NumPy: softmax, cross-entropy, perplexity.

A language model outputs one *logit* per vocabulary entry; ``softmax`` turns them into a
probability distribution, ``cross_entropy`` scores how much probability the model gave the
token that actually came next, and ``perplexity`` is ``exp`` of the mean cross-entropy.
``standard_error`` and ``wilson_interval`` say how far an accuracy measured on ``n`` test items
can be from the true one.

All functions work on the last axis, so they take one distribution ``(V,)`` or a batch
``(..., V)`` alike. ``tests/test_probability.py`` checks them against ``torch.nn.functional``.
"""

from __future__ import annotations

import numpy as np


def _logits(x, name: str = "logits") -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 0 or arr.shape[-1] == 0:
        raise ValueError(f"{name} must have at least one entry on its last axis, got shape {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN; check the model's outputs")
    return arr


def naive_softmax(x) -> np.ndarray:
    """``exp(x) / sum(exp(x))`` exactly as written: overflows for logits above ~709 (float64).

    Kept only to show on the probability page what goes wrong; use ``softmax``.
    """
    e = np.exp(np.asarray(x, dtype=np.float64))
    return e / e.sum(axis=-1, keepdims=True)


def logsumexp(x, axis: int = -1, keepdims: bool = False) -> np.ndarray:
    """``log(sum(exp(x)))`` without overflow: ``m + log(sum(exp(x - m)))`` with ``m = max(x)``.

    Every ``x - m <= 0``, so ``exp`` stays in ``(0, 1]``, and the largest term is exactly 1,
    so the sum is at least 1 and its log never underflows to ``-inf``.
    """
    arr = _logits(x, "x")
    m = np.max(arr, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)  # all -inf (or +inf) rows: let exp/log handle them
    out = m + np.log(np.sum(np.exp(arr - m), axis=axis, keepdims=True))
    return out if keepdims else np.squeeze(out, axis=axis)


def log_softmax(logits) -> np.ndarray:
    """``log(softmax(logits))`` along the last axis, computed as ``logits - logsumexp(logits)``.

    Shape in, shape out: ``(..., V) -> (..., V)``. Never takes the log of an underflowed 0.
    """
    z = _logits(logits)
    return z - logsumexp(z, axis=-1, keepdims=True)


def softmax(logits) -> np.ndarray:
    """Probabilities ``exp(z_i) / sum_j exp(z_j)`` along the last axis, stable for any logits.

    Subtracting the maximum first changes nothing mathematically (the factor ``exp(-max)``
    cancels between numerator and denominator) but keeps every ``exp`` argument ``<= 0``.

    Example:
        >>> softmax([1000.0, 1000.0]).tolist()   # naive_softmax gives [nan, nan]
        [0.5, 0.5]
    """
    z = _logits(logits)
    e = np.exp(z - np.max(z, axis=-1, keepdims=True))  # (..., V), every entry in (0, 1]
    return e / np.sum(e, axis=-1, keepdims=True)


def _targets(targets, batch_shape: tuple[int, ...], V: int) -> np.ndarray:
    t = np.asarray(targets)
    if not np.issubdtype(t.dtype, np.integer):
        raise TypeError(f"targets must be integer token ids, got dtype {t.dtype}; "
                        f"use .astype(int) if they are whole numbers")
    if t.shape != batch_shape:
        raise ValueError(f"targets must have shape {batch_shape} (logits' shape without the last "
                         f"axis), got {t.shape}")
    if t.size and (t.min() < 0 or t.max() >= V):
        raise ValueError(f"targets must be ids in [0, {V}), got values from {t.min()} to {t.max()}")
    return t


def token_nll(logits, targets) -> np.ndarray:
    """Negative log-likelihood of each target, ``-log p(target)``: ``(..., V), (...) -> (...)``."""
    logp = log_softmax(logits)  # (..., V)
    t = _targets(targets, logp.shape[:-1], logp.shape[-1])
    return -np.take_along_axis(logp, t[..., None], axis=-1)[..., 0]


def cross_entropy(logits, targets) -> float:
    """Mean cross-entropy in nats, ``mean(-log softmax(logits)[target])``.

    The same quantity as ``torch.nn.functional.cross_entropy(logits, targets)`` (mean
    reduction). Args: ``logits (..., V)``, ``targets (...)`` of integer ids in ``[0, V)``.
    """
    nll = token_nll(logits, targets)
    if nll.size == 0:
        raise ValueError("cross_entropy needs at least one target, got an empty batch")
    return float(np.mean(nll))


def perplexity(logits, targets) -> float:
    """``exp(cross_entropy)``: the size of a uniform choice that would be equally surprised.

    A model that spreads its probability evenly over ``V`` tokens has perplexity exactly ``V``.
    """
    with np.errstate(over="ignore"):  # CE > ~709 nats: the perplexity is inf, say so quietly
        return float(np.exp(cross_entropy(logits, targets)))


def entropy(probs, axis: int = -1) -> np.ndarray:
    """Shannon entropy ``-sum p log p`` in nats, with ``0 log 0 = 0`` (its limit).

    Args:
        probs: probabilities that are ``>= 0`` and sum to 1 along ``axis``.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 0:
        raise ValueError("probs must have at least one axis, got a scalar")
    if (p < 0).any() or not np.allclose(p.sum(axis=axis), 1.0, atol=1e-6):
        raise ValueError("probs must be non-negative and sum to 1 along the axis; "
                         "pass softmax(logits) rather than logits")
    plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return 0.0 - np.sum(plogp, axis=axis)  # 0.0 - x, not -x: no '-0.0' for a one-hot


def sample_categorical(probs, num_samples: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Draw ``num_samples`` ids from one categorical distribution by inverting its CDF.

    Lay the probabilities end to end on ``[0, 1)`` (the cumulative sums), throw a uniform
    number ``u`` and return the index of the segment it lands in: the first ``i`` with
    ``cdf[i] > u``. Each id is hit with probability equal to its segment's length.

    Args:
        probs: ``(V,)`` non-negative probabilities summing to 1.
        num_samples: how many independent draws.
        rng: a NumPy ``Generator`` or a seed.

    Returns:
        ``(num_samples,)`` integer ids.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 1 or p.size == 0:
        raise ValueError(f"probs must be a non-empty 1-D array, got shape {p.shape}")
    if (p < 0).any() or not np.isclose(p.sum(), 1.0, atol=1e-6):
        raise ValueError(f"probs must be non-negative and sum to 1, got sum {p.sum():.6g}")
    if not isinstance(num_samples, (int, np.integer)) or num_samples < 0:
        raise ValueError(f"num_samples must be a non-negative int, got {num_samples!r}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    cdf = np.cumsum(p)
    cdf[-1] = 1.0  # the sum may be 0.9999999999999999: make sure every u < 1 lands somewhere
    u = rng.random(num_samples)  # uniform on [0, 1)
    # side="right": u equal to a boundary belongs to the next segment, so a zero-probability
    # id (an empty segment) can never be chosen
    return np.searchsorted(cdf, u, side="right")


# --------------------------------------------------------------------------------------------
# Statistics of a measured proportion (an accuracy on n test items)
# --------------------------------------------------------------------------------------------


def _check_counts(successes, n) -> None:
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be between 0 and n={n}, got {successes!r}")


def standard_error(successes: int, n: int) -> float:
    """Standard error of the proportion ``successes / n`` of ``n`` independent items.

    Each item is right with some probability ``p``; the measured accuracy is a mean of ``n``
    independent 0/1 outcomes, so its variance is ``p (1 - p) / n``. The standard error plugs in
    the measured ``p_hat``: ``sqrt(p_hat (1 - p_hat) / n)``.

    >>> round(standard_error(90, 100), 4)
    0.03
    """
    _check_counts(successes, n)
    p = successes / n
    return float(np.sqrt(p * (1 - p) / n))


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a proportion (Wilson, 1927); ``z = 1.96`` gives about 95%.

    Unlike ``p_hat ± z * standard_error`` it stays inside ``[0, 1]`` and does not shrink to a
    single point when every item (or none) is right, which matters for small test sets and
    accuracies near 0 or 1.

    >>> [round(x, 3) for x in wilson_interval(57, 60)]
    [0.863, 0.983]
    >>> [round(x, 3) for x in wilson_interval(60, 60)]
    [0.94, 1.0]
    """
    _check_counts(successes, n)
    if z <= 0:
        raise ValueError(f"z must be positive, got {z!r}")
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return float(centre - half), float(centre + half)
