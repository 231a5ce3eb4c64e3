"""Linear algebra from scratch: Gaussian elimination, power iteration, low-rank approximation.

The math chapter's reference implementations. They are written as plain loops over Python
lists so every step of the algorithm is visible; NumPy's LAPACK-backed ``numpy.linalg`` is the
fast path and the test oracle (``tests/test_linalg.py`` checks they agree).

Smallest pieces first:

* ``_to_rows`` / ``_check_square``: turn a list-of-lists or an array into float rows, validate.
* ``_eliminate``: forward elimination with partial pivoting, shared by the three solvers.
* ``solve``, ``inv``, ``det``: the public Gaussian-elimination API.
* ``power_iteration``, ``top_k_eigen``: dominant eigenpairs of a symmetric matrix (deflation).
* ``low_rank_approx``, ``low_rank_factors``: the best rank-``r`` approximation by SVD
  (Eckart-Young), the idea behind LoRA.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

ArrayLike = Union[Sequence[Sequence[float]], Sequence[float], np.ndarray]

_EPS = sys.float_info.epsilon  # 2.22e-16, the spacing of float64 numbers near 1.0


# ----------------------------------------------------------------------------------------------
# input handling


def _to_rows(A: ArrayLike, name: str) -> list[list[float]]:
    """Copy a 2-D list-of-lists or array into a fresh list of float rows (never aliases ``A``)."""
    try:
        arr = np.asarray(A, dtype=np.float64)
    except (TypeError, ValueError) as exc:  # ragged lists, strings, ...
        raise TypeError(f"{name} must be a 2-D list of numbers or a NumPy array; got {type(A).__name__} "
                        f"that cannot be read as numbers ({exc})") from None
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (a matrix), got shape {arr.shape}; "
                         f"wrap a single row as [[...]] or reshape it")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinity; clean the input first")
    return [[float(v) for v in row] for row in arr]


def _check_square(rows: list[list[float]], name: str) -> int:
    n = len(rows)
    m = len(rows[0]) if n else 0
    if n == 0 or n != m:
        raise ValueError(f"{name} must be a non-empty square matrix, got shape ({n}, {m}); "
                         f"Gaussian elimination solves n equations in n unknowns")
    return n


def _default_tol(rows: list[list[float]]) -> float:
    """Pivots smaller than this count as zero: ``n * eps * max|a_ij|``.

    The tolerance is *relative* to the matrix's scale, so ``1e-12 * I`` is perfectly regular
    while a pivot that is pure rounding noise (about ``eps`` times the entries) is not.
    """
    n = len(rows)
    scale = max(abs(v) for row in rows for v in row)
    return n * _EPS * scale


# ----------------------------------------------------------------------------------------------
# Gaussian elimination


@dataclass
class _Elimination:
    """What forward elimination leaves behind: ``U x = c`` with ``U`` upper triangular."""

    U: list[list[float]]  # (n, n), zeros below the diagonal
    c: list[list[float]]  # (n, k), the right-hand sides after the same row operations
    swaps: int  # number of row exchanges (each flips the determinant's sign)
    singular_col: int | None  # first column with no usable pivot, or None


def _eliminate(rows: list[list[float]], rhs: list[list[float]], tol: float, pivot: bool) -> _Elimination:
    """Reduce ``[A | B]`` to upper-triangular form in place.

    For each column ``j`` pick the pivot row (partial pivoting: the largest ``|a_ij|`` for
    ``i >= j``; without pivoting: row ``j`` itself), swap it up, then subtract multiples of it
    from every row below so column ``j`` becomes zero under the diagonal.

    Why the largest pivot: the multipliers ``l_ij = a_ij / a_jj`` then satisfy ``|l_ij| <= 1``,
    so rounding errors made in a row are never amplified when it is subtracted from the others.
    """
    n = len(rows)
    swaps = 0
    for j in range(n):
        if pivot:
            p = max(range(j, n), key=lambda i: abs(rows[i][j]))
        else:
            p = j
        # Without pivoting only an exact zero stops us: a tiny pivot is the very thing the
        # page demonstrates going wrong.
        if (pivot and abs(rows[p][j]) <= tol) or rows[p][j] == 0.0:
            return _Elimination(rows, rhs, swaps, singular_col=j)
        if p != j:
            rows[j], rows[p] = rows[p], rows[j]
            rhs[j], rhs[p] = rhs[p], rhs[j]
            swaps += 1
        for i in range(j + 1, n):
            factor = rows[i][j] / rows[j][j]
            if factor == 0.0:
                continue
            for k in range(j, n):
                rows[i][k] -= factor * rows[j][k]
            rows[i][j] = 0.0  # exactly zero, not a rounding residue
            for k in range(len(rhs[i])):
                rhs[i][k] -= factor * rhs[j][k]
    return _Elimination(rows, rhs, swaps, singular_col=None)


def _back_substitute(U: list[list[float]], c: list[list[float]]) -> list[list[float]]:
    """Solve ``U X = C`` for upper-triangular ``U``, from the last row up."""
    n = len(U)
    k = len(c[0])
    X = [[0.0] * k for _ in range(n)]
    for i in reversed(range(n)):
        for col in range(k):
            s = c[i][col] - sum(U[i][m] * X[m][col] for m in range(i + 1, n))
            X[i][col] = s / U[i][i]
    return X


def _singular_error(name: str, col: int, tol: float) -> ValueError:
    return ValueError(f"{name} is singular (or numerically singular): no pivot larger than "
                      f"{tol:.3g} in column {col}, so the system has no unique solution; "
                      f"check for linearly dependent rows, or use numpy.linalg.lstsq for a "
                      f"least-squares answer")


def solve(A: ArrayLike, b: ArrayLike, *, pivot: bool = True, tol: float | None = None) -> np.ndarray:
    """Solve ``A x = b`` by Gaussian elimination with partial pivoting.

    Args:
        A: square matrix, shape ``(n, n)`` (list of lists or array).
        b: right-hand side, shape ``(n,)`` or ``(n, k)`` for ``k`` systems at once.
        pivot: ``False`` turns partial pivoting off (for teaching: it shows how a tiny pivot
            destroys the answer). Only an exactly-zero pivot is then detected.
        tol: pivots with ``|p| <= tol`` count as zero; default ``n * eps * max|A|``.

    Returns:
        ``x`` with the shape of ``b``, as a float64 NumPy array.

    Raises:
        ValueError: non-square ``A``, a ``b`` whose length is not ``n``, or a singular ``A``.

    Example:
        >>> solve([[2.0, 1.0], [1.0, 3.0]], [3.0, 5.0]).round(6).tolist()
        [0.8, 1.4]
    """
    rows = _to_rows(A, "A")
    n = _check_square(rows, "A")
    b_arr = np.asarray(b, dtype=np.float64)
    if b_arr.ndim not in (1, 2) or b_arr.shape[0] != n:
        raise ValueError(f"b must have shape ({n},) or ({n}, k) to match A of shape ({n}, {n}), "
                         f"got {b_arr.shape}")
    rhs = [[float(v) for v in np.atleast_1d(row)] for row in b_arr]  # (n, k) with k = 1 for a vector
    tol = _default_tol(rows) if tol is None else float(tol)
    elim = _eliminate(rows, rhs, tol, pivot)
    if elim.singular_col is not None:
        raise _singular_error("A", elim.singular_col, tol)
    x = np.array(_back_substitute(elim.U, elim.c))  # (n, k)
    return x.reshape(b_arr.shape)


def inv(A: ArrayLike, *, tol: float | None = None) -> np.ndarray:
    """Inverse of a square matrix: solve ``A X = I`` for all ``n`` columns of ``I`` at once.

    (In practice you almost never want the inverse itself: ``solve(A, b)`` is cheaper and more
    accurate than ``inv(A) @ b``.)

    Raises:
        ValueError: non-square or singular ``A``.
    """
    rows = _to_rows(A, "A")
    n = _check_square(rows, "A")
    return solve(rows, np.eye(n), tol=tol)


def det(A: ArrayLike, *, tol: float | None = None) -> float:
    """Determinant as the signed product of the pivots of Gaussian elimination.

    Row swaps flip the sign; subtracting a multiple of one row from another changes nothing;
    the determinant of the triangular result is the product of its diagonal.

    A singular matrix (no pivot above ``tol`` in some column, the same test ``solve`` uses)
    returns exactly ``0.0``: unlike a solution, a determinant exists for every square matrix.
    (``numpy.linalg.det`` would return rounding noise such as ``6.7e-16`` instead.)

    Raises:
        ValueError: non-square ``A``.
    """
    rows = _to_rows(A, "A")
    n = _check_square(rows, "A")
    tol = _default_tol(rows) if tol is None else float(tol)
    elim = _eliminate(rows, [[] for _ in range(n)], tol, pivot=True)
    if elim.singular_col is not None:
        return 0.0
    d = -1.0 if elim.swaps % 2 else 1.0
    for i in range(n):
        d *= elim.U[i][i]
    return d


# ----------------------------------------------------------------------------------------------
# eigenvalues by power iteration


def _check_symmetric(A: ArrayLike, name: str = "A") -> np.ndarray:
    M = np.asarray(_to_rows(A, name))
    _check_square(M.tolist(), name)
    if not np.allclose(M, M.T, rtol=1e-10, atol=1e-12 * max(1.0, np.abs(M).max())):
        raise ValueError(f"{name} must be symmetric (A == A.T); power iteration with deflation "
                         f"here assumes real eigenvalues and orthogonal eigenvectors. "
                         f"Symmetrise it with (A + A.T) / 2 if the asymmetry is rounding noise")
    return M


def power_iteration(A: ArrayLike, *, num_iters: int = 1000, tol: float = 1e-10,
                    seed: int = 0) -> tuple[float, np.ndarray]:
    """Dominant eigenpair (largest ``|lambda|``) of a symmetric matrix.

    Repeatedly multiply a random vector by ``A`` and renormalise: the component along the
    eigenvector with the largest ``|lambda|`` grows fastest, by a factor ``|lambda_1/lambda_2|``
    per step relative to the next one, so the vector turns towards it.

    Args:
        A: symmetric matrix, shape ``(n, n)``.
        num_iters: maximum number of multiplications.
        tol: stop once ``min(||v_t - v_{t-1}||, ||v_t + v_{t-1}||) < tol``: the direction stopped
            moving (the ``+`` lets a negative eigenvalue flip the vector's sign every step).
        seed: seed of the random start vector.

    Returns:
        ``(eigenvalue, eigenvector)``: the Rayleigh quotient ``v^T A v`` and a unit vector
        ``(n,)``, sign fixed so its largest-magnitude entry is positive.

    Note:
        Convergence needs ``|lambda_1| > |lambda_2|``; with a tie (e.g. eigenvalues 3 and -3)
        the vector never settles and the last iterate is returned.
    """
    M = _check_symmetric(A)
    if num_iters < 1:
        raise ValueError(f"num_iters must be >= 1, got {num_iters}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    n = M.shape[0]
    v = np.random.default_rng(seed).standard_normal(n)
    v /= np.linalg.norm(v)
    for _ in range(num_iters):
        w = M @ v  # (n,)
        norm = np.linalg.norm(w)
        if norm == 0.0:  # v is in the null space: every eigenvalue we can reach is 0
            return 0.0, v
        w /= norm
        done = min(np.linalg.norm(w - v), np.linalg.norm(w + v)) < tol
        v = w
        if done:
            break
    lam = float(v @ M @ v)  # Rayleigh quotient: the best eigenvalue estimate for this vector
    if v[np.argmax(np.abs(v))] < 0:
        v = -v
    return lam, v


def top_k_eigen(A: ArrayLike, k: int, *, num_iters: int = 1000, tol: float = 1e-10,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` eigenpairs of largest ``|lambda|`` of a symmetric matrix, by deflation.

    After finding ``(lambda_1, v_1)`` subtract it out, ``A <- A - lambda_1 v_1 v_1^T``: that
    matrix has the same eigenvectors but ``v_1``'s eigenvalue is now 0, so the next power
    iteration finds the runner-up (Hotelling deflation).

    Returns:
        ``(eigenvalues, eigenvectors)`` with shapes ``(k,)`` and ``(n, k)`` (vectors as columns),
        ordered by decreasing ``|lambda|``.
    """
    M = _check_symmetric(A).copy()
    n = M.shape[0]
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise ValueError(f"k must be an integer in [1, {n}] for a ({n}, {n}) matrix, got {k!r}")
    values, vectors = [], []
    for i in range(k):
        lam, v = power_iteration(M, num_iters=num_iters, tol=tol, seed=seed + i)
        values.append(lam)
        vectors.append(v)
        M = M - lam * np.outer(v, v)
        M = (M + M.T) / 2  # keep it exactly symmetric despite rounding
    return np.array(values), np.stack(vectors, axis=1)


# ----------------------------------------------------------------------------------------------
# low-rank approximation


def _check_rank(M: np.ndarray, r: int) -> None:
    limit = min(M.shape)
    if not isinstance(r, (int, np.integer)) or isinstance(r, bool) or not 1 <= r <= limit:
        raise ValueError(f"r must be an integer in [1, {limit}] for a matrix of shape {M.shape}, got {r!r}")


def low_rank_factors(A: ArrayLike, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Factors ``B (m, r)`` and ``C (r, n)`` with ``B @ C`` the best rank-``r`` approximation of ``A``.

    From the SVD ``A = U diag(s) V^T``: ``B = U[:, :r] * s[:r]`` and ``C = V^T[:r]``. Storing
    them takes ``r (m + n)`` numbers instead of ``m n``, the same count LoRA trains.
    """
    M = np.asarray(_to_rows(A, "A"))
    _check_rank(M, r)
    U, s, Vt = np.linalg.svd(M, full_matrices=False)  # (m, p), (p,), (p, n) with p = min(m, n)
    return U[:, :r] * s[:r], Vt[:r]


def low_rank_approx(A: ArrayLike, r: int) -> np.ndarray:
    """Best rank-``r`` approximation of ``A`` (shape ``(m, n)``) in Frobenius and spectral norm.

    Eckart-Young (1936): truncating the SVD after ``r`` singular values is optimal, with
    ``||A - A_r||_F^2 = sum_{i > r} s_i^2`` and ``||A - A_r||_2 = s_{r+1}``.
    """
    B, C = low_rank_factors(A, r)
    return B @ C
