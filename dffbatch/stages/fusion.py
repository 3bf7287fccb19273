"""All-in-focus by Laplacian-pyramid fusion, computed while frames stream past.

Each frame's Laplacian pyramid (Burt & Adelson) is blended into running sums, level by
level, with weights ``w_k = F_k ** sharpness`` (its focus measure; the ratio between
frames at a pixel is what counts, so the measure's scale does not matter) smoothed by
their own Gaussian pyramid. Smooth weights at coarse levels are what removes the halos
and seams that per-pixel selection leaves at occlusion edges, while fine levels still
take the sharpest frame's detail. Memory: two pyramids of running sums (about 2.7 x one
frame in float64), never one pyramid per frame.
"""
from __future__ import annotations

import numpy as np

from .base import FrameStage

__all__ = ["PyramidFusion", "Pyramid", "pyr_down", "pyr_up"]

_K = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _blur(a):
    """Separable binomial [1 4 6 4 1]/16 blur, reflected borders (slices, no copies per tap)."""
    for ax in (0, 1):
        n = a.shape[ax]
        if n < 3:
            continue
        pad = [(2, 2) if i == ax else (0, 0) for i in range(a.ndim)]
        p = np.pad(a, pad, mode="reflect")
        sl = [slice(None)] * a.ndim

        def tap(i):
            sl[ax] = slice(i, i + n)
            return p[tuple(sl)]
        a = (tap(0) + tap(4)) * _K[0] + (tap(1) + tap(3)) * _K[1] + tap(2) * _K[2]
    return a


def pyr_down(a):
    """Binomial 5-tap blur, then every second pixel."""
    return _blur(a)[::2, ::2]


def pyr_up(a, shape):
    """Upsample to ``shape`` (H, W) by zero insertion and a 4x binomial blur."""
    out = np.zeros((shape[0], shape[1]) + a.shape[2:], a.dtype)
    out[::2, ::2] = a
    return _blur(out) * 4.0


class PyramidFusion:
    """Running Laplacian-pyramid fusion for frames (H, W, C) of one dtype."""

    def __init__(self, shape_hwc, dtype, sharpness=16.0, min_side=16, max_levels=6):
        H, W, _ = shape_hwc
        self.dtype = np.dtype(dtype)
        self.sharpness = float(sharpness)
        levels = 1
        while levels < max_levels and min(H, W) // (2 ** levels) >= min_side:
            levels += 1
        self.levels = levels
        self.acc = None
        self.wsum = None

    def update(self, frame3, focus):
        g = frame3.astype(np.float64)
        w = (focus.astype(np.float64) + 1e-12) ** self.sharpness
        gp, wp = [g], [w]
        for _ in range(self.levels - 1):
            gp.append(pyr_down(gp[-1]))
            wp.append(pyr_down(wp[-1]))
        lap = [gp[i] - pyr_up(gp[i + 1], gp[i].shape[:2]) for i in range(self.levels - 1)] + [gp[-1]]
        if self.acc is None:
            self.acc = [np.zeros_like(l_) for l_ in lap]
            self.wsum = [np.zeros_like(w_) for w_ in wp]
        for i in range(self.levels):
            self.acc[i] += lap[i] * wp[i][..., None]
            self.wsum[i] += wp[i]

    def finish(self):
        lev = [a / np.maximum(s, 1e-300)[..., None] for a, s in zip(self.acc, self.wsum)]
        img = lev[-1]
        for i in range(self.levels - 2, -1, -1):
            img = pyr_up(img, lev[i].shape[:2]) + lev[i]
        if self.dtype.kind in "ui":
            info = np.iinfo(self.dtype)
            return np.clip(np.rint(img), info.min, info.max).astype(self.dtype)
        return img.astype(self.dtype)


class Pyramid(FrameStage):
    """Per-frame stage *composite* for ``pyramid``: each frame, on the output grid, fused
    with weights from its focus (``frame.focus``); at the end ``maps.allfocus``."""

    timing = "composite"
    fusable = False

    def __init__(self, grid):
        self.grid = grid

    def start(self, shape, dtype):
        self.planar = len(shape) == 2
        self.fusion = PyramidFusion((*self.grid.shape(shape), 1 if self.planar else shape[2]), dtype)

    def update(self, frame, k):
        self.fusion.update(self.grid.image(frame.pixels, k), frame.focus)

    def finish(self, maps):
        allfocus = self.fusion.finish()
        maps.allfocus = allfocus[:, :, 0] if self.planar else allfocus
