"""word2vec: skip-gram with negative sampling (Mikolov et al., 2013, arXiv:1310.4546).

Each word gets two vectors: ``v`` when it is the centre word and ``u`` when it is a context
word. For a (centre, context) pair seen in the text and ``K`` "negative" words drawn at random,
the loss is

    -log sigmoid(u_ctx . v_c) - sum_k log sigmoid(-u_k . v_c)

so observed pairs are pulled together and random pairs pushed apart. Words used in similar
contexts end up with similar ``v``: those are the embeddings.

Smallest pieces first: :func:`build_vocab` -> :func:`subsample` -> :func:`skipgram_pairs` ->
:func:`sgns_loss` (autograd) and :func:`sgns_grads` (by hand) -> :func:`train_word2vec` -> :class:`WordVectors` (neighbours, analogies).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def build_vocab(tokens: Sequence[str], min_count: int = 5) -> tuple[list[str], np.ndarray]:
    """Words seen at least ``min_count`` times, most frequent first, and their counts."""
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count!r}")
    freq = Counter(tokens)
    kept = sorted((w for w, c in freq.items() if c >= min_count), key=lambda w: (-freq[w], w))
    return kept, np.array([freq[w] for w in kept], dtype=np.int64)


def subsample(ids: np.ndarray, counts: np.ndarray, t: float, rng: np.random.Generator) -> np.ndarray:
    """Drop each occurrence of word ``w`` with probability ``1 - sqrt(t / f(w))`` (``f``: its
    share of all tokens): frequent words such as "the" are mostly dropped, rare ones all kept."""
    f = counts / counts.sum()
    keep = np.minimum(1.0, np.sqrt(t / f))
    return ids[rng.random(len(ids)) < keep[ids]]


def skipgram_pairs(ids: np.ndarray, window: int, rng: np.random.Generator) -> np.ndarray:
    """(N, 2) array of (centre, context) id pairs: each position paired with every position at
    most ``b`` away, where ``b`` is drawn uniformly from 1..window per position (word2vec's
    dynamic window, which weights near neighbours more)."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window!r}")
    ids = np.asarray(ids)
    b = rng.integers(1, window + 1, len(ids))
    pairs = []
    for off in range(1, window + 1):
        for sign in (-1, 1):
            src = np.arange(max(0, -sign * off), len(ids) - max(0, sign * off))
            src = src[b[src] >= off]
            pairs.append(np.stack([ids[src], ids[src + sign * off]], axis=1))
    return np.concatenate(pairs)


def sgns_loss(v_c: torch.Tensor, u_o: torch.Tensor, u_neg: torch.Tensor) -> torch.Tensor:
    """Mean skip-gram negative-sampling loss. Shapes: v_c, u_o (B, d); u_neg (B, K, d)."""
    pos = F.logsigmoid((v_c * u_o).sum(-1))                                  # (B,)
    neg = F.logsigmoid(-torch.bmm(u_neg, v_c.unsqueeze(-1)).squeeze(-1)).sum(-1)  # (B,)
    return -(pos + neg).mean()


@dataclass
class WordVectors:
    """Trained embeddings with look-ups by word."""

    words: list[str]
    vectors: np.ndarray  # (V, d): the centre vectors, "the" embeddings
    context: np.ndarray | None = None  # (V, d): the context vectors u, if kept

    def __post_init__(self):
        self.index = {w: i for i, w in enumerate(self.words)}
        norm = np.linalg.norm(self.vectors, axis=1, keepdims=True)
        self.unit = self.vectors / np.where(norm == 0, 1, norm)

    def __getitem__(self, word: str) -> np.ndarray:
        if word not in self.index:
            raise KeyError(f"{word!r} is not in the vocabulary ({len(self.words)} words)")
        return self.vectors[self.index[word]]

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two words' vectors."""
        return float(self.unit[self.index[a]] @ self.unit[self.index[b]])

    def nearest(self, query: str | np.ndarray, k: int = 5, exclude: Sequence[str] = ()) -> list[tuple[str, float]]:
        """The ``k`` words with the highest cosine similarity to a word (itself excluded) or a vector."""
        if isinstance(query, str):
            exclude = [query, *exclude]
            query = self[query]
        q = np.asarray(query, dtype=np.float64)
        sims = self.unit @ (q / np.linalg.norm(q))
        for w in exclude:
            sims[self.index[w]] = -np.inf
        top = np.argsort(-sims)[:k]
        return [(self.words[i], float(sims[i])) for i in top]

    def analogy(self, a: str, b: str, c: str, k: int = 1) -> list[tuple[str, float]]:
        """a is to b as c is to ?: the words nearest ``b - a + c`` (unit vectors; a, b, c excluded)."""
        q = self.unit[self.index[b]] - self.unit[self.index[a]] + self.unit[self.index[c]]
        return self.nearest(q, k, exclude=[a, b, c])


def sgns_grads(v_c: torch.Tensor, u_ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The loss of :func:`sgns_loss`, summed over the batch, and its gradients by hand.

    ``u_ctx`` (B, 1 + K, d) holds the true context word's vector first, then the K negatives.
    With scores ``s = u . v`` and labels ``y`` (1 for the true context, 0 for negatives),
    ``dL/ds = sigmoid(s) - y``; then ``dL/dv_c = sum_j (sigmoid(s_j) - y_j) u_j`` and
    ``dL/du_j = (sigmoid(s_j) - y_j) v_c``. Returns (loss, grad_v (B, d), grad_u (B, 1 + K, d)).
    """
    s = torch.bmm(u_ctx, v_c.unsqueeze(-1)).squeeze(-1)                      # (B, 1 + K)
    y = torch.zeros_like(s)
    y[:, 0] = 1.0
    loss = -(F.logsigmoid(s[:, 0]) + F.logsigmoid(-s[:, 1:]).sum(-1)).sum()
    g = torch.sigmoid(s) - y                                                  # (B, 1 + K)
    return loss, torch.bmm(g.unsqueeze(1), u_ctx).squeeze(1), g.unsqueeze(-1) * v_c.unsqueeze(1)


def pair_counts(pairs: np.ndarray, vocab_size: int) -> np.ndarray:
    """(V, V) matrix ``N[c, o]``: how often context word ``o`` was paired with centre word ``c``."""
    flat = np.bincount(pairs[:, 0] * vocab_size + pairs[:, 1], minlength=vocab_size * vocab_size)
    return flat.reshape(vocab_size, vocab_size).astype(np.float32)


def expected_sgns_grads(v: torch.Tensor, u: torch.Tensor, N: torch.Tensor, M: torch.Tensor):
    """The skip-gram negative-sampling loss summed over *all* pairs at once, and its gradients.

    Sampling pairs and negatives one batch at a time estimates this sum; with the counts it can
    be computed exactly. ``N[c, o]`` counts observed (centre, context) pairs; ``M[c, n] = K
    count(c) P_noise(n)`` is the expected number of times ``n`` is drawn as a negative for ``c``.
    With ``S = v u^T`` (V, V): ``L = -sum(N log sigmoid(S) + M log sigmoid(-S))`` and
    ``dL/dS = (N + M) sigmoid(S) - N``. Returns (loss, grad_v, grad_u).

    One log-sigmoid serves all three: ``log sigmoid(-S) = log sigmoid(S) - S`` gives
    ``L = sum(M S) - sum((N + M) log sigmoid(S))``, and ``sigmoid(S) = exp(log sigmoid(S))``.
    The sums are dot products and ``G`` reuses the log-sigmoid's memory: fewer passes over the
    (V, V) matrices and fewer (V, V) temporaries, which cost as much as the arithmetic here.
    """
    S = v @ u.T
    T = N + M
    log_sig = F.logsigmoid(S)
    loss = torch.dot(M.flatten(), S.flatten()) - torch.dot(T.flatten(), log_sig.flatten())
    G = log_sig.exp_().mul_(T).sub_(N)  # (N + M) sigmoid(S) - N, in place
    return loss, G @ u, G.T @ v


def train_word2vec(tokens: Sequence[str], dim: int = 32, window: int = 3, negatives: int = 5,
                   min_count: int = 5, steps: int = 150, lr: float = 0.05, subsample_t: float = 1e-3,
                   seed: int = 0, losses: list | None = None) -> WordVectors:
    """Train skip-gram with negative sampling on a list of tokens; returns the centre vectors.

    As in the original: frequent words subsampled, a dynamic window, negatives drawn from the
    unigram distribution raised to the 3/4 power (rare words drawn more often than their
    frequency), small random centre vectors. Unlike the original, which updates the vectors
    after every sampled pair, it counts the pairs once (:func:`pair_counts`) and takes
    ``steps`` full-batch Adam steps on the exact expected loss (:func:`expected_sgns_grads`): on
    a CPU in Python that is far faster than a million small updates, and for a small
    vocabulary the (V, V) matrices are small. ``losses``, if given, receives the loss per pair
    after each step.
    """
    if dim < 1 or negatives < 1 or steps < 1:
        raise ValueError(f"dim, negatives and steps must be >= 1, got {dim}, {negatives}, {steps}")
    words, counts = build_vocab(tokens, min_count)
    if len(words) < 2:
        raise ValueError(f"fewer than 2 words occur {min_count}+ times: lower min_count")
    index = {w: i for i, w in enumerate(words)}
    ids = np.array([index[w] for w in tokens if w in index], dtype=np.int64)
    rng = np.random.default_rng(seed)
    V = len(words)
    N = torch.from_numpy(pair_counts(skipgram_pairs(subsample(ids, counts, subsample_t, rng), window, rng), V))
    noise = counts.astype(np.float64) ** 0.75
    M = negatives * N.sum(1, keepdim=True) * torch.from_numpy(noise / noise.sum()).float()[None, :]
    n_pairs = float(N.sum())
    gen = torch.Generator().manual_seed(seed)
    v = ((torch.rand(V, dim, generator=gen) - 0.5) / dim).requires_grad_()  # centre vectors
    u = ((torch.rand(V, dim, generator=gen) - 0.5) / dim).requires_grad_()  # context vectors
    opt = torch.optim.Adam([v, u], lr=lr)
    for _ in range(steps):
        with torch.no_grad():
            loss, v.grad, u.grad = expected_sgns_grads(v, u, N, M)
        opt.step()
        if losses is not None:
            losses.append(loss.item() / n_pairs)
    return WordVectors(words, v.detach().numpy().astype(np.float64), u.detach().numpy().astype(np.float64))
