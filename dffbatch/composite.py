"""Stage *composite*: the all-in-focus image, built while frames stream past.

* ``select``: each pixel is copied from its best-focused frame (exact input values).
* ``interpolate``: each pixel is the linear blend of the two frames around its
  sub-frame depth ``d`` (weight ``d - floor(d)`` on the upper one), as in the
  original method; integer outputs are rounded to nearest. Keeps the colours of the
  frames below, at and above the best one: 3 images of memory, not N.

The depth used is the unfiltered sub-frame depth (the median filter only cleans the
depth map). Output dtype and channels equal the input's; values are never rescaled.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .kernels import JIT

__all__ = ["COMPOSITES", "Compositor"]

COMPOSITES = ("select", "interpolate", "pyramid")  # pyramid: dffbatch.fusion


@njit(**JIT)
def update_select(frame, best, k, out):
    """Copy frame ``k``'s pixels where it is the best frame so far. Arrays are (H, W, C)."""
    H, W, C = frame.shape
    kk = np.int32(k)
    for y in prange(H):
        src, by, dst = frame[y], best[y], out[y]
        if C == 3:  # spelt out for RGB: 30% faster than the channel loop
            for x in range(W):
                if by[x] == kk:
                    dst[x, 0] = src[x, 0]
                    dst[x, 1] = src[x, 1]
                    dst[x, 2] = src[x, 2]
        else:
            for x in range(W):
                if by[x] == kk:
                    for c in range(C):
                        dst[x, c] = src[x, c]


@njit(**JIT)
def update_neighbours(frame, prev, best, k, below, at, above):
    """Keep the colours of the best frame and of the frames just below and above it."""
    H, W, C = frame.shape
    for y in prange(H):
        for x in range(W):
            b = best[y, x]
            if b == k:
                for c in range(C):
                    at[y, x, c] = frame[y, x, c]
                    below[y, x, c] = prev[y, x, c]
            elif b == k - 1:
                for c in range(C):
                    above[y, x, c] = frame[y, x, c]


@njit(**JIT)
def blend(depth, best, below, at, above, is_int, out):
    """Linear blend between the frames around ``depth`` (see module docstring)."""
    H, W, C = at.shape
    for y in prange(H):
        for x in range(W):
            d = np.float64(depth[y, x])
            lo = math.floor(d)
            t = d - lo
            b = best[y, x]
            for c in range(C):
                if lo < b:
                    v = (1.0 - t) * np.float64(below[y, x, c]) + t * np.float64(at[y, x, c])
                else:
                    v = (1.0 - t) * np.float64(at[y, x, c]) + t * np.float64(above[y, x, c])
                if is_int:
                    v = math.floor(v + 0.5)
                out[y, x, c] = v


class Compositor:
    """Running all-in-focus image for frames of shape (H, W, C) and one dtype."""

    def __init__(self, shape_hwc, dtype, mode="select"):
        if mode not in ("select", "interpolate"):
            raise ValueError(f"unknown composite {mode!r}; choose one of {', '.join(COMPOSITES)}")
        self.mode = mode
        self.dtype = np.dtype(dtype)
        self.at = np.zeros(shape_hwc, self.dtype)
        if mode == "interpolate":
            self.below = np.zeros(shape_hwc, self.dtype)
            self.above = np.zeros(shape_hwc, self.dtype)

    def update(self, frame3, prev3, best, k):
        """Fold frame ``k`` (as (H, W, C)); ``best`` is the depth state after frame k."""
        if self.mode == "select":
            update_select(frame3, best, k, self.at)
        else:
            update_neighbours(frame3, frame3 if prev3 is None else prev3, best, k,
                              self.below, self.at, self.above)

    def finish(self, depth, best):
        """The all-in-focus image, (H, W, C), input dtype."""
        if self.mode == "select":
            return self.at
        out = np.empty_like(self.at)
        blend(depth, best, self.below, self.at, self.above, self.dtype.kind in "ui", out)
        return out
