"""The per-frame stages *measure -> depth -> composite* fused over bands of rows.

Run one after the other, each stage is a pass over whole-frame arrays: luminance,
per-pixel quantity, window sums, the running depth state, the all-in-focus state.
:func:`frame_pass` runs them band by band instead (:data:`BAND` rows, one band per
task): the band's luminance and quantity (with their halo, the window's reach) stay in
the cache, and each output row is folded into the depth state and the all-in-focus
image as soon as its window sums are done. The results are the same bytes as the
stage kernels' (:class:`dffbatch.stages.measure.FocusMeasure`,
:func:`dffbatch.stages.depth.update_best`, :func:`dffbatch.stages.composite.update_neighbours`),
which stay the reference in the tests: the bands call the same row functions, in the
same order of sums.

Measured on a 1080 x 1080 RGB frame, one thread: 4.12 ms against 4.50 for the stages
one after the other. Less than the memory traffic saved suggests, because the stage
passes are vectorised and compute-bound here; the measure alone, banded, is slower
than whole-frame (2.15 against 2.0 ms: the halo is computed twice), so the aligned
path, which measures on the frame's own grid and warps the measure before the depth
update, keeps the whole-frame stages.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .base import FrameStage
from .composite import _bits, _neighbours_row, _ones, _select_row
from .depth import _update_row
from .kernels import JIT, kernel, readonly, reflect_index
from .measure import (MEASURE_ID, _VARIANCE, _box_sum_row, _box_var_row, _luma_row, _luma_weights, _q_row,
                      _reflect_row_ends, value_scale)

__all__ = ["frame_pass", "measure_pass", "FusedPass"]

#: Rows per band: the halo (window radius + the quantity's reach, each side: 10 rows
#: for lapd at window 9) is computed again for each band; 64 keeps it to 16%.
BAND = 64


@kernel(**JIT)
def frame_pass(img, scale, mid, step, threshold, pad, r, box_scale, variance, f,
               update, f_prev, k, best, fbest, fbelow, fabove, fsum, fsecond, flag,
               comp, frame, prev, ones, below, at, above):
    """Focus measure of ``img`` into ``f``, then (``update``) the depth state with it, then
    (``comp``: 0 none, 1 select, 2 neighbours) the all-in-focus state, band by band.

    ``img`` (H, W, C) is what the measure sees (C in {1, 3, 4}; ``scale`` maps it to
    [0, 1]); ``mid``, ``step``, ``threshold``, ``pad``: the measure as
    :class:`dffbatch.stages.measure.FocusMeasure` holds it; ``r`` the window radius,
    ``box_scale`` the sum's factor, ``variance`` the window statistic. The depth state
    and the all-in-focus arrays are those of :class:`dffbatch.stages.depth.DepthState` and
    :class:`dffbatch.stages.composite.Compositor` (``frame``, ``prev``, ``below``, ``at``,
    ``above`` seen as unsigned integers, ``ones`` their all-ones value).
    """
    H, W = f.shape
    weights = _luma_weights(scale)
    kk = np.int32(k)
    C = frame.shape[2]
    for band in prange((H + BAND - 1) // BAND):
        y0 = band * BAND
        y1 = min(H, y0 + BAND)
        lo, hi = H, 0  # the image rows whose quantity the band's windows read
        for y in range(y0, y1):
            for dy in range(-r, r + 1):
                j = reflect_index(y + dy, H)
                lo = min(lo, j)
                hi = max(hi, j + 1)
        n = hi - lo
        P = np.empty((n + 2 * pad, W + 2 * pad), np.float32)  # padded luminance of rows lo-pad .. hi+pad
        for i in range(n + 2 * pad):
            _luma_row(img[reflect_index(lo - pad + i, H)], weights, P[i, pad:pad + W])
            _reflect_row_ends(P[i], pad, W)
        q = np.empty((n, W), np.float32)
        for i in range(n):
            _q_row(P, pad, i, mid, step, threshold, q[i])
        if variance:
            s1, s2 = np.empty(W + 2 * r), np.empty(W + 2 * r)
            for y in range(y0, y1):
                _box_var_row(q, lo, H, y, r, s1, s2, f[y])
        else:
            row = np.empty(W + 2 * r, np.float32)
            for y in range(y0, y1):
                _box_sum_row(q, lo, H, y, r, box_scale, row, f[y])
        if update:
            for y in range(y0, y1):
                _update_row(f[y], f_prev[y], k, best[y], fbest[y], fbelow[y], fabove[y], fsum[y],
                            fsecond[y], flag[y])
        if comp:
            m, m2 = np.empty(W * C, frame.dtype), np.empty(W * C, frame.dtype)
            for y in range(y0, y1):
                if comp == 1:
                    _select_row(frame[y], best[y], kk, ones, m, m2, at[y])
                else:
                    _neighbours_row(frame[y], prev[y], best[y], kk, ones, m, m2, below[y], at[y], above[y])


_NO_F = np.zeros((1, 1), np.float32)
_NO_I = np.zeros((1, 1), np.int32)
_NO_U = np.zeros((1, 1, 1), np.uint8)
_NO_U_RO = readonly(_NO_U)


def measure_pass(fm, img, f, state=None, f_prev=None, comp=None, frame3=None, prev3=None):
    """Run :func:`frame_pass` for one frame.

    Parameters
    ----------
    fm : dffbatch.stages.measure.FocusMeasure
        The focus measure (its name, window, step, threshold).
    img : ndarray (H, W) or (H, W, C)
        What the measure sees.
    f : ndarray (H, W) float32
        Receives the focus measure.
    state : dffbatch.stages.depth.DepthState, optional
        Updated with ``f`` (``f_prev``: the previous frame's measure), its count advanced.
    comp : dffbatch.stages.composite.Compositor, optional
        Unaligned ``select`` / ``interpolate`` compositor, updated with ``frame3`` (and
        ``prev3``, the previous frame, for ``interpolate``) after the state.
    """
    img3 = readonly(img[:, :, None] if img.ndim == 2 else img)
    if state is None:
        dep = (False, _NO_F, 0, _NO_I, _NO_F, _NO_F, _NO_F, _NO_F, _NO_F, _NO_F)
    else:
        dep = (True, f_prev, state.n, state.best, state.fbest, state.fbelow, state.fabove, state.fsum,
               state.fsecond, state.flag)
    if comp is None:
        com = (0, _NO_U_RO, _NO_U_RO, np.uint8(255), _NO_U, _NO_U, _NO_U)
    else:
        at = _bits(comp.at)
        below, above = (at, at) if comp.mode == "select" else (_bits(comp.below), _bits(comp.above))
        com = (1 if comp.mode == "select" else 2, readonly(_bits(frame3)),
               readonly(_bits(frame3 if prev3 is None else prev3)),
               _ones(comp.dtype), below, at, above)
    frame_pass(img3, value_scale(img.dtype), MEASURE_ID[fm.measure], fm.step, np.float32(fm.threshold), fm.pad,
               fm.window // 2, fm.window_scale, fm.measure in _VARIANCE, f, *dep, *com)
    if state is not None:
        state.n += 1
    return f


class FusedPass(FrameStage):
    """The stage group *measure -> depth -> composite* on the frames' own grid, run as one
    :func:`measure_pass` per frame. The three stages keep their state and their
    ``finish``; only their per-frame work is fused (the same bytes as theirs, one after
    the other, which the tests keep as its reference). Booked under ``measure``."""

    timing = "measure"

    def __init__(self, measure, depth, composite):
        self.group = (measure, depth, composite)

    def start(self, shape, dtype):
        for stage in self.group:
            stage.start(shape, dtype)

    def update(self, frame, k):
        measure, depth, composite = self.group
        img = measure.image(frame, k)
        measure_pass(measure.fm, img, frame.focus, depth.state, frame.focus_prev, composite.comp, frame.pixels,
                     composite.prev)
        composite.prev = frame.pixels if composite.mode == "interpolate" else None

    def parts(self):
        return self.group
