"""Post stage *confidence*: the probability that the depth is within one frame of the truth.

One meaning for every ``refine`` mode, measure and window: ``confidence`` is the
estimated probability ``P(|depth - truth| <= 1 frame)``, so a threshold means the same
in every run and a sweep across modes compares like with like. (Before, it was the
peak prominence of the focus curve with most modes and the solver's evidence weight
with ``wls``: 0.02 against 0.48 on the same stack.)

The model is a logistic regression per refine mode over a few evidence features of
each pixel, each of which moves the probability one way only (a monotone model):

=============  ==========================================================================
``ratio``      ``1 - S / F[m]``: the best focus ``F[m]`` against the second peak ``S`` of
               the pixel's focus curve (near 0: two modes or none)
``amplitude``  ``log(1 + A / tau)``, ``A = F[m] - mean(F)``: the curve's height over the
               measure's noise floor ``tau`` (:func:`dffbatch.stages.post.noise_floor`),
               so that every measure and window speaks the same units
``end``        1 where the best frame is the first or the last (no maximum inside the stack)
``evidence``   ``log(0.01 + e)``, ``e = ratio^2 * A^2 / (A^2 + tau^2)``: the pixel's own
               evidence, as ``wls`` weighs it
``support``    ``log(0.01 + s)``, ``s`` the mean ``e`` over the 24 x 24 px around the pixel
               (3 x 3 blocks of 8 x 8): how far confident neighbours are, which is what a
               filled pixel of a global solve rests on
``reach``      the same over 72 x 72 px (9 x 9 blocks): deep inside a large region
               without evidence (a bare backdrop) nothing tells the depth
``moved``      ``min(|depth - raw|, 3)``: how far the refine mode moved the depth from
               the pixel's own focus peak, in frames
``prior``      ``log(0.01 + c)``, ``c`` the refine mode's own weight of the pixel (peak
               prominence; the ``wls`` evidence at two scales; ``sgm``'s aggregated
               cost margin), which ranks well where it was tuned
=============  ==========================================================================

Each coefficient has a fixed sign (:data:`SIGNS`: more evidence never lowers the
probability; a curve peaking at an end of the stack, or a depth moved far from its own
peak, never raises it); the fit keeps it, dropping a feature whose free fit disagrees.

Two caps replace the model where the pixel's own focus curve cannot tell:

* a *flat* focus curve (``amplitude`` 0: the same response in every frame, as in an
  untextured region of a noiseless stack, or a clipped highlight). With the modes that
  have no fill (``none``, ``median``, ``bilateral``, ``sgm``) the depth there is the first
  frame or what a local filter carried in: on the renderer's fitting suites none of
  these pixels is within a frame of the truth (at most 0.44% of the held-out ones), while
  ``sgm``'s own weight there is high (0.8 to 0.99; its costs are all 0). These modes give
  them at most :data:`FLAT`.
* no evidence within reach (the ``reach`` feature below ``REACH_MIN``): at most
  :data:`UNKNOWN`, with ``wls`` only. Most of the fitting suites' pixels without
  evidence within 72 px are flat curves; the others (a noisy backdrop) are right about
  as often as the models of the modes with :data:`FLAT` say (held out: 0.31 to 0.64
  predicted, 0.30 to 0.60 observed), more often than ``UNKNOWN``, so those modes keep
  the model there, and ``sgm``'s ranking its own weight's.

Each mode's model uses the features of fit_confidence.py's ``USE`` (the others are 0
in :data:`COEF`): ``none`` the end of the stack, the support and its prior; ``sgm`` its
prior alone; ``median``, ``bilateral`` and ``wls`` every feature. ``--select`` chose
those of ``none`` and ``sgm`` on the fitting suites: with more, the probability ranks the
errors worse than the mode's own weight on some scene class (``sgm``'s aggregated cost
margin ranks the low-texture scenes better than any mix with the focus curve's features
does). For ``median`` and ``bilateral`` it chose the prior with few features or none,
whose calibration error on the held-out suites was 0.060 and 0.077 (``tenv``): they keep
every feature and rank worse than their own weight on one and three scene classes
(``median``: step-checker 0.186 -> 0.215; ``bilateral``: step-checker 0.041 -> 0.043,
sphere-gradpatch 0.170 -> 0.184, sphere-lowtex 0.263 -> 0.264).

The constants (:data:`COEF`) are fitted on the renderer's ground truth by
``benchmarks/fit_confidence.py`` (fitted on the ``sweep``, ``halo`` and ``bare`` suites,
checked on ``refine``, ``flat`` and ``bare2``; its output gives the calibration error and
the reliability diagram). No model file: the numbers are here.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..params import LOW_CONFIDENCE
from .base import PostStage
from .depth import block_mean
from .kernels import JIT, kernel

__all__ = ["FEATURES", "SIGNS", "COEF", "FLAT", "LOW", "BLOCK", "features", "probability", "confidence_of", "box_blocks",
           "Calibrate"]

FEATURES = ("ratio", "amplitude", "end", "evidence", "support", "reach", "moved", "prior")
#: The sign each feature's coefficient is held to (see the module docstring).
SIGNS = (1, 1, -1, 1, 1, 1, -1, 1)
#: Below this probability a pixel counts as "low confidence" (the report's share, the
#: plots' grey): more likely wrong by over a frame than right.
LOW = LOW_CONFIDENCE
#: Side of the blocks whose mean evidence makes ``support`` (3 x 3 of them around a
#: pixel) and ``reach`` (9 x 9).
BLOCK = 8
#: Added to the evidence, support, reach and prior before their logarithm: none at all
#: (a bare backdrop) stands far from a little.
_FLOOR = np.float32(0.01)
#: No evidence within reach: the mean evidence over the 72 x 72 px around a pixel below
#: ``REACH_MIN`` (a bare backdrop, an out-of-range background, a blank stack). What the
#: refine mode puts there is extrapolated from farther away, right on a smooth surface
#: and wrong behind an object; the renderer has both (``flat``, ``bare``), so a fitted
#: probability averages them. Such pixels get at most ``UNKNOWN``: the share of them
#: within a frame of the truth on the renderer's fitting suites, over every mode
#: (fit_confidence.py). Only for the modes without :data:`FLAT` (``wls``).
REACH_MIN, UNKNOWN = 0.002, 0.193
#: A flat focus curve (``amplitude`` 0, see the module docstring), per refine mode without
#: a fill: at most this, the share of such pixels within a frame of the truth on the
#: fitting suites (fit_confidence.py). A mode not named here has no such cap.
FLAT = {"none": 0.0, "median": 0.0, "bilateral": 0.0, "sgm": 0.0}
#: ``moved`` is clipped here (frames): beyond it, how far does not matter.
MOVED_CAP = 3.0
#: Intercept, then one coefficient per feature of :data:`FEATURES`, per refine mode.
#: Fitted by ``benchmarks/fit_confidence.py`` (renderer ``sweep``, ``halo`` and ``bare`` suites,
#: 256 x 256, 12 frames; measures lapd, sml, tenv; windows 5, 9, 15) over the features
#: each mode uses (its ``USE``). A 0 is a feature the mode does not use or the fit dropped
#: because its free coefficient took the wrong sign. Checked on the ``refine``, ``flat``
#: and ``bare2`` suites: expected calibration error at most 0.046 (bilateral with sml;
#: 0.044 with the default wls and its fill) for every mode and measure; the ranking
#: (AUSE) no worse than the mode's own weight on every scene class with ``none``,
#: ``sgm`` and ``wls``, worse on one with ``median`` and three with ``bilateral``.
COEF = {
    "none": (3.999, 0, 0, -4.313, 0, 0.161, 0, 0, 1.747),
    "median": (4.783, 0, 0, -1.731, 0.9858, 0.01543, 0, -0.1258, 0),
    "bilateral": (4.365, 0, 0, -0.1864, 0.1256, 0.5389, 0, -1.297, 0),
    "sgm": (3.722, 0, 0, 0, 0, 0, 0, 0, 4.553),
    "wls": (4.533, 0, 0, 0, 0, 0.1769, 0, -1.164, 0.4723),
}


@njit(cache=True, inline="always")
def _ratio(f0, f1, root):
    """``ratio``: ``1 - S / F[m]`` (its square root for squared measures, ``root`` 2)."""
    q = min(f1 / f0, np.float32(1.0)) if f0 > 0.0 else np.float32(1.0)
    return np.float32(1.0) - (np.sqrt(q) if root == 2 else q)


@njit(cache=True, inline="always")
def _amplitude(f0, fsum, inv_n):
    """``A = F[m] - mean(F)``, at least 0."""
    return max(f0 - fsum * inv_n, np.float32(0.0))


@njit(cache=True, inline="always")
def _end(best, last):
    """``end``: 1 where the best frame is the first or the last."""
    return np.float32(1.0) if (best == 0 or best == last) else np.float32(0.0)


@njit(cache=True, inline="always")
def _evidence(r, a, t2):
    """``evidence``: ``log(0.01 + ratio^2 A^2 / (A^2 + tau^2))``."""
    return np.log(_FLOOR + r * r * (a * a / (a * a + t2)))


@njit(cache=True, inline="always")
def _moved(depth, raw):
    """``moved``: ``min(|depth - raw|, MOVED_CAP)``."""
    return min(abs(depth - raw), np.float32(MOVED_CAP))


@njit(cache=True, inline="always")
def _prior(conf, prior_root):
    """``prior``: ``log(0.01 + c)``, ``c`` the mode's own weight clipped to [0, 1]."""
    c = min(max(conf, np.float32(0.0)), np.float32(1.0))
    if prior_root == 2:
        c = np.float32(1.0) - np.sqrt(np.float32(1.0) - c)
    return np.log(_FLOOR + c)


@njit(cache=True)
def _block_logs(m):
    """``log(0.01 + m)`` of block means (a few thousand values: serial)."""
    out = np.empty_like(m)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            out[i, j] = np.log(_FLOOR + m[i, j])
    return out


@kernel(**JIT)
def _features(fbest, fsecond, fsum, best, n, tau, root, prior_root, depth, raw, conf, near, far, b, out):
    """The feature planes ``out`` (8, H, W) float32 of :data:`FEATURES` (see the module);
    ``near`` / ``far``: the block means of the evidence averaged over 3 x 3 / 9 x 9 blocks
    (:func:`box_blocks`; their logarithms are taken per block); ``root``: the ratios
    ``S / F[m]`` taken to the power 1/2 (measures of squared quantities), or not (1);
    ``prior_root`` the same for ``conf`` where it is the peak prominence ``1 - mean /
    F[m]`` (a ratio too), else 1."""
    near, far = _block_logs(near), _block_logs(far)
    H, W = fbest.shape
    inv_n = np.float32(1.0 / n)
    t2 = tau * tau
    last = np.int32(n - 1)
    for y in prange(H):
        yc = y // b
        for x in range(W):
            f0 = fbest[y, x]
            r = _ratio(f0, fsecond[y, x], root)
            a = _amplitude(f0, fsum[y, x], inv_n)
            xc = x // b
            out[0, y, x] = r
            out[1, y, x] = np.log1p(a / tau)
            out[2, y, x] = _end(best[y, x], last)
            out[3, y, x] = _evidence(r, a, t2)
            out[4, y, x] = near[yc, xc]
            out[5, y, x] = far[yc, xc]
            out[6, y, x] = _moved(depth[y, x], raw[y, x])
            out[7, y, x] = _prior(conf[y, x], prior_root)


@kernel(**JIT)
def _probability(fbest, fsecond, fsum, best, n, tau, root, prior_root, depth, raw, conf, near, far, b, coef,
                 bare, unknown, flat, out):
    """:func:`_logistic` of :func:`_features` (same arguments, then ``_logistic``'s) in one
    pass, without the feature planes: a feature whose coefficient is 0 is not computed
    (``wls`` uses 3 of 8; adding ``0 * f`` to a finite sum changes nothing, so the
    result is the same to the bit)."""
    near, far = _block_logs(near), _block_logs(far)
    H, W = fbest.shape
    inv_n = np.float32(1.0 / n)
    t2 = tau * tau
    last = np.int32(n - 1)
    c0, c1, c2, c3, c4, c5, c6, c7, c8 = (coef[0], coef[1], coef[2], coef[3], coef[4], coef[5], coef[6],
                                          coef[7], coef[8])
    for y in prange(H):
        yc = y // b
        for x in range(W):
            f0 = fbest[y, x]
            a = _amplitude(f0, fsum[y, x], inv_n)
            xc = x // b
            z = c0
            if c1 != 0.0 or c4 != 0.0:
                r = _ratio(f0, fsecond[y, x], root)
                if c1 != 0.0:
                    z += c1 * r
            if c2 != 0.0:
                z += c2 * np.log1p(a / tau)
            if c3 != 0.0:
                z += c3 * _end(best[y, x], last)
            if c4 != 0.0:
                z += c4 * _evidence(r, a, t2)
            if c5 != 0.0:
                z += c5 * near[yc, xc]
            if c6 != 0.0:
                z += c6 * far[yc, xc]
            if c7 != 0.0:
                z += c7 * _moved(depth[y, x], raw[y, x])
            if c8 != 0.0:
                z += c8 * _prior(conf[y, x], prior_root)
            p = np.float32(1.0) / (np.float32(1.0) + np.exp(-z))
            if a / tau <= 0.0:  # amplitude 0: log1p(A / tau) is 0 exactly there and only there
                p = min(p, flat)
            out[y, x] = min(p, unknown) if far[yc, xc] < bare else p


def box_blocks(bm, r):
    """Mean of the block means ``bm`` over the (2r+1)^2 blocks around each block (clipped
    at the borders), float32: a few thousand blocks, NumPy's cumulative sums."""
    c = np.pad(np.asarray(bm, np.float64), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    Hc, Wc = bm.shape
    y0, y1 = np.maximum(np.arange(Hc) - r, 0), np.minimum(np.arange(Hc) + r + 1, Hc)
    x0, x1 = np.maximum(np.arange(Wc) - r, 0), np.minimum(np.arange(Wc) + r + 1, Wc)
    s = c[y1][:, x1] - c[y0][:, x1] - c[y1][:, x0] + c[y0][:, x0]
    return (s / ((y1 - y0)[:, None] * (x1 - x0)[None, :])).astype(np.float32)


@kernel(**JIT)
def _logistic(feats, coef, bare, unknown, flat, out):
    """``1 / (1 + exp(-(c0 + sum c_i f_i)))`` per pixel, at most ``flat`` where the focus
    curve is flat (the ``amplitude`` feature ``feats[1]`` 0) and at most ``unknown`` where
    no evidence lies within reach (the ``reach`` feature ``feats[5]`` below ``bare``)."""
    K, H, W = feats.shape
    for y in prange(H):
        for x in range(W):
            z = coef[0]
            for k in range(K):
                z += coef[k + 1] * feats[k, y, x]
            p = np.float32(1.0) / (np.float32(1.0) + np.exp(-z))
            if feats[1, y, x] <= 0.0:
                p = min(p, flat)
            out[y, x] = min(p, unknown) if feats[5, y, x] < bare else p


def _inputs(maps, refine: str) -> tuple:
    """The arguments of :func:`_features` / :func:`_probability` before ``depth``, ``raw``,
    ``conf``, ``near``, ``far`` and the block size: the focus state, the noise floor and
    the roots; and the two block means (which depend on the stream only: computed once
    per ``maps``, whichever stages ask)."""
    from .post import SQUARED_MEASURES, noise_floor
    st = maps.state
    tau = np.float32(noise_floor(maps.measure, maps.window))
    key = ("confidence blocks", float(tau))
    if maps.memo.get(key) is None:
        e = st.evidence(float(tau), 2, 1.0)
        H, W = e.shape
        bm = np.empty(((H + BLOCK - 1) // BLOCK, (W + BLOCK - 1) // BLOCK), np.float32)
        block_mean(e, BLOCK, bm)
        maps.memo[key] = (box_blocks(bm, 1), box_blocks(bm, 4))
    # squared measures: ratios of focus values as square roots (worst calibration error on
    # the renderer 0.060 without, 0.045 with: fit_confidence.py); the prior is such a ratio
    # only where it is the peak prominence (none, median)
    root = 2 if maps.measure in SQUARED_MEASURES else 1
    prior_root = root if refine in ("none", "median") else 1
    return (st.fbest, st.fsecond, st.fsum, st.best, st.n, tau, root, prior_root), maps.memo[key]


def features(maps, refine: str = "wls") -> np.ndarray:
    """The evidence features of each pixel, float32 (8, H, W), in the order of :data:`FEATURES`.

    ``maps``: a :class:`dffbatch.stages.post.Maps` after the refine stage (its
    ``state``, ``raw``, ``depth`` and the mode's own ``confidence``); ``refine``: its
    mode (the prominence of ``none`` and ``median`` is a ratio of focus values too)."""
    head, (near, far) = _inputs(maps, refine)
    out = np.empty((len(FEATURES), *maps.depth.shape), np.float32)
    _features(*head, maps.depth, maps.raw, maps.confidence, near, far, BLOCK, out)
    return out


def _constants(refine: str, coef=None, unknown=None) -> tuple:
    """``(coef, bare, unknown, flat)`` of a mode for :func:`_logistic` / :func:`_probability`."""
    mode = refine if refine in COEF else "none"
    c = COEF[mode] if coef is None else coef
    flat = FLAT.get(mode, 1.0)
    if unknown is None:
        unknown = 1.0 if mode in FLAT else UNKNOWN
    return (np.asarray(c, np.float32), np.float32(np.log(_FLOOR + np.float32(REACH_MIN))), np.float32(unknown),
            np.float32(flat))


def probability(feats: np.ndarray, refine: str, coef=None, unknown=None) -> np.ndarray:
    """The calibrated confidence in [0, 1], float32 (H, W), from :func:`features`. A refine
    mode without constants of its own (a new one, until fit_confidence.py has run for
    it) gets those of ``none``: the focus curve's own evidence. ``coef`` and ``unknown``
    replace the mode's constants (the fill stage's model of the depth before it); a mode
    with :data:`FLAT` has no ``unknown`` cap unless one is given."""
    out = np.empty(feats.shape[1:], np.float32)
    _logistic(feats, *_constants(refine, coef, unknown), out)
    return out


def confidence_of(maps, refine: str, coef=None, unknown=None) -> np.ndarray:
    """``probability(features(maps, refine), refine, coef, unknown)`` in one pass, without
    the 8 feature planes (the same values to the bit; 4x faster with ``wls``, which uses
    3 features)."""
    head, (near, far) = _inputs(maps, refine)
    out = np.empty(maps.depth.shape, np.float32)
    _probability(*head, maps.depth, maps.raw, maps.confidence, near, far, BLOCK,
                 *_constants(refine, coef, unknown), out)
    return out


class Calibrate(PostStage):
    """``maps.confidence`` := the probability that ``maps.depth`` is within a frame of the truth."""

    def __init__(self, refine: str):
        self.refine = refine

    def run(self, maps):
        maps.confidence = confidence_of(maps, self.refine)
        return maps
