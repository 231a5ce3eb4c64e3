"""llmnotes.word2vec: hand-written gradients against autograd, pair extraction, training quality."""

import numpy as np
import pytest
import torch

from llmnotes.word2vec import (WordVectors, build_vocab, expected_sgns_grads, pair_counts, sgns_grads,
                               sgns_loss, skipgram_pairs, subsample, train_word2vec)


def test_sgns_grads_equal_autograd():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(6, 8, generator=g, dtype=torch.float64, requires_grad=True)
    u = torch.randn(6, 4, 8, generator=g, dtype=torch.float64, requires_grad=True)
    loss, gv, gu = sgns_grads(v.detach(), u.detach())
    ref = sgns_loss(v, u[:, 0], u[:, 1:]) * len(v)  # sgns_loss is the mean, sgns_grads the sum
    ref.backward()
    assert torch.allclose(loss, ref.detach())
    assert torch.allclose(gv, v.grad) and torch.allclose(gu, u.grad)


def test_expected_grads_equal_autograd_and_the_sampled_sum():
    g = torch.Generator().manual_seed(1)
    V, d = 7, 5
    v = torch.randn(V, d, generator=g, dtype=torch.float64, requires_grad=True)
    u = torch.randn(V, d, generator=g, dtype=torch.float64, requires_grad=True)
    N = torch.randint(0, 4, (V, V), generator=g).double()
    M = torch.rand(V, V, generator=g, dtype=torch.float64)
    loss, gv, gu = expected_sgns_grads(v.detach(), u.detach(), N, M)
    ref = -(N * torch.nn.functional.logsigmoid(v @ u.T) + M * torch.nn.functional.logsigmoid(-(v @ u.T))).sum()
    ref.backward()
    assert torch.allclose(loss, ref.detach()) and torch.allclose(gv, v.grad) and torch.allclose(gu, u.grad)


def test_pairs_respect_the_window_and_counts_add_up():
    rng = np.random.default_rng(0)
    ids = np.arange(20)
    pairs = skipgram_pairs(ids, 3, rng)
    dist = np.abs(pairs[:, 0] - pairs[:, 1])
    assert dist.min() >= 1 and dist.max() <= 3
    assert set(map(tuple, skipgram_pairs(ids, 1, rng))) == {(i, i + 1) for i in range(19)} | {(i + 1, i) for i in range(19)}
    assert N_sum_ok(pairs)
    one = pair_counts(skipgram_pairs(ids, 1, rng), 20)
    assert np.array_equal(one, one.T)  # window 1: every pair appears in both directions


def N_sum_ok(pairs):
    return pair_counts(pairs, 20).sum() == len(pairs)


def test_vocab_and_subsampling():
    words, counts = build_vocab(["a"] * 50 + ["b"] * 5 + ["c"] * 2, min_count=3)
    assert words == ["a", "b"] and list(counts) == [50, 5]
    ids = np.array([0] * 1000 + [1] * 10)
    kept = subsample(ids, np.array([1000, 10]), t=1e-2, rng=np.random.default_rng(0))
    # keep probabilities: sqrt(0.01 / 0.99) ~ 0.1 for the frequent word, min(1, ...) = 1 for the rare one
    assert (kept == 1).sum() == 10 and 50 < (kept == 0).sum() < 150
    with pytest.raises(ValueError, match="min_count"):
        build_vocab(["a"], 0)


def test_word_vectors_lookups():
    wv = WordVectors(["x", "y", "z", "w"], np.array([[1.0, 0], [0.9, 0.1], [0, 1.0], [-1.0, 0]]))
    assert wv.nearest("x", 1)[0][0] == "y"
    assert wv.analogy("x", "w", "y")[0][0] not in ("x", "w", "y")
    with pytest.raises(KeyError, match="not in the vocabulary"):
        wv["nope"]


def test_training_reaches_the_optimum_on_a_tiny_vocabulary():
    """With as many dimensions as words, u.v approaches log(N / M) on every observed pair
    (Levy & Goldberg, 2014): the optimum the corpus page checks approximately."""
    rng = np.random.default_rng(0)
    tokens = list(rng.choice(list("abcdef"), size=3000))
    wv = train_word2vec(tokens, dim=6, window=1, negatives=2, min_count=1, steps=1500, lr=0.05,
                        subsample_t=1.0, seed=0)
    words, counts = build_vocab(tokens, 1)
    ids = np.array([words.index(t) for t in tokens])
    rng = np.random.default_rng(0)  # the draws train_word2vec made, in the same order
    N = pair_counts(skipgram_pairs(subsample(ids, counts, 1.0, rng), 1, rng), 6)
    noise = counts ** 0.75 / (counts ** 0.75).sum()
    optimum = np.log(N / (2 * N.sum(1, keepdims=True) * noise[None, :]))
    scores = wv.vectors @ wv.context.T
    assert np.corrcoef(scores.ravel(), optimum.ravel())[0, 1] > 0.99


def test_corpus_vectors_put_colours_together():
    from llmnotes.classic import words
    from llmnotes.data import load_corpus

    wv = train_word2vec(words(load_corpus("train"), pattern=r"[a-z]+(?:'[a-z]+)?"), seed=0)
    colours = {"yellow", "pink", "purple", "blue", "green", "silver", "golden", "brown", "orange"}
    assert len(colours & {w for w, _ in wv.nearest("red", 5)}) >= 3
    assert wv.analogy("he", "his", "she")[0][0] == "her"
