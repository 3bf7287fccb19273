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

The state also keeps the *second peak*: the largest focus value of a frame at least
two frames from the best one, ``S = max_{|k-m|>=2} F[k]`` (exact, streamed with a
running maximum that lags one frame). ``S / F[m]`` is near 1 where the curve has two
modes (the window straddles two depths beside an occlusion edge) or none (noise), and
small for one clear peak: :func:`evidence` turns it into the weight of the global
solve (:mod:`dffbatch.stages.solve`).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .base import FrameStage
from .kernels import JIT, JIT_DIV, kernel, logf

__all__ = ["INTERPOLATIONS", "DepthState", "Depth", "CoarseCurve"]

from ..params import INTERPOLATIONS  # noqa: E402
_MODE = {"none": 0, "parabolic": 1, "gaussian": 2}
_TINY = np.float32(1e-30)


@njit(cache=True, nogil=True)  # a call per row: compiled once, not inlined into each kernel
def _update_row(fy, fpy, k, by, fby, fbl, fab, fsy, fsec, fl):
    """One row of :func:`update_best` (row views; ``fpy`` is ignored for frame 0)."""
    zero = np.float32(0.0)
    if k == 0:  # the first frame: the row starts here, in the cache (best -1, fbest -1.0, the
        for x in range(fy.shape[0]):  # rest 0), not in a pass over the whole maps beforehand
            by[x] = np.int32(-1)
            fby[x] = np.float32(-1.0)
            fbl[x] = fab[x] = fsy[x] = fsec[x] = fl[x] = zero
    has_prev = k > 0
    kk = np.int32(k)  # same width as ``best``: mixed int widths keep LLVM from vectorising
    km1 = np.int32(k - 1)
    for x in range(fy.shape[0]):
        v = fy[x]
        b = by[x]
        fb = fby[x]
        fp = fpy[x] if has_prev else zero
        sec = fsec[x]
        lag = fl[x]
        fsy[x] += v
        above = v if b == km1 else fab[x]
        win = v > fb
        later = v if (kk - b >= 2 and v > sec) else sec
        by[x] = kk if win else b
        fby[x] = v if win else fb
        fbl[x] = fp if win else fbl[x]
        fab[x] = zero if win else above
        fsec[x] = lag if win else later
        fl[x] = fp if fp > lag else lag


@kernel(**JIT)
def update_best(f, f_prev, k, best, fbest, fbelow, fabove, fsum, fsecond, flag):
    """Fold frame ``k``'s focus ``f`` into the running state (``f_prev`` is frame k-1's).

    ``fsecond`` is the largest value of a frame two or more frames from the best one,
    ``flag`` the running maximum over frames 0..k-2 (the candidates when frame k wins).
    Written with selects instead of branches, so that LLVM vectorises the loop.
    """
    for y in prange(f.shape[0]):
        _update_row(f[y], f_prev[y], k, best[y], fbest[y], fbelow[y], fabove[y], fsum[y], fsecond[y], flag[y])


@njit(cache=True, inline="always")
def _offset(fm, f0, fp, mode):
    """Sub-frame offset of the peak from the three focus values (float32 arithmetic).

    Computed without branches (selects), so that the loops calling it vectorise.
    """
    zero = np.float32(0.0)
    half = np.float32(0.5)
    if mode == 0:
        return zero
    if mode == 2:
        fm = max(fm, _TINY)
        fp = max(fp, _TINY)
        num = logf(fm / fp)                # ln F[m-1] - ln F[m+1]
        den = logf((fm / f0) * (fp / f0))  # ln F[m-1] - 2 ln F[m] + ln F[m+1]
    else:
        num = fm - fp
        den = fm - np.float32(2.0) * f0 + fp
    off = min(half, max(-half, half * num / den))
    return off if (den < zero) & (f0 > zero) else zero


@kernel(**JIT_DIV)
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
            off = _offset(fmy[x], f0, fpy[x], mode)  # computed everywhere: no branch, vectorised
            off = off if (b > 0) & (b < n - 1) else np.float32(0.0)
            dy[x] = min(max(np.float32(b) + off, np.float32(0.0)), top)
            cy[x] = (f0 - fsy[x] * inv_n) / f0 if f0 > 0.0 else np.float32(0.0)


@kernel(**JIT_DIV)
def evidence(fbest, fsecond, fsum, best, n, tau, power, end, out):
    """Evidence weight ``(1 - S / F[m])^power * A^2 / (A^2 + tau^2)``, ``A = F[m] - mean(F)``, power an int,
    times ``end`` where the best frame ``m`` is the first or the last.

    The first factor is low for a curve with two modes or none (second peak ``S`` near
    the best ``F[m]``); the second separates weak texture (``A`` above the noise floor
    ``tau``, in the measure's units: trusted) from no texture at all (``A`` ~ 0: filled).
    A curve that peaks at an end of the stack has no maximum inside it: either the
    surface lies beyond the stack, or (far more often) the pixel lies in an untextured
    area beside texture at another depth, whose blur reaches it most in the frames that
    defocus that texture most. ``end`` < 1 lets its neighbours outvote it.
    """
    H, W = fbest.shape
    inv_n = np.float32(1.0 / n)
    t2 = tau * tau
    last = np.int32(n - 1)
    for y in prange(H):
        f0y, f2y, fsy, by, oy = fbest[y], fsecond[y], fsum[y], best[y], out[y]
        r, rp = np.empty(W, np.float32), np.empty(W, np.float32)
        for x in range(W):  # loops over the row without branches: vectorised (2x faster than per pixel)
            r[x] = max(np.float32(1.0) - f2y[x] / f0y[x], np.float32(0.0))
            rp[x] = np.float32(1.0)
        for _ in range(power):
            for x in range(W):
                rp[x] *= r[x]
        for x in range(W):
            f0 = f0y[x]
            a = f0 - fsy[x] * inv_n
            b = by[x]
            e = end if (b == 0) | (b == last) else np.float32(1.0)
            v = rp[x] * (a * a / (a * a + t2)) * e
            oy[x] = v if f0 > 0.0 else np.float32(0.0)


@kernel(**JIT)
def block_mean(f, b, out):
    """Mean of ``f`` over ``b x b`` blocks (partial blocks at the right and bottom edges)."""
    H, W = f.shape
    Hc, Wc = out.shape
    for yc in prange(Hc):
        y0 = yc * b
        y1 = min(H, y0 + b)
        acc = np.zeros(W, np.float32)
        for y in range(y0, y1):  # column sums of the block row (vectorised over x)
            fy = f[y]
            for x in range(W):
                acc[x] += fy[x]
        row = out[yc]
        for xc in range(Wc):
            x0 = xc * b
            x1 = min(W, x0 + b)
            s = np.float32(0.0)
            for x in range(x0, x1):
                s += acc[x]
            row[xc] = s / np.float32((y1 - y0) * (x1 - x0))


class DepthState:
    """Running per-pixel state of the best-focused frame for frames of shape (H, W)."""

    def __init__(self, shape):
        # set row by row by the first frame's update (:func:`_update_row` with k = 0): best -1,
        # fbest -1.0, the rest 0; not here (a pass over 7 maps saved)
        self.best = np.empty(shape, np.int32)
        self.fbest, self.fbelow, self.fabove, self.fsum, self.fsecond, self.flag = (
            np.empty(shape, np.float32) for _ in range(6))
        self.n = 0

    def update(self, f: np.ndarray, f_prev: np.ndarray) -> None:
        """Fold the next frame's focus measure ``f`` (``f_prev``: the previous one's)."""
        update_best(f, f_prev, self.n, self.best, self.fbest, self.fbelow, self.fabove, self.fsum,
                    self.fsecond, self.flag)
        self.n += 1

    def evidence(self, tau: float, power: int, end: float = 1.0) -> np.ndarray:
        """The evidence weight of each pixel's focus curve, float32 (H, W) in [0, 1]: see :func:`evidence`."""
        out = np.empty(self.best.shape, np.float32)
        evidence(self.fbest, self.fsecond, self.fsum, self.best, self.n, np.float32(tau), int(power),
                 np.float32(end), out)
        return out

    def finish(self, interpolation: str = "gaussian"):
        """Return ``(depth, confidence)``, float32 (H, W); depth in frame units."""
        if interpolation not in _MODE:
            raise ValueError(f"unknown interpolation {interpolation!r}; choose one of {', '.join(INTERPOLATIONS)}")
        depth = np.empty(self.best.shape, np.float32)
        conf = np.empty(self.best.shape, np.float32)
        finish_depth(self.best, self.fbest, self.fbelow, self.fabove, self.fsum,
                     self.n, _MODE[interpolation], depth, conf)
        return depth, conf


class Depth(FrameStage):
    """Per-frame stage *depth*: the running state; at the end, the sub-frame depth and the
    peak prominence (``maps.raw``, ``maps.confidence``) and the state itself (``maps.state``)."""

    timing = "depth"

    def __init__(self, interpolation: str, grid):
        self.interpolation = interpolation
        self.grid = grid
        self.state = None

    def start(self, shape, dtype):
        self.state = DepthState(self.grid.shape(shape))

    def update(self, frame, k):
        self.state.update(frame.focus, frame.focus_prev)

    def finish(self, maps):
        maps.raw, maps.confidence = self.state.finish(self.interpolation)
        maps.state = self.state


class CoarseCurve(FrameStage):
    """Per-frame stage for the need ``"coarse"``: the depth state of the focus curve of
    ``block`` x ``block`` block means (``maps.coarse``), which the ``wls`` solve weighs
    beside the pixel's own."""

    timing = "depth"

    def __init__(self, block: int, grid):
        self.block = block
        self.grid = grid

    def start(self, shape, dtype):
        H, W = self.grid.shape(shape)
        cshape = (-(-H // self.block), -(-W // self.block))
        self.state = DepthState(cshape)
        self.cur = np.empty(cshape, np.float32)
        self.prev = np.zeros(cshape, np.float32)

    def update(self, frame, k):
        block_mean(frame.focus, self.block, self.cur)
        self.state.update(self.cur, self.prev)
        self.cur, self.prev = self.prev, self.cur

    def finish(self, maps):
        maps.coarse = self.state
