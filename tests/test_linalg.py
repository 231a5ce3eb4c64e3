"""llmnotes.linalg against numpy.linalg (the oracle)."""

import numpy as np
import pytest

from llmnotes import linalg


def hilbert(n: int) -> np.ndarray:
    i = np.arange(n)
    return 1.0 / (i[:, None] + i[None, :] + 1.0)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_solve_inv_det_random_match_numpy(n):
    rng = np.random.default_rng(n)
    A = rng.standard_normal((n, n))
    b = rng.standard_normal(n)
    np.testing.assert_allclose(linalg.solve(A, b), np.linalg.solve(A, b), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(linalg.inv(A), np.linalg.inv(A), rtol=1e-9, atol=1e-10)
    assert linalg.det(A) == pytest.approx(np.linalg.det(A), rel=1e-10)


def test_solve_accepts_plain_lists_and_many_rhs():
    A = [[2.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 4.0]]
    B = [[1.0, 0.0], [2.0, 1.0], [3.0, 5.0]]
    X = linalg.solve(A, B)
    assert X.shape == (3, 2)
    np.testing.assert_allclose(np.array(A) @ X, B, atol=1e-12)
    x = linalg.solve(A, [1, 2, 3])
    assert x.shape == (3,)
    np.testing.assert_allclose(x, np.linalg.solve(A, [1, 2, 3]), rtol=1e-12)


def test_input_is_not_modified():
    A = np.array([[0.0, 1.0], [2.0, 3.0]])
    A0 = A.copy()
    linalg.solve(A, [1.0, 2.0])
    linalg.det(A)
    np.testing.assert_array_equal(A, A0)


def test_det_sign_tracks_row_swaps():
    P = [[0, 1, 0], [0, 0, 1], [1, 0, 0]]  # a cyclic permutation: det +1, needs two swaps
    assert linalg.det(P) == 1.0
    assert linalg.det([[0, 1], [1, 0]]) == -1.0
    assert linalg.det([[3.0]]) == 3.0


def test_hilbert_ill_conditioned():
    H = hilbert(6)  # condition number ~1.5e7: expect to lose ~7 of 16 digits
    b = H @ np.ones(6)
    x = linalg.solve(H, b)
    np.testing.assert_allclose(x, np.linalg.solve(H, b), rtol=1e-8)
    np.testing.assert_allclose(x, np.ones(6), rtol=1e-8)
    np.testing.assert_allclose(linalg.inv(H), np.linalg.inv(H), rtol=1e-7)
    assert linalg.det(H) == pytest.approx(np.linalg.det(H), rel=1e-8)
    # the exact determinant of H6 is 1 / 186313420339200000
    assert linalg.det(H) == pytest.approx(1 / 186313420339200000, rel=1e-7)


def test_pivoting_rescues_tiny_pivot():
    A = [[1e-20, 1.0], [1.0, 1.0]]
    b = [1.0, 2.0]  # exact solution is within 1e-20 of (1, 1)
    np.testing.assert_allclose(linalg.solve(A, b), [1.0, 1.0], rtol=1e-15)
    bad = linalg.solve(A, b, pivot=False)
    assert abs(bad[0] - 1.0) > 0.5  # without pivoting x1 comes out as 0


def test_scale_invariant_tolerance():
    # a tiny but perfectly regular matrix must not be called singular
    A = 1e-12 * np.eye(3)
    np.testing.assert_allclose(linalg.solve(A, [1e-12, 2e-12, 3e-12]), [1.0, 2.0, 3.0])
    assert linalg.det(A) == pytest.approx(1e-36)


@pytest.mark.parametrize("A", [
    [[1.0, 2.0], [2.0, 4.0]],
    [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]],  # rank 2; rounding leaves a ~1e-16 pivot
    [[0.0, 0.0], [0.0, 0.0]],
])
def test_singular_raises_and_det_is_zero(A):
    with pytest.raises(ValueError, match="singular"):
        linalg.solve(A, np.ones(len(A)))
    with pytest.raises(ValueError, match="singular"):
        linalg.inv(A)
    assert linalg.det(A) == 0.0


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="square"):
        linalg.solve([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], [1.0, 2.0])
    with pytest.raises(ValueError, match="square"):
        linalg.det(np.ones((2, 3)))
    with pytest.raises(ValueError, match="square"):
        linalg.inv(np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"b must have shape \(2,\)"):
        linalg.solve(np.eye(2), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="2-D"):
        linalg.solve([1.0, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="NaN"):
        linalg.det([[1.0, np.nan], [0.0, 1.0]])
    with pytest.raises(TypeError):
        linalg.det([[1.0, 2.0], [3.0]])


def _random_symmetric(n, seed, spd=False):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    vals = rng.uniform(0.5, 5.0, n) * (1 if spd else rng.choice([-1, 1], n))
    vals[0] = 8.0  # a clear gap at the top so the test converges quickly
    return (Q * vals) @ Q.T


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_power_iteration_matches_eigh(seed):
    A = _random_symmetric(6, seed)
    lam, v = linalg.power_iteration(A)
    w, V = np.linalg.eigh(A)
    i = np.argmax(np.abs(w))
    assert lam == pytest.approx(w[i], rel=1e-10)
    assert abs(v @ V[:, i]) == pytest.approx(1.0, abs=1e-10)
    np.testing.assert_allclose(A @ v, lam * v, atol=1e-8)


def test_power_iteration_negative_dominant():
    A = np.diag([-5.0, 2.0, 1.0])
    lam, v = linalg.power_iteration(A)
    assert lam == pytest.approx(-5.0)
    np.testing.assert_allclose(v, [1.0, 0.0, 0.0], atol=1e-6)


def test_top_k_eigen_deflation_matches_eigh():
    rng = np.random.default_rng(3)
    Q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    vals = np.array([10.0, -7.0, 5.0, 3.0, 2.0, 1.0, 0.5, 0.1])
    A = (Q * vals) @ Q.T
    lam, V = linalg.top_k_eigen(A, 4)
    np.testing.assert_allclose(lam, vals[:4], rtol=1e-8)
    for j in range(4):
        assert abs(V[:, j] @ Q[:, j]) == pytest.approx(1.0, abs=1e-8)


def test_eigen_bad_input():
    with pytest.raises(ValueError, match="symmetric"):
        linalg.power_iteration([[1.0, 2.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="k must be"):
        linalg.top_k_eigen(np.eye(3), 4)
    with pytest.raises(ValueError, match="num_iters"):
        linalg.power_iteration(np.eye(2), num_iters=0)


@pytest.mark.parametrize("shape,r", [((8, 5), 1), ((8, 5), 3), ((6, 10), 2), ((7, 7), 6)])
def test_eckart_young(shape, r):
    A = np.random.default_rng(sum(shape) + r).standard_normal(shape)
    Ar = linalg.low_rank_approx(A, r)
    s = np.linalg.svd(A, compute_uv=False)
    assert np.linalg.matrix_rank(Ar) == r
    assert np.linalg.norm(A - Ar, "fro") ** 2 == pytest.approx(np.sum(s[r:] ** 2), rel=1e-10)
    assert np.linalg.norm(A - Ar, 2) == pytest.approx(s[r], rel=1e-10)
    B, C = linalg.low_rank_factors(A, r)
    assert B.shape == (shape[0], r) and C.shape == (r, shape[1])
    np.testing.assert_allclose(B @ C, Ar, atol=1e-12)


def test_low_rank_full_rank_is_exact_and_bad_r():
    A = np.random.default_rng(0).standard_normal((4, 3))
    np.testing.assert_allclose(linalg.low_rank_approx(A, 3), A, atol=1e-12)
    for r in (0, 4, 1.5):
        with pytest.raises(ValueError, match="r must be"):
            linalg.low_rank_approx(A, r)


# ----------------------------------------------------------------------------------------------
# properties over many random matrices

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402


@st.composite
def well_conditioned(draw):
    n = draw(st.integers(1, 6))
    M = draw(arrays(np.float64, (n, n), elements=st.floats(-10, 10)))
    # strict diagonal dominance guarantees a regular matrix with a modest condition number
    M = M + np.diag(np.abs(M).sum(axis=1) + 1.0)
    scale = draw(st.sampled_from([1e-6, 1.0, 1e6]))
    return M * scale


@settings(max_examples=60, deadline=None)
@given(well_conditioned(), st.data())
def test_solve_property_residual_and_det(A, data):
    n = A.shape[0]
    b = data.draw(arrays(np.float64, (n,), elements=st.floats(-100, 100)))
    x = linalg.solve(A, b)
    np.testing.assert_allclose(A @ x, b, rtol=1e-9, atol=1e-9 * (np.abs(b).max() + 1))
    assert linalg.det(A) == pytest.approx(np.linalg.det(A), rel=1e-9)
    # permuting the rows flips the determinant's sign once per swap
    P = np.roll(np.eye(n), 1, axis=0)  # a cyclic shift: n - 1 swaps
    assert linalg.det(P @ A) == pytest.approx((-1) ** (n - 1) * linalg.det(A), rel=1e-9)
