"""Post-stream stages: the registry of ``refine`` modes, each turning maps into maps.

When the stream of frames has ended, :func:`dffbatch.depth_from_focus` holds a
:class:`Maps`: the raw sub-frame depth and its confidence, the running depth state
(for the evidence of each focus curve), the all-in-focus image, and whatever the
mode asked the stream to keep (``needs``). The mode's function returns the final
``(depth, confidence)``. A new mode is one function here (or in its own module) and
one entry in :data:`REFINERS`.

=============  ==========================================================================
``none``       the raw depth and the peak-prominence confidence
``median``     the ``median`` filter
``bilateral``  confidence-weighted joint bilateral filter, then the median
``sgm``        semi-global aggregation of the kept focus volume, the bilateral filter,
               the median
``wls``        global, edge-aware, confidence-weighted solve (:mod:`dffbatch.stages.solve`)
               of the raw depth, with the evidence of the focus curve at two scales
               (the measure window, and 8 x 8 blocks of it), at two reaches (see
               :func:`_wls`)
=============  ==========================================================================
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
from numba import prange

from .base import Grid, PostStage
from .kernels import JIT, JIT_DIV, kernel, spread_blocks
from ..params import STRENGTH_DEFAULT
from .refine import median_filter

__all__ = ["Maps", "Refiner", "REFINERS", "Refine", "DepthUnits", "COARSE_BLOCK", "noise_floor"]

#: Side of the blocks whose mean focus makes the coarse focus curve of ``wls``.
COARSE_BLOCK = 8
#: ``wls``: evidence power of the fine and the coarse curve, weight of the coarse one,
#: edge sensitivity of the guide. Chosen on the renderer's suites (256 x 256, 12 frames;
#: benchmarks/bench_solve.py prints the table).
WLS_POWER, WLS_COARSE_POWER, WLS_COARSE_WEIGHT, WLS_SIGMA, WLS_ITERATIONS = 2, 3, 0.75, 0.03, 3
#: ``wls``: lambda of the long-reach solve, as a multiple of ``refine_strength``, the
#: support ``S(w)`` at which the short-reach solve's depth and the long one's weigh alike,
#: and the long solve's FGS rounds (2 gives the renderer's RMSE of 3 to 0.5%, at two
#: thirds of the cost; 1 takes the low-texture sphere from -50% to -49.8%).
WLS_REACH, WLS_SUPPORT, WLS_FAR_ITERATIONS = 3.5, 0.01, 2
#: ``wls``: factor on the evidence of a curve (fine, coarse) that peaks at the first or
#: last frame (see :func:`dffbatch.stages.depth.evidence`): untextured pixels beside texture at
#: another depth. On the renderer (bench_solve.py) 1.0 -> 0.01 / 0.02 takes the
#: step-flatpatch-clean RMSE from -36.5% to -49.5% of the previous default's and
#: changes no other scene by more than 0.5%.
WLS_END, WLS_COARSE_END = 0.01, 0.02
#: lapd noise floor: a focus-curve amplitude well below it is no texture at all.
_TAU = 3e-3
#: Measures of squared quantities (energies, variances): their focus values are squares
#: of a linear measure's (the noise floor is squared; the confidence's ratios take roots).
SQUARED_MEASURES = ("lape", "lapv", "teng", "tenv", "glva")


def noise_floor(measure: str, window: int) -> float:
    """Focus-curve amplitude that separates weak texture from none, in the measure's units.

    Calibrated for ``lapd`` (a mean of absolute second differences of luminance in
    [0, 1]); measures of squared quantities (energies, variances) get its square, and
    ``sml``, a window *sum*, its value times the window area.
    """
    if measure in SQUARED_MEASURES:
        return _TAU * _TAU
    if measure == "sml":
        return _TAU * window * window
    return _TAU


@dataclass
class Maps:
    """What the stream leaves and the post-stream stages work on (all (H, W) on the
    output grid, float32 unless said)."""

    interpolation: str
    measure: str
    window: int
    median: int
    radius: int
    strength: float
    n: int = 0                          # frames streamed
    raw: Optional[np.ndarray] = None    # sub-frame depth from the stream, frames
    confidence: Optional[np.ndarray] = None  # peak prominence in [0, 1), then the refine mode's
    allfocus: Optional[np.ndarray] = None    # the all-in-focus image, input dtype and channels
    state: Optional[object] = None      # dffbatch.stages.depth.DepthState at the end of the stream
    coarse: Optional[object] = None     # DepthState of the block-mean focus (needs "coarse")
    volume: Optional[list] = None       # every frame's focus (needs "volume")
    depth: Optional[np.ndarray] = None  # the refined depth, frames
    depth_units: Optional[np.ndarray] = None
    frames: Optional[Callable] = None   # needs "frames": a fresh iterator over the frames as read
    grid: Optional[Grid] = None         # how a frame's pixels reach the output grid
    allfocus_base: Optional[np.ndarray] = None  # hybrid: the interpolate image it started from
    _guide: Optional[np.ndarray] = field(default=None, repr=False)
    #: what several post stages derive from the stream alike, computed by the first that asks
    memo: dict = field(default_factory=dict, repr=False)

    def guide(self) -> np.ndarray:
        """Luminance of the all-in-focus image in [0, 1] (float input stretched to it);
        for ``hybrid``, that of ``interpolate``'s image where the two differ little
        (:func:`dffbatch.stages.hybrid.guide`)."""
        if self._guide is None:
            from .measure import luminance
            g = luminance(self.allfocus)
            base = None if self.allfocus_base is None else luminance(self.allfocus_base)
            if self.allfocus.dtype.kind == "f":
                lo, hi = float(g.min()), float(g.max())
                g = (g - lo) / (hi - lo) if hi > lo else np.zeros_like(g)
                if base is not None:  # the same stretch: the gate compares the two
                    base = (base - lo) / (hi - lo) if hi > lo else np.zeros_like(base)
            g = np.ascontiguousarray(g, np.float32)
            if base is not None:
                from .hybrid import guide
                g = guide(g, np.ascontiguousarray(base, np.float32))
            self._guide = g
        return self._guide


@dataclass(frozen=True)
class Refiner:
    """A post-stream stage: ``run(maps) -> (depth, confidence)``."""

    run: Callable[[Maps], tuple]
    strength: Optional[float] = None   # default of ``refine_strength`` (None: unused)
    strength_doc: str = ""
    needs: frozenset = frozenset()     # what the stream must keep: "volume", "coarse"


def _none(m: Maps):
    return m.raw, m.confidence


def _median(m: Maps):
    return median_filter(m.raw, m.median), m.confidence


def _bilateral(m: Maps, raw=None, conf=None, power=None):
    from .refine import joint_bilateral
    raw = m.raw if raw is None else raw
    conf = m.confidence if conf is None else conf
    d, c = joint_bilateral(raw, conf, m.guide(), m.radius, 0.05, m.strength if power is None else power)
    return median_filter(d, m.median), c


def _sgm(m: Maps):
    from .sgm import sgm
    raw, conf = sgm(np.stack(m.volume), m.guide(), m.strength / 10.0, m.strength)
    m.volume = None
    return _bilateral(m, raw, conf, REFINERS["bilateral"].strength)


@kernel(**JIT_DIV)
def _mix_scales(d, w, dc, wc, b, wcoarse, out_d, out_w):
    """Evidence-weighted mean of the fine depth and the block depth it lies in (nearest upsampling).

    Each row first spreads its blocks' values over their pixels, then mixes in one loop
    without branches (vectorised: 2x faster than a division and a test per pixel)."""
    H, W = d.shape
    for y in prange(H):
        yc = y // b
        dcx, wcx = np.empty(W, dc.dtype), np.empty(W, wc.dtype)
        spread_blocks(b, dc[yc], dcx, wc[yc], wcx)
        dy, wy, ody, owy = d[y], w[y], out_d[y], out_w[y]
        for x in range(W):
            w1 = wy[x]
            w2 = wcoarse * wcx[x]
            t = w1 + w2
            v = (w1 * dy[x] + w2 * dcx[x]) / t
            ody[x] = v if t > 0 else dy[x]
            owy[x] = t


@kernel(**JIT)
def _blend_reach(d_near, s_near, d_far, c, out):
    """``t d_near + (1 - t) d_far`` with ``t = S / (S + c)``: the near solve where evidence reached."""
    H, W = d_near.shape
    for y in prange(H):
        for x in range(W):
            s = s_near[y, x]
            t = s / (s + c)
            out[y, x] = t * d_near[y, x] + (np.float32(1.0) - t) * d_far[y, x]


def _wls(m: Maps):
    """Two normalised FGS solves of the raw depth on the same weights and affinities.

    The near one (lambda = ``strength``) keeps the detail that weak texture measures;
    the far one (``WLS_REACH`` times it) reaches across regions without texture. Each
    pixel takes the near depth as far as evidence reached it (support ``S(w)`` against
    ``WLS_SUPPORT``), the far one elsewhere. One lambda cannot do both: on the renderer
    (bench_solve.py) lambda 60 alone leaves the flat scenes' blobs half filled and 200
    alone blurs the low-texture sphere; the blend beats either on both.
    """
    from .solve import affinities, fgs_normalized
    tau = noise_floor(m.measure, m.window)
    d = m.raw
    w = m.state.evidence(tau, WLS_POWER, WLS_END)
    if m.coarse is not None:
        dc, _ = m.coarse.finish(m.interpolation)
        wc = m.coarse.evidence(tau, WLS_COARSE_POWER, WLS_COARSE_END)
        dm, wm = np.empty_like(d), np.empty_like(w)
        _mix_scales(d, w, dc, wc, COARSE_BLOCK, np.float32(WLS_COARSE_WEIGHT), dm, wm)
        d, w = dm, wm
    ax, ay = np.empty_like(d), np.empty_like(d)
    affinities(m.guide(), np.float32(WLS_SIGMA), ax, ay)
    near, support = fgs_normalized(d, w, ax, ay, m.strength, WLS_ITERATIONS)
    far, _ = fgs_normalized(d, w, ax, ay, m.strength * WLS_REACH, WLS_FAR_ITERATIONS)
    depth = np.empty_like(d)
    _blend_reach(near, support, far, np.float32(WLS_SUPPORT), depth)
    return depth, np.minimum(w, np.float32(1.0))


#: name -> stage, in the order the docs list them.
REFINERS = {
    "none": Refiner(_none),
    "median": Refiner(_median),
    "bilateral": Refiner(_bilateral, STRENGTH_DEFAULT["bilateral"], "confidence power"),
    "sgm": Refiner(_sgm, STRENGTH_DEFAULT["sgm"], "P2 (P1 = P2 / 10)", frozenset({"volume"})),
    "wls": Refiner(_wls, STRENGTH_DEFAULT["wls"], "FGS lambda of the near solve (reach about sqrt(lambda) px per pass; the far one 3.5x)", frozenset({"coarse"})),
}


class Refine(PostStage):
    """The ``refine`` mode as a post stage: ``maps.depth`` and ``maps.confidence`` from it."""

    def __init__(self, name: str):
        self.refiner = REFINERS[name]
        self.needs = self.refiner.needs

    def run(self, maps: Maps) -> Maps:
        maps.depth, maps.confidence = self.refiner.run(maps)
        maps.volume = None
        return maps


class DepthUnits(PostStage):
    """Depth in the units of ``positions`` (one per frame): linear between the frames around it."""

    def __init__(self, positions: np.ndarray):
        self.positions = positions

    def run(self, maps: Maps) -> Maps:
        if len(self.positions) != maps.n:
            raise ValueError(f"positions has {len(self.positions)} values but the stack has {maps.n} frames")
        maps.depth_units = np.interp(maps.depth, np.arange(maps.n), self.positions).astype(np.float32)
        return maps
