"""Stage *refine*: clean the depth map.

``median_filter`` is a ``size x size`` median (odd size; 0 or 1 = off) with borders
reflected about the edge pixel. It never creates values that were not in the window,
so a finite depth stays finite and within [0, N-1].
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._median_networks import _median5, _median7
from .kernels import JIT, pad_reflect

__all__ = ["median_filter"]


@njit(cache=True, inline="always")
def _sort2(a, b):
    return min(a, b), max(a, b)


@njit(**JIT)
def _median3(P, out):
    """3x3 median of the 1-pixel reflect-padded ``P``: Paeth's 19-exchange network."""
    H, W = out.shape
    for y in prange(H):
        for x in range(W):
            p0 = P[y, x]
            p1 = P[y, x + 1]
            p2 = P[y, x + 2]
            p3 = P[y + 1, x]
            p4 = P[y + 1, x + 1]
            p5 = P[y + 1, x + 2]
            p6 = P[y + 2, x]
            p7 = P[y + 2, x + 1]
            p8 = P[y + 2, x + 2]
            p1, p2 = _sort2(p1, p2)
            p4, p5 = _sort2(p4, p5)
            p7, p8 = _sort2(p7, p8)
            p0, p1 = _sort2(p0, p1)
            p3, p4 = _sort2(p3, p4)
            p6, p7 = _sort2(p6, p7)
            p1, p2 = _sort2(p1, p2)
            p4, p5 = _sort2(p4, p5)
            p7, p8 = _sort2(p7, p8)
            p0, p3 = _sort2(p0, p3)
            p5, p8 = _sort2(p5, p8)
            p4, p7 = _sort2(p4, p7)
            p3, p6 = _sort2(p3, p6)
            p1, p4 = _sort2(p1, p4)
            p2, p5 = _sort2(p2, p5)
            p4, p7 = _sort2(p4, p7)
            p4, p2 = _sort2(p4, p2)
            p6, p4 = _sort2(p6, p4)
            p4, p2 = _sort2(p4, p2)
            out[y, x] = p4


@njit(**JIT)
def _median(P, r, out):
    """(2r+1)^2 median of the r-pixel reflect-padded ``P`` (insertion sort)."""
    H, W = out.shape
    k = 2 * r + 1
    n = k * k
    for y in prange(H):
        buf = np.empty(n, P.dtype)
        for x in range(W):
            m = 0
            for dy in range(k):
                for dx in range(k):
                    v = P[y + dy, x + dx]
                    j = m
                    while j > 0 and buf[j - 1] > v:
                        buf[j] = buf[j - 1]
                        j -= 1
                    buf[j] = v
                    m += 1
            out[y, x] = buf[n // 2]


def median_filter(depth: np.ndarray, size: int = 3) -> np.ndarray:
    """Median of ``depth`` over a ``size x size`` window.

    Parameters
    ----------
    depth : ndarray, shape (H, W)
    size : int
        Odd window side in pixels; 0 or 1 returns a copy.

    Returns
    -------
    ndarray, shape (H, W), same dtype
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
        raise ValueError(f"median size must be 0, 1 or an odd integer >= 3, got {size!r}")
    if size <= 1:
        return depth.copy()
    if size % 2 == 0:
        raise ValueError(f"median size must be 0, 1 or an odd integer >= 3, got {size}")
    r = size // 2
    H, W = depth.shape
    P = np.empty((H + 2 * r, W + 2 * r), depth.dtype)
    P[r:r + H, r:r + W] = depth
    pad_reflect(P, r)
    out = np.empty_like(depth)
    if r == 1:
        _median3(P, out)
    elif r == 2:
        _median5(P, out)
    elif r == 3:
        _median7(P, out)
    else:
        _median(P, r, out)
    return out
