"""Post stage *fill*: where a region has no focus evidence, fill the depth smoothly from its confident surroundings.

A global solve spreads whatever evidence a region holds. Where a region is bare (the
petals of a flower, the inside of a can, a blank backdrop) the little it holds is
mostly false: a highlight, JPEG noise, the glow of a sharper object nearby. Spread
out, those specks become blotches of a made-up depth. This stage replaces the depth of
such regions by a fill from the pixels that the calibrated confidence trusts:

1. ``p``: the calibrated probability of the refined depth
   (:mod:`dffbatch.stages.confidence`, with the constants fitted before this stage existed:
   :data:`BEFORE_COEF`);
2. the fill: a normalised, edge-aware global smoothing (:func:`dffbatch.stages.solve.fgs_normalized`)
   of the depth with weights ``w = clip((p - P0) / (1 - P0), 0, 1) ** POWER``, so that
   only pixels more likely right than wrong take part, with a long reach
   (``LAMBDA``) and a strict guide (``SIGMA``) that stops at object outlines;
3. each pixel keeps its own depth in the share ``w`` and takes the fill's in ``1 - w``.

With the strict guide the fill stays on its own side of an occlusion edge, so a band of
doubt along the edge is filled from the object it belongs to. (Keeping pixels whose
25 px neighbourhood is confident, tried to protect such bands, kept the blotches too.)

The calibration stage runs afterwards, so the confidence describes the depth as
filled (its ``wls`` constants are fitted on the filled depth). The constants here were
chosen on the renderer's ground truth (``benchmarks/bench_solve.py``).
"""
from __future__ import annotations

import numpy as np
from numba import prange

from .base import PostStage
from .kernels import JIT, kernel

__all__ = ["P0", "POWER", "LAMBDA", "SIGMA", "BEFORE_COEF", "BEFORE_UNKNOWN", "fill_unknown", "Fill"]

#: Confidence above which a pixel takes part in the fill, and the power on its weight.
P0, POWER = 0.5, 2.0
#: FGS lambda of the fill (reach about 20 px per pass) and its guide's edge sensitivity
#: (luminance units; the depth solve's is 0.03). A strict guide keeps a bare backdrop
#: from taking the depth of the object in front of it, and an occlusion band from taking
#: the far side's: on the renderer with sigma 0.03 the fill made the occlusion steps 19%
#: and the ``bare`` scenes 25% worse than no fill; with 0.01 both are better.
LAMBDA, SIGMA = 400.0, 0.01
#: The calibration of ``wls``'s depth *before* the fill (:data:`dffbatch.stages.confidence.COEF`
#: and ``UNKNOWN`` as ``benchmarks/fit_confidence.py`` fitted them without this stage): the
#: probability that decides what to fill. Held apart from the final calibration, which
#: is fitted on the filled depth, so that refitting that one does not move the fill.
BEFORE_COEF, BEFORE_UNKNOWN = (4.617, 0, 0, 0, 0, 0.2737, 0, -1.308, 0.4256), 0.178


@kernel(**JIT)
def _weights(p, p0, power, w):
    """``clip((p - p0) / (1 - p0), 0, 1) ** power``; a square (the default POWER) as ``t * t``,
    which LLVM vectorises (25x faster than ``powf`` at 1080^2, and rounded exactly)."""
    H, W = p.shape
    inv = np.float32(1.0 / (1.0 - p0))
    square = power == np.float32(2.0)
    for y in prange(H):
        py, wy = p[y], w[y]
        if square:
            for x in range(W):
                t = min(max((py[x] - p0) * inv, np.float32(0.0)), np.float32(1.0))
                wy[x] = t * t
        else:
            for x in range(W):
                wy[x] = min(max((py[x] - p0) * inv, np.float32(0.0)), np.float32(1.0)) ** power


@kernel(**JIT)
def _keep_or_fill(depth, fill, w, out):
    H, W = depth.shape
    for y in prange(H):
        for x in range(W):
            t = w[y, x]
            out[y, x] = t * depth[y, x] + (np.float32(1.0) - t) * fill[y, x]


def fill_unknown(depth, confidence, guide):
    """Fill the depth of regions without confident pixels from their confident surroundings.

    Parameters
    ----------
    depth : ndarray (H, W) float32
        Refined depth, frames.
    confidence : ndarray (H, W) float32
        Calibrated probability that ``depth`` is within a frame of the truth, in [0, 1].
    guide : ndarray (H, W) float32
        Luminance of the all-in-focus image in [0, 1]; the fill stops at its edges.

    Returns
    -------
    depth : ndarray (H, W) float32
        The depth: kept where confident, filled where not.
    kept : ndarray (H, W) float32
        The share of its own depth each pixel kept, in [0, 1] (0: all filled).
    """
    from .solve import affinities, fgs_normalized
    d = np.ascontiguousarray(depth, np.float32)
    p = np.ascontiguousarray(confidence, np.float32)
    w = np.empty_like(p)
    _weights(p, np.float32(P0), np.float32(POWER), w)
    ax, ay = np.empty_like(d), np.empty_like(d)
    affinities(np.ascontiguousarray(guide, np.float32), np.float32(SIGMA), ax, ay)
    fill, _ = fgs_normalized(d, w, ax, ay, LAMBDA, 3)
    out = np.empty_like(d)
    _keep_or_fill(d, fill, w, out)
    return out, w


class Fill(PostStage):
    """``maps.depth`` filled where its calibrated confidence is low (the refine mode's own
    ``maps.confidence`` is left for the calibration after it)."""

    def __init__(self, refine: str):
        self.refine = refine

    def run(self, maps):
        from .confidence import confidence_of
        p = confidence_of(maps, self.refine, BEFORE_COEF, BEFORE_UNKNOWN)
        maps.depth, _ = fill_unknown(maps.depth, p, maps.guide())
        return maps
