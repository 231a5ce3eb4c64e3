"""llmnotes.probability against torch.nn.functional."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from llmnotes import probability as P


def _t(x):
    return torch.tensor(np.asarray(x), dtype=torch.float64)


LOGITS = [
    np.random.default_rng(0).standard_normal((4, 7)) * 3,
    np.array([[1000.0, 999.0, -1000.0], [-1000.0, -1001.0, -1002.0]]),  # overflow/underflow in naive form
    np.array([0.0]),
    np.random.default_rng(1).standard_normal((2, 3, 5)),
]


@pytest.mark.parametrize("z", LOGITS)
def test_softmax_and_log_softmax_match_torch(z):
    np.testing.assert_allclose(P.softmax(z), F.softmax(_t(z), dim=-1).numpy(), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(P.log_softmax(z), F.log_softmax(_t(z), dim=-1).numpy(), rtol=1e-12)
    np.testing.assert_allclose(P.logsumexp(z), torch.logsumexp(_t(z), dim=-1).numpy(), rtol=1e-12)
    assert np.all(np.isfinite(P.log_softmax(z)))
    np.testing.assert_allclose(P.softmax(z).sum(-1), 1.0, rtol=1e-12)


def test_naive_softmax_overflows_where_stable_does_not():
    with np.errstate(over="ignore", invalid="ignore"):
        assert np.isnan(P.naive_softmax([1000.0, 1000.0])).all()
    assert P.softmax([1000.0, 1000.0]).tolist() == [0.5, 0.5]
    # shifting all logits by a constant changes nothing
    z = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(P.softmax(z), P.softmax(z + 500.0), rtol=1e-12)


def test_log_softmax_handles_minus_inf_mask():
    z = np.array([2.0, -np.inf, 0.5])
    ref = F.log_softmax(_t(z), dim=-1).numpy()
    out = P.log_softmax(z)
    assert out[1] == -np.inf
    np.testing.assert_allclose(out[[0, 2]], ref[[0, 2]], rtol=1e-12)


@pytest.mark.parametrize("scale", [1.0, 30.0, 1000.0])
def test_cross_entropy_and_perplexity_match_torch(scale):
    rng = np.random.default_rng(2)
    z = rng.standard_normal((6, 11)) * scale
    y = rng.integers(0, 11, 6)
    ref = F.cross_entropy(_t(z), torch.tensor(y)).item()
    assert P.cross_entropy(z, y) == pytest.approx(ref, rel=1e-12)
    if ref < 700:
        assert P.perplexity(z, y) == pytest.approx(math.exp(ref), rel=1e-12)
    else:  # e^CE does not fit in a float64: perplexity is honestly infinite
        assert P.perplexity(z, y) == math.inf
    np.testing.assert_allclose(P.token_nll(z, y), F.cross_entropy(_t(z), torch.tensor(y), reduction="none").numpy(),
                               rtol=1e-12)


def test_cross_entropy_batched_3d():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((2, 4, 9))  # (B, T, V)
    y = rng.integers(0, 9, (2, 4))
    ref = F.cross_entropy(_t(z).reshape(-1, 9), torch.tensor(y).reshape(-1)).item()
    assert P.cross_entropy(z, y) == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("V", [2, 10, 50257])
def test_uniform_model_has_perplexity_V(V):
    z = np.zeros((3, V))
    assert P.perplexity(z, [0, 1, V - 1]) == pytest.approx(V, rel=1e-10)
    assert P.entropy(P.softmax(z[0])) == pytest.approx(math.log(V), rel=1e-12)


def test_entropy_matches_torch_distributions():
    p = P.softmax(np.random.default_rng(4).standard_normal((5, 8)))
    ref = torch.distributions.Categorical(probs=_t(p)).entropy().numpy()
    np.testing.assert_allclose(P.entropy(p), ref, rtol=1e-12)
    h = P.entropy([1.0, 0.0, 0.0])
    assert h == 0.0 and not np.signbit(h)  # 0 log 0 = 0, not nan (and not -0.0)


def test_sample_categorical_frequencies_and_zero_prob():
    p = np.array([0.5, 0.0, 0.3, 0.2])
    draws = P.sample_categorical(p, 200_000, rng=0)
    freq = np.bincount(draws, minlength=4) / draws.size
    assert freq[1] == 0.0
    # 5 standard errors: sqrt(p (1 - p) / n) <= 0.0012
    np.testing.assert_allclose(freq, p, atol=0.006)
    # torch.multinomial draws from the same distribution
    tdraws = torch.multinomial(_t(p), 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(np.bincount(tdraws.numpy(), minlength=4) / 200_000, p, atol=0.006)


def test_sample_categorical_inverse_cdf_exact():
    # with a fixed generator we can recompute the draws by hand
    p = np.array([0.1, 0.6, 0.3])
    u = np.random.default_rng(5).random(10)
    expected = [0 if x < 0.1 else 1 if x < 0.7 else 2 for x in u]
    assert P.sample_categorical(p, 10, rng=np.random.default_rng(5)).tolist() == expected


def test_bad_inputs():
    with pytest.raises(TypeError, match="integer token ids"):
        P.cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"targets must be ids in \[0, 3\)"):
        P.cross_entropy(np.zeros((2, 3)), [0, 3])
    with pytest.raises(ValueError, match="targets must have shape"):
        P.cross_entropy(np.zeros((2, 3)), [0, 1, 2])
    with pytest.raises(ValueError, match="at least one entry"):
        P.softmax(np.zeros((2, 0)))
    with pytest.raises(ValueError, match="NaN"):
        P.softmax([1.0, np.nan])
    with pytest.raises(ValueError, match="sum to 1"):
        P.entropy([0.5, 0.6])
    with pytest.raises(ValueError, match="sum to 1"):
        P.sample_categorical([0.5, 0.6], 3)
    with pytest.raises(ValueError, match="num_samples"):
        P.sample_categorical([0.5, 0.5], -1)


# ----------------------------------------------------------------------------------------------
# properties

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra.numpy import array_shapes, arrays  # noqa: E402


@settings(max_examples=80, deadline=None)
@given(arrays(np.float64, array_shapes(min_dims=1, max_dims=3, max_side=6), elements=st.floats(-1e4, 1e4)),
       st.floats(-1e4, 1e4))
def test_softmax_properties(z, c):
    p = P.softmax(z)
    assert np.all(p >= 0) and np.all(np.isfinite(p))
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(P.softmax(z + c), p, rtol=1e-6, atol=1e-12)  # shift invariance
    logp = P.log_softmax(z)
    assert np.all(logp <= 1e-12) and np.all(np.isfinite(logp))
    np.testing.assert_allclose(np.exp(logp), p, rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(P.log_softmax(z), F.log_softmax(_t(z), dim=-1).numpy(), rtol=1e-10, atol=1e-10)
    assert np.all(P.entropy(p) >= -1e-12) and np.all(P.entropy(p) <= np.log(z.shape[-1]) + 1e-9)


def test_standard_error_matches_the_spread_of_simulated_test_sets():
    rng = np.random.default_rng(0)
    p, n = 0.9, 60
    accuracies = rng.binomial(n, p, size=200_000) / n
    assert P.standard_error(54, 60) == pytest.approx(accuracies.std(), rel=0.01)
    with pytest.raises(ValueError, match="n must be a positive int"):
        P.standard_error(0, 0)
    with pytest.raises(ValueError, match="successes must be between 0 and n=10"):
        P.standard_error(11, 10)


@pytest.mark.parametrize("k,n", [(0, 5), (3, 5), (57, 60), (60, 60), (1, 1000), (500, 1000)])
def test_wilson_interval_matches_scipy(k, n):
    stats = pytest.importorskip("scipy.stats")
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    ours = P.wilson_interval(k, n, z=stats.norm.ppf(0.975))
    assert ours == pytest.approx((ci.low, ci.high), abs=1e-12)
