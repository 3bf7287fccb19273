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


@njit(cache=True, inline="always")
def _nearest(M, x, y, Hf, Wf):
    """Index of the frame pixel nearest to ``M @ (x, y, 1)``, clamped to the frame."""
    sx = M[0, 0] * x + M[0, 1] * y + M[0, 2]
    sy = M[1, 0] * x + M[1, 1] * y + M[1, 2]
    ix = min(max(int(math.floor(sx + 0.5)), 0), Wf - 1)
    iy = min(max(int(math.floor(sy + 0.5)), 0), Hf - 1)
    return iy, ix


@njit(**JIT)
def update_select_warped(frame, M, best, k, out):
    """:func:`update_select` for a frame not on the output grid (alignment): output pixel
    (y, x) takes the frame pixel nearest to ``M @ (x, y, 1)``, only where it is needed."""
    H, W, C = out.shape
    Hf, Wf = frame.shape[0], frame.shape[1]
    kk = np.int32(k)
    for y in prange(H):
        for x in range(W):
            if best[y, x] == kk:
                iy, ix = _nearest(M, x, y, Hf, Wf)
                for c in range(C):
                    out[y, x, c] = frame[iy, ix, c]


@njit(**JIT)
def update_neighbours_warped(frame, M, prev, Mp, best, k, below, at, above):
    """:func:`update_neighbours` for frames not on the output grid (see
    :func:`update_select_warped`); ``prev`` is frame k-1 with its own matrix ``Mp``."""
    H, W, C = at.shape
    Hf, Wf = frame.shape[0], frame.shape[1]
    for y in prange(H):
        for x in range(W):
            b = best[y, x]
            if b == k:
                iy, ix = _nearest(M, x, y, Hf, Wf)
                jy, jx = _nearest(Mp, x, y, Hf, Wf)
                for c in range(C):
                    at[y, x, c] = frame[iy, ix, c]
                    below[y, x, c] = prev[jy, jx, c]
            elif b == k - 1:
                iy, ix = _nearest(M, x, y, Hf, Wf)
                for c in range(C):
                    above[y, x, c] = frame[iy, ix, c]


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

    def update(self, frame3, prev3, best, k, M=None, M_prev=None):
        """Fold frame ``k`` (as (H, W, C)); ``best`` is the depth state after frame k.

        With ``M`` (alignment), the frames are on their own grids and 2x3 matrices map
        output pixels to frame pixels (``M_prev`` for ``prev3``): each output pixel
        takes the nearest frame pixel, sampled only where this frame contributes.
        """
        if M is None:
            if self.mode == "select":
                update_select(frame3, best, k, self.at)
            else:
                update_neighbours(frame3, frame3 if prev3 is None else prev3, best, k,
                                  self.below, self.at, self.above)
        elif self.mode == "select":
            update_select_warped(frame3, M, best, k, self.at)
        else:
            if prev3 is None:
                prev3, M_prev = frame3, M
            update_neighbours_warped(frame3, M, prev3, M_prev, best, k, self.below, self.at, self.above)

    def finish(self, depth, best):
        """The all-in-focus image, (H, W, C), input dtype."""
        if self.mode == "select":
            return self.at
        out = np.empty_like(self.at)
        blend(depth, best, self.below, self.at, self.above, self.dtype.kind in "ui", out)
        return out
