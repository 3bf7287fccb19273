"""Stage *depth*: the running best frame per pixel and its sub-frame refinement.

Frames arrive one at a time. Per pixel the state keeps the best focus value so far,
its frame index and the focus values of the frames just below and above it, plus the
running sum of the focus curve: O(H*W) memory whatever the number of frames.

Sub-frame depth (Nayar & Nakagawa 1994) fits a curve through the three focus values
``F[m-1], F[m], F[m+1]`` around the best frame ``m``:

* ``gaussian``: a parabola through ``ln F`` (a Gaussian focus curve); offset
  ``0.5 * (ln F[m-1] - ln F[m+1]) / (ln F[m-1] - 2 ln F[m] + ln F[m+1])``;
* ``parabolic``: the same through ``F`` itself;
* ``none``: the integer best frame.

Arithmetic is float32. Zeros are floored at 1e-30 before the logarithm; a flat curve (zero denominator), a
peak on the first or last frame, or a zero peak give offset 0; the offset is clamped
to [-0.5, 0.5] and the depth to [0, N-1], so depth is always finite. Ties resolve to
the lowest frame index (a later frame must be strictly sharper to win).

Confidence is the relative prominence of the peak over the mean of the focus curve,
``(F[m] - mean(F)) / F[m]`` in [0, 1): 0 for a flat curve (no texture, or texture
that no frame brings into focus), towards 1 for a sharp isolated peak.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .kernels import JIT

__all__ = ["INTERPOLATIONS", "DepthState"]

INTERPOLATIONS = ("gaussian", "parabolic", "none")
_MODE = {"none": 0, "parabolic": 1, "gaussian": 2}
_TINY = np.float32(1e-30)


@njit(**JIT)
def update_best(f, f_prev, k, best, fbest, fbelow, fabove, fsum):
    """Fold frame ``k``'s focus ``f`` into the running state (``f_prev`` is frame k-1's)."""
    H, W = f.shape
    for y in prange(H):
        fy, fpy, by, fby = f[y], f_prev[y], best[y], fbest[y]
        fbl, fab, fsy = fbelow[y], fabove[y], fsum[y]
        for x in range(W):
            v = fy[x]
            fsy[x] += v
            if by[x] == k - 1:
                fab[x] = v
            if v > fby[x]:
                by[x] = k
                fby[x] = v
                fbl[x] = fpy[x] if k > 0 else np.float32(0.0)
                fab[x] = np.float32(0.0)


@njit(cache=True, inline="always")
def _offset(fm, f0, fp, mode):
    """Sub-frame offset of the peak from the three focus values (float32 arithmetic)."""
    zero = np.float32(0.0)
    half = np.float32(0.5)
    if mode == 0 or f0 <= zero:
        return zero
    if mode == 2:
        fm = max(fm, _TINY)
        fp = max(fp, _TINY)
        num = math.log(fm / fp)                # ln F[m-1] - ln F[m+1]
        den = math.log((fm / f0) * (fp / f0))  # ln F[m-1] - 2 ln F[m] + ln F[m+1]
    else:
        num = fm - fp
        den = fm - np.float32(2.0) * f0 + fp
    if not den < zero:
        return zero
    off = half * num / den
    return min(half, max(-half, off))


@njit(**JIT)
def finish_depth(best, fbest, fbelow, fabove, fsum, n, mode, depth, confidence):
    """Sub-frame depth and confidence from the final state of ``n`` frames."""
    H, W = best.shape
    top = np.float32(n - 1)
    inv_n = np.float32(1.0 / n)
    for y in prange(H):
        by, f0y, fmy, fpy, fsy = best[y], fbest[y], fbelow[y], fabove[y], fsum[y]
        dy, cy = depth[y], confidence[y]
        for x in range(W):
            b = by[x]
            f0 = f0y[x]
            off = np.float32(0.0)
            if 0 < b < n - 1:
                off = _offset(fmy[x], f0, fpy[x], mode)
            dy[x] = min(max(np.float32(b) + off, np.float32(0.0)), top)
            cy[x] = (f0 - fsy[x] * inv_n) / f0 if f0 > 0.0 else np.float32(0.0)


class DepthState:
    """Running per-pixel state of the best-focused frame for frames of shape (H, W)."""

    def __init__(self, shape):
        self.best = np.full(shape, -1, np.int32)
        self.fbest = np.full(shape, -1.0, np.float32)
        self.fbelow = np.zeros(shape, np.float32)
        self.fabove = np.zeros(shape, np.float32)
        self.fsum = np.zeros(shape, np.float32)
        self.n = 0

    def update(self, f: np.ndarray, f_prev: np.ndarray) -> None:
        """Fold the next frame's focus measure ``f`` (``f_prev``: the previous one's)."""
        update_best(f, f_prev, self.n, self.best, self.fbest, self.fbelow, self.fabove, self.fsum)
        self.n += 1

    def finish(self, interpolation: str = "gaussian"):
        """Return ``(depth, confidence)``, float32 (H, W); depth in frame units."""
        if interpolation not in _MODE:
            raise ValueError(f"unknown interpolation {interpolation!r}; choose one of {', '.join(INTERPOLATIONS)}")
        depth = np.empty(self.best.shape, np.float32)
        conf = np.empty(self.best.shape, np.float32)
        finish_depth(self.best, self.fbest, self.fbelow, self.fabove, self.fsum,
                     self.n, _MODE[interpolation], depth, conf)
        return depth, conf
