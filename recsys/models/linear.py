"""One linear solve for the ridge systems of fold-in and explanations (ALS, SVD)."""

from __future__ import annotations

import numpy as np
from scipy.linalg.lapack import dposv


def solve_ridge(matrix: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Return x with ``matrix @ x = rhs`` for a symmetric matrix, by least squares if singular.

    A ridge system (``A^T A + lambda I``) is symmetric positive definite when
    lambda > 0: LAPACK's Cholesky solve, a fraction of ``np.linalg.solve``'s
    time at fold-in sizes. It reads the matrix's transpose, the same values
    in the Fortran order it takes, so only its own working copy is made.
    Without regularisation a short history leaves the system singular; then
    the least-squares solution of smallest norm.

    Args:
        matrix: (k, k) symmetric float64 matrix (left as it is).
        rhs: (k,) or (k, m) right-hand side (left as it is).
    """
    _, solved, info = dposv(matrix.T, rhs)
    if info == 0:
        return solved
    return np.linalg.lstsq(matrix, rhs, rcond=None)[0]
