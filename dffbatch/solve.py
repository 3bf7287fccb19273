"""Stage *solve*: a global, edge-aware, confidence-weighted depth solve (Numba kernels).

The depth ``u`` minimises the weighted least-squares energy

    E(u) = sum_p w_p (u_p - d_p)^2 + lam * sum_{p~q} a_pq (u_p - u_q)^2

over the 4-neighbour pairs ``p~q``: ``d`` is the measured (raw) depth, ``w`` its
evidence weight in [0, 1] and ``a_pq = exp(-(g_p - g_q)^2 / (2 sigma^2))`` the
affinity of neighbours in the guide image ``g`` (luminance of the all-in-focus image,
in [0, 1]). Depth flows into pixels without evidence (``w`` = 0) from confident
neighbours along image structure, stays as measured where ``w >> lam`` and keeps its
discontinuities where the guide has edges.

The solver is the Fast Global Smoother of Min et al., "Fast Global Image Smoothing
Based on Weighted Least Squares", IEEE TIP 23 (2014), used as a normalised
(confidence-weighted) filter: ``S(w d) / S(w)``, where ``S`` runs ``iterations``
rounds of 1-D tridiagonal solves of ``(I + lam_t L) x = b`` along every row and then
every column (``lam_t = 1.5 lam 4^(T-t) / (4^T - 1)`` as in the paper). That spreads
evidence across whole regions in O(H*W) time and memory. On the renderer's suites it
is also *more accurate* than the exact minimiser of E (sparse direct solve) with the
same weights, whose data term holds weak, noisy pixels to their values: see
``benchmarks/bench_solve.py``.

Every kernel works in float32 on C-contiguous (H, W) maps and writes each output
element from one thread in a fixed order, so results are the same bytes for any
number of Numba threads.
"""
from __future__ import annotations


import numpy as np
from numba import njit, prange

from .kernels import JIT, LUT_SIZE, range_table

__all__ = ["affinities", "fgs_normalized", "wls_solve"]

_CHUNK = 64  # columns per thread in the column solves (contiguous rows of this width)


_LUT_SIZE = LUT_SIZE  # affinities below exp(-8) (LUT_SPAN sigmas) count as 0


@njit(**JIT)
def affinities(g, sigma, ax, ay):
    """Neighbour affinities of the guide ``g``: ``ax[y, x]`` links (y, x)-(y, x+1), ``ay[y, x]`` (y, x)-(y+1, x).

    ``exp(-dg^2 / (2 sigma^2))`` looked up in a 1024-entry table over ``|dg| < 4 sigma``
    (beyond: 0). The last column of ``ax`` and the last row of ``ay`` are 0 (no neighbour).
    """
    H, W = g.shape
    lut, step = range_table(sigma)
    inv = np.float32(1.0 / step)
    top = np.float32(_LUT_SIZE)
    for y in prange(H):
        gy = g[y]
        axy = ax[y]
        for x in range(W - 1):
            axy[x] = lut[int(min(abs(gy[x + 1] - gy[x]) * inv, top))]
        axy[W - 1] = 0.0
        ayy = ay[y]
        if y < H - 1:
            gn = g[y + 1]
            for x in range(W):
                ayy[x] = lut[int(min(abs(gn[x] - gy[x]) * inv, top))]
        else:
            for x in range(W):
                ayy[x] = 0.0


@njit(cache=True, inline="always")
def _row_forward(uy, vy, ay_, cp, lam, x, left, prev_c):
    c = -lam * ay_[x]
    a = -lam * left
    im = np.float32(1.0) / (np.float32(1.0) - a - c - a * prev_c)  # 1 + lam (left + right) - a c'
    cp[x] = c * im
    if x > 0:
        uy[x] = (uy[x] - a * uy[x - 1]) * im
        vy[x] = (vy[x] - a * vy[x - 1]) * im
    else:
        uy[x] = uy[x] * im
        vy[x] = vy[x] * im
    return cp[x]


@njit(**JIT)
def _smooth_rows(u, v, ax, lam, scratch):
    """Solve ``(I + lam L_row) x = b`` in place along every row, for ``b`` = u and = v (Thomas).

    Each task runs the recurrences of 4 rows side by side, which hides the latency of
    their divisions.
    """
    H, W = u.shape
    for i in prange((H + 3) // 4):
        y0 = 4 * i
        n = min(4, H - y0)
        if n == 4:
            c0 = c1 = c2 = c3 = np.float32(0.0)
            for x in range(W):
                l0 = ax[y0, x - 1] if x > 0 else np.float32(0.0)
                l1 = ax[y0 + 1, x - 1] if x > 0 else np.float32(0.0)
                l2 = ax[y0 + 2, x - 1] if x > 0 else np.float32(0.0)
                l3 = ax[y0 + 3, x - 1] if x > 0 else np.float32(0.0)
                c0 = _row_forward(u[y0], v[y0], ax[y0], scratch[y0], lam, x, l0, c0)
                c1 = _row_forward(u[y0 + 1], v[y0 + 1], ax[y0 + 1], scratch[y0 + 1], lam, x, l1, c1)
                c2 = _row_forward(u[y0 + 2], v[y0 + 2], ax[y0 + 2], scratch[y0 + 2], lam, x, l2, c2)
                c3 = _row_forward(u[y0 + 3], v[y0 + 3], ax[y0 + 3], scratch[y0 + 3], lam, x, l3, c3)
        else:
            for y in range(y0, y0 + n):
                c = np.float32(0.0)
                for x in range(W):
                    left = ax[y, x - 1] if x > 0 else np.float32(0.0)
                    c = _row_forward(u[y], v[y], ax[y], scratch[y], lam, x, left, c)
        for y in range(y0, y0 + n):
            uy, vy, cp = u[y], v[y], scratch[y]
            for x in range(W - 2, -1, -1):
                uy[x] -= cp[x] * uy[x + 1]
                vy[x] -= cp[x] * vy[x + 1]


@njit(**JIT)
def _smooth_cols(u, v, ay, lam, scratch):
    """Solve ``(I + lam L_col) x = b`` in place along every column, for ``b`` = u and = v."""
    H, W = u.shape
    n_chunks = (W + _CHUNK - 1) // _CHUNK
    for ch in prange(n_chunks):
        x0 = ch * _CHUNK
        x1 = min(W, x0 + _CHUNK)
        for y in range(H):
            for x in range(x0, x1):
                up = ay[y - 1, x] if y > 0 else np.float32(0.0)
                c = -lam * ay[y, x]
                a = -lam * up
                pc = scratch[y - 1, x] if y > 0 else np.float32(0.0)
                m = np.float32(1.0) - a - c - a * pc
                im = np.float32(1.0) / m
                scratch[y, x] = c * im
                pu = u[y - 1, x] if y > 0 else np.float32(0.0)
                pv = v[y - 1, x] if y > 0 else np.float32(0.0)
                u[y, x] = (u[y, x] - a * pu) * im
                v[y, x] = (v[y, x] - a * pv) * im
        for y in range(H - 2, -1, -1):
            for x in range(x0, x1):
                u[y, x] -= scratch[y, x] * u[y + 1, x]
                v[y, x] -= scratch[y, x] * v[y + 1, x]


@njit(**JIT)
def _weighted_data(d, w, wd, ww):
    H, W = d.shape
    for y in prange(H):
        for x in range(W):
            ww[y, x] = w[y, x]
            wd[y, x] = w[y, x] * d[y, x]


@njit(**JIT)
def _normalise(wd, ww, d, eps, out):
    H, W = d.shape
    for y in prange(H):
        for x in range(W):
            s = ww[y, x]
            out[y, x] = wd[y, x] / s if s > eps else d[y, x]


def fgs_normalized(depth, weight, ax, ay, lam, iterations=3, eps=1e-6):
    """Confidence-weighted Fast Global Smoother: ``S(w d) / S(w)`` (Min et al. 2014).

    Parameters
    ----------
    depth, weight : ndarray (H, W) float32
        Data and its weight (>= 0).
    ax, ay : ndarray (H, W) float32
        Neighbour affinities from :func:`affinities`.
    lam : float
        Smoothness (the spatial reach grows as ``sqrt(lam)`` pixels).
    iterations : int
        Rounds of row-then-column solves; ``lam_t = 1.5 lam 4^(T-t) / (4^T - 1)``.

    Returns
    -------
    smoothed : ndarray (H, W) float32
    support : ndarray (H, W) float32
        ``S(w)``: the weight that reached each pixel.
    """
    H, W = depth.shape
    wd = np.empty((H, W), np.float32)
    ww = np.empty((H, W), np.float32)
    scratch = np.empty((H, W), np.float32)
    _weighted_data(depth, weight, wd, ww)
    T = int(iterations)
    for t in range(1, T + 1):
        lam_t = np.float32(1.5 * lam * 4.0 ** (T - t) / (4.0 ** T - 1.0))
        _smooth_rows(wd, ww, ax, lam_t, scratch)
        _smooth_cols(wd, ww, ay, lam_t, scratch)
    out = np.empty((H, W), np.float32)
    _normalise(wd, ww, depth, np.float32(eps), out)
    return out, ww


def wls_solve(depth, weight, guide, lam=100.0, sigma=0.03, iterations=3):
    """Confidence-weighted, edge-aware global smoothing of a depth map.

    Parameters
    ----------
    depth : ndarray (H, W)
        Measured depth (any unit; frames in dffbatch).
    weight : ndarray (H, W)
        Evidence of each pixel, >= 0 (0: no evidence, the pixel is filled).
    guide : ndarray (H, W)
        Guide image in [0, 1]; smoothing stops at its edges.
    lam : float
        Smoothness lambda of the FGS; its reach is about ``sqrt(lam)`` pixels per pass.
    sigma : float
        Edge sensitivity: guide steps much larger than ``sigma`` stop the smoothing.
    iterations : int
        FGS rounds (rows then columns each).

    Returns
    -------
    depth : ndarray (H, W) float32
    support : ndarray (H, W) float32
        The evidence that reached each pixel (``S(w)``).
    """
    for name, value, ok in (("lam", lam, lambda v: v >= 0), ("sigma", sigma, lambda v: v > 0)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
                or not np.isfinite(value) or not ok(value):
            raise ValueError(f"{name} must be a finite number {'>= 0' if name == 'lam' else '> 0'}, got {value!r}")
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 1:
        raise ValueError(f"iterations must be an integer >= 1, got {iterations!r}")
    d = np.ascontiguousarray(depth, np.float32)
    w = np.ascontiguousarray(weight, np.float32)
    g = np.ascontiguousarray(guide, np.float32)
    if d.ndim != 2 or w.shape != d.shape or g.shape != d.shape:
        raise ValueError(f"depth, weight and guide must be 2-D maps of one shape, got {d.shape}, {w.shape}, {g.shape}")
    if not (np.isfinite(w).all() and (w >= 0).all()):
        raise ValueError("weight must be finite and >= 0")
    ax = np.empty_like(d)
    ay = np.empty_like(d)
    affinities(g, np.float32(sigma), ax, ay)
    return fgs_normalized(d, w, ax, ay, lam, iterations)
