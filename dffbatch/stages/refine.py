"""Stage *refine*: clean the depth map.

``median_filter`` is a ``size x size`` median (odd size; 0 or 1 = off) with borders
reflected about the edge pixel. It never creates values that were not in the window,
so a finite depth stays finite and within [0, N-1].
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ._median_networks import _median5, _median7
from .kernels import JIT, LUT_SIZE, kernel, pad_reflect, range_table

__all__ = ["median_filter"]


@njit(cache=True, inline="always")
def _sort2(a, b):
    return min(a, b), max(a, b)


@kernel(**JIT)
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


@kernel(**JIT)
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


# ------------------------------------------------------------------ edge-aware refinement


@kernel(**JIT)
def _joint_bilateral(depth, conf, guide, r, sigma_s, sigma_r, power, out_d, out_c):
    """Confidence-weighted joint bilateral filter of ``depth`` guided by ``guide``.

    weight(x, y) = exp(-|x-y|^2 / 2 sigma_s^2) * exp(-(g(x)-g(y))^2 / 2 sigma_r^2) * c(y)^power
    The spatial weights are tabulated, the range weights looked up in a 1024-entry table
    over |dg| < 4 sigma_r (beyond: 0). Borders: the window is clipped to the image.
    """
    H, W = depth.shape
    k = 2 * r + 1
    spatial = np.empty((k, k), np.float32)
    for i in range(k):
        for j in range(k):
            spatial[i, j] = math.exp(-0.5 * ((i - r) ** 2 + (j - r) ** 2) / (sigma_s * sigma_s))
    lut, step = range_table(sigma_r)
    inv_step = 1.0 / step
    cw = np.empty_like(conf)
    for y in prange(H):
        for x in range(W):
            cw[y, x] = conf[y, x] ** power
    for y in prange(H):
        for x in range(W):
            g0 = guide[y, x]
            num = 0.0
            den = 0.0
            cnum = 0.0
            cden = 0.0
            for yy in range(max(0, y - r), min(H, y + r + 1)):
                srow = spatial[yy - y + r]
                grow = guide[yy]
                for xx in range(max(0, x - r), min(W, x + r + 1)):
                    idx = int(abs(grow[xx] - g0) * inv_step)
                    if idx >= LUT_SIZE:
                        continue
                    w = srow[xx - x + r] * lut[idx]
                    wc = w * cw[yy, xx]
                    num += wc * depth[yy, xx]
                    den += wc
                    cnum += w * conf[yy, xx]
                    cden += w
            out_d[y, x] = num / den if den > 1e-12 else depth[y, x]
            out_c[y, x] = cnum / cden if cden > 0 else conf[y, x]


def joint_bilateral(depth, confidence, guide, radius=7, sigma_r=0.05, power=2.0, iterations=2):
    """Edge-aware refinement: fill unreliable depth from confident neighbours of similar colour.

    Parameters
    ----------
    depth, confidence : ndarray (H, W) float32
        Depth (frame units) and its confidence in [0, 1].
    guide : ndarray (H, W) float32
        Luminance of the all-in-focus image in [0, 1] (edges are kept where it changes).
    radius : int
        Window radius in pixels (spatial sigma = radius / 2).
    sigma_r : float
        Range sigma on the guide (luminance units).
    power : float
        Confidence exponent: higher trusts confident pixels more.
    iterations : int
        Passes; each spreads confident depth a further ``radius`` pixels.

    Returns
    -------
    depth, confidence : float32 (H, W)
        Refined depth, and the updated confidence: the local mean confidence of the
        similar-coloured neighbourhood each pixel was filled from.
    """
    d = np.ascontiguousarray(depth, np.float32)
    c = np.clip(np.ascontiguousarray(confidence, np.float32), 0, 1)
    g = np.ascontiguousarray(guide, np.float32)
    for _ in range(max(1, iterations)):
        od = np.empty_like(d)
        oc = np.empty_like(c)
        _joint_bilateral(d, c, g, int(radius), float(max(radius, 1)) / 2.0, float(sigma_r), float(power), od, oc)
        d, c = od, oc
    return d, c
