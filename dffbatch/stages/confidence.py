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
does).

``median`` and ``bilateral`` (the modes of :data:`RANK_SLOPE`) keep the order of their
own weight within each stack. Their weight ranks a stack's errors better than the
per-pixel model of every feature fitted on the renderer (held out: step-checker AUSE
0.186 -> 0.215 with ``median``; step-checker, sphere-gradpatch and sphere-lowtex worse
with ``bilateral``), and the sets of fewer features that ``--select`` finds ranking no
worse on the fitting suites miss the calibration on the held-out ones (ECE 0.060 and
0.077 with ``tenv``). So the per-pixel model (:data:`COEF`) sets each stack's
calibration and the weight its order (:func:`ranked`). Per stack, the model's
probabilities are averaged over each of :data:`RANK_BINS` bins of the prior, made
non-decreasing in the prior (pool adjacent violators) and interpolated linearly between
the pooled blocks' mean priors, plus :data:`RANK_EPS` times the prior scaled to [0, 1]
so that the function strictly increases (:func:`project`: ``q``); then ``p =
sigmoid(k logit(q) + d)``, ``k`` the mode's slope (:data:`RANK_SLOPE`) and ``d`` the one
shift per stack that keeps the stack's mean probability, over the pixels without a flat
curve, at the per-pixel model's (:func:`leveled`). Within a stack ``p`` is a strictly
increasing function of the weight (up to float32 rounding), so any ranking measure taken
per stack, AUSE included, is the weight's exactly; across stacks the function differs,
and that carries the calibration. The slope is above 1 because ``q``, the model's mean
at a given weight, is less spread than the model itself; it is fitted on the fitting
suites (fit_confidence.py): the slope with the lowest calibration error there (the worst
over the measures). On the held-out suites the calibration error is then at most 0.040
(``median``: 0.031, 0.040, 0.040; ``bilateral``: 0.023, 0.022, 0.038 with lapd, sml,
tenv) and the AUSE the weight's on every scene class. The slope of the lowest log loss
on the fitting suites is lower (0.85 and 1.20) and misses the calibration with
``bilateral`` and ``tenv`` (0.053 held out), though ``bilateral``'s held-out log loss is
lowest near 1.2 too: the chosen slopes give up a little log loss for calibration as the
10-bin ECE measures it (this rule was chosen after the log-loss slope had missed on the
held-out suites; it looks at the fitting suites only). Flat curves keep :data:`FLAT` (below
every other pixel: with ``bilateral`` their weight can be high, a neighbour's).

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
from .kernels import JIT, JIT_DIV, expf, kernel, logf, spread_blocks

__all__ = ["FEATURES", "SIGNS", "COEF", "FLAT", "LOW", "BLOCK", "RANK_SLOPE", "features", "probability",
           "confidence_of", "box_blocks", "project", "leveled", "ranked", "Calibrate"]

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
#: because its free coefficient took the wrong sign. With the modes of :data:`RANK_SLOPE`
#: this model sets each stack's calibration only (see the module docstring). Checked on
#: the ``refine``, ``flat`` and ``bare2`` suites: expected calibration error at most 0.044
#: (the default wls and its fill, with sml) for every mode and measure; the ranking (AUSE)
#: no worse than the mode's own weight on every scene class.
COEF = {
    "none": (3.999, 0, 0, -4.313, 0, 0.161, 0, 0, 1.747),
    "median": (4.783, 0, 0, -1.731, 0.9858, 0.01543, 0, -0.1258, 0),
    "bilateral": (4.365, 0, 0, -0.1864, 0.1256, 0.5389, 0, -1.297, 0),
    "sgm": (3.722, 0, 0, 0, 0, 0, 0, 0, 4.553),
    "wls": (4.533, 0, 0, 0, 0, 0.1769, 0, -1.164, 0.4723),
}


#: The modes whose probability is a strictly increasing function of their own weight
#: (the ``prior``) within each stack (see the module docstring and :func:`ranked`), and
#: the slope ``k`` of that function's logit, ``sigmoid(k logit(q) + d)``: ``q`` the
#: stack's per-pixel model projected onto the prior (:func:`project`), ``d`` the shift
#: that holds the stack's mean (:func:`leveled`). Fitted by fit_confidence.py: of the
#: slopes 0.5 to 3 (step 0.05), the lowest calibration error on the fitting suites (the
#: worst over lapd, sml, tenv: 0.0161 with median, 0.0145 with bilateral).
RANK_SLOPE = {"median": 1.15, "bilateral": 1.65}
#: Bins of the prior (equal width in ``log(0.01 + c)``, ``c`` in [0, 1]) over which
#: :func:`ranked` averages a stack's per-pixel probabilities.
RANK_BINS = 256
#: The weight of the prior itself (scaled to [0, 1]) in :func:`project`: it makes the
#: function strictly increasing where the pooled blocks are flat.
RANK_EPS = 1e-3
#: :func:`leveled` solves for a stack's shift on every LEVEL_STRIDE-th pixel when the stack
#: has more than LEVEL_ALL: each Newton step is a pass of exponentials over what it
#: solves on: 1.3 s for a 6-megapixel stack on every pixel; all of :func:`ranked` now takes
#: 0.57 s there and 0.09 s at 1080 x 1080 (one process, another beside it).
LEVEL_STRIDE, LEVEL_ALL = 16, 1 << 16


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
    return logf(_FLOOR + r * r * (a * a / (a * a + t2)))


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
    return logf(_FLOOR + c)


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


@kernel(**JIT_DIV)
def _probability(fbest, fsecond, fsum, best, n, tau, root, prior_root, depth, raw, conf, near, far, b, coef,
                 bare, unknown, flat, out):
    """:func:`_logistic` of :func:`_features` (same arguments, then ``_logistic``'s) in one
    pass, without the feature planes: a feature whose coefficient is 0 is not computed
    (``wls`` uses 3 of 8; adding ``0 * f`` to a finite sum changes nothing, so the
    result is the same to the bit). Each row sums its terms in the features' order, one
    term at a time over the row: loops without branches, which LLVM vectorises with the
    branch-free ``logf`` and ``expf`` (:mod:`dffbatch.stages.kernels`). At 1080^2 on 2
    threads 2.1 ms against 7.1 for a pixel at a time with libm's exp and log; the
    probabilities within 3e-7 of the exact logistic of the features (tests), and the
    default's outputs within 1e-5 frames of depth and 3e-6 of confidence of the libm
    version's (benchmarks/compare_outputs.py)."""
    near, far = _block_logs(near), _block_logs(far)
    H, W = fbest.shape
    inv_n = np.float32(1.0 / n)
    t2 = tau * tau
    last = np.int32(n - 1)
    c0, c1, c2, c3, c4, c5, c6, c7, c8 = (coef[0], coef[1], coef[2], coef[3], coef[4], coef[5], coef[6],
                                          coef[7], coef[8])
    for y in prange(H):
        fb, fs, f2, by, oy = fbest[y], fsum[y], fsecond[y], best[y], out[y]
        z, a, r = np.empty(W, np.float32), np.empty(W, np.float32), np.empty(W, np.float32)
        near_x, far_x = np.empty(W, np.float32), np.empty(W, np.float32)  # the blocks' values per pixel
        spread_blocks(b, near[y // b], near_x, far[y // b], far_x)
        for x in range(W):
            z[x] = c0
            a[x] = _amplitude(fb[x], fs[x], inv_n)
        if c1 != 0.0 or c4 != 0.0:
            for x in range(W):
                r[x] = _ratio(fb[x], f2[x], root)
        if c1 != 0.0:
            for x in range(W):
                z[x] += c1 * r[x]
        if c2 != 0.0:
            for x in range(W):
                z[x] += c2 * np.log1p(a[x] / tau)
        if c3 != 0.0:
            for x in range(W):
                z[x] += c3 * _end(by[x], last)
        if c4 != 0.0:
            for x in range(W):
                z[x] += c4 * _evidence(r[x], a[x], t2)
        if c5 != 0.0:
            for x in range(W):
                z[x] += c5 * near_x[x]
        if c6 != 0.0:
            for x in range(W):
                z[x] += c6 * far_x[x]
        if c7 != 0.0:
            dy, ry = depth[y], raw[y]
            for x in range(W):
                z[x] += c7 * _moved(dy[x], ry[x])
        if c8 != 0.0:
            cy = conf[y]
            for x in range(W):
                z[x] += c8 * _prior(cy[x], prior_root)
        for x in range(W):
            p = np.float32(1.0) / (np.float32(1.0) + expf(-z[x]))
            if a[x] / tau <= 0.0:  # amplitude 0: log1p(A / tau) is 0 exactly there and only there
                p = min(p, flat)
            oy[x] = min(p, unknown) if far_x[x] < bare else p


@kernel(**JIT)
def _prior_flat(fbest, fsum, n, tau, conf, prior_root, prior, flat):
    """The ``prior`` feature plane (as :func:`_features` writes it) and where the focus
    curve is flat (``amplitude`` 0, as :func:`_probability` tests it), for :func:`ranked`."""
    H, W = fbest.shape
    inv_n = np.float32(1.0 / n)
    for y in prange(H):
        for x in range(W):
            prior[y, x] = _prior(conf[y, x], prior_root)
            flat[y, x] = _amplitude(fbest[y, x], fsum[y, x], inv_n) / tau <= 0.0


def project(p, prior, flat):
    """A stack's per-pixel probabilities ``p`` as a strictly increasing function of its
    ``prior`` plane, float64 (NaN where ``flat``): the mean ``p`` per bin of the prior
    (:data:`RANK_BINS`), pooled into non-decreasing blocks (pool adjacent violators),
    interpolated linearly between the blocks' mean priors, ``(1 - RANK_EPS)`` of that
    plus ``RANK_EPS`` times the prior scaled to [0, 1]. O(H W) and a loop over the bins."""
    lo, hi = np.log(float(_FLOOR)), np.log(float(_FLOOR) + 1.0)
    keep = ~flat
    x = prior[keep].astype(np.float64)
    out = np.full(prior.shape, np.nan)
    if x.size == 0:
        return out
    b = np.clip(((x - lo) * (RANK_BINS / (hi - lo))).astype(np.int64), 0, RANK_BINS - 1)
    w = np.bincount(b, minlength=RANK_BINS).astype(np.float64)
    sp = np.bincount(b, p[keep].astype(np.float64), RANK_BINS)
    sx = np.bincount(b, x, RANK_BINS)
    blocks = []  # [sum p, pixels, sum prior] of each pooled block, in the prior's order
    for i in np.flatnonzero(w):
        blocks.append([sp[i], w[i], sx[i]])
        while len(blocks) > 1 and blocks[-2][0] * blocks[-1][1] >= blocks[-1][0] * blocks[-2][1]:
            last = blocks.pop()
            for j in range(3):
                blocks[-1][j] += last[j]
    kx = np.array([bl[2] / bl[1] for bl in blocks])
    kv = np.array([bl[0] / bl[1] for bl in blocks])
    out[keep] = (1.0 - RANK_EPS) * np.interp(x, kx, kv) + RANK_EPS * (x - lo) / (hi - lo)
    return out


def _rank_inputs(p, prior, flat):
    """What :func:`ranked` shifts: the pixels without a flat curve (a mask), the logit of
    :func:`project`'s ``q`` there (clipped to [1e-7, 1 - 1e-7]), float64, and the mean
    per-pixel probability ``p`` over them (the stack's level)."""
    keep = ~flat
    q = np.clip(project(p, prior, flat)[keep], 1e-7, 1.0 - 1e-7)
    return keep, np.log(q) - np.log1p(-q), float(np.mean(p[keep], dtype=np.float64))


def leveled(lq, target, slope):
    """``sigmoid(slope * lq + d)``, float64, ``d`` the one shift that makes its mean
    ``target``: Newton's method on that mean (increasing in ``d``), kept inside a
    shrinking bracket of [-40, 40] (bisection where a step would leave it), on every
    :data:`LEVEL_STRIDE`-th value of ``lq`` where it has more than :data:`LEVEL_ALL`
    (the mean of the whole then within about 0.002 of ``target``), then one pass over all."""
    d, lo, hi = 0.0, -40.0, 40.0
    z = slope * lq
    zs = z[::LEVEL_STRIDE] if z.size > LEVEL_ALL else z
    for _ in range(60):
        e = 1.0 / (1.0 + np.exp(-(zs + d)))
        f = float(e.mean()) - target
        if abs(f) < 1e-9:
            break
        lo, hi = (d, hi) if f < 0 else (lo, d)
        g = float((e * (1.0 - e)).mean())
        d = d - f / g if g > 0 and lo < d - f / g < hi else 0.5 * (lo + hi)
    return 1.0 / (1.0 + np.exp(-(z + d)))


def ranked(p, prior, flat, slope):
    """The probability of a mode of :data:`RANK_SLOPE`, float32: :func:`leveled` of the
    logit of :func:`project`'s ``q`` with the mode's ``slope``, its mean held at the
    per-pixel probabilities ``p``'s over the pixels without a flat curve; ``p`` itself
    where the curve is ``flat`` (the :data:`FLAT` cap). A strictly increasing function of
    ``prior`` within the stack (up to float32 rounding)."""
    out = p.copy()
    if flat.all():
        return out
    keep, lq, target = _rank_inputs(p, prior, flat)
    out[keep] = leveled(lq, target, slope)
    return out


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
            p = np.float32(1.0) / (np.float32(1.0) + expf(-z))
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
    with :data:`FLAT` has no ``unknown`` cap unless one is given. The modes of
    :data:`RANK_SLOPE` go through :func:`ranked` (unless ``coef`` is given): ``feats`` are
    then the whole stack's."""
    out = np.empty(feats.shape[1:], np.float32)
    _logistic(feats, *_constants(refine, coef, unknown), out)
    if coef is None and refine in RANK_SLOPE:
        return ranked(out, feats[FEATURES.index("prior")], feats[FEATURES.index("amplitude")] <= 0.0,
                      RANK_SLOPE[refine])
    return out


def confidence_of(maps, refine: str, coef=None, unknown=None) -> np.ndarray:
    """``probability(features(maps, refine), refine, coef, unknown)`` in one pass, without
    the 8 feature planes (the same values to the bit; 4x faster with ``wls``, which uses
    3 features); with the modes of :data:`RANK_SLOPE`, the prior and flat planes for
    :func:`ranked` come from a second small pass."""
    head, (near, far) = _inputs(maps, refine)
    out = np.empty(maps.depth.shape, np.float32)
    _probability(*head, maps.depth, maps.raw, maps.confidence, near, far, BLOCK,
                 *_constants(refine, coef, unknown), out)
    if coef is None and refine in RANK_SLOPE:
        fbest, _, fsum, _, n, tau, _, prior_root = head
        prior, flat = np.empty_like(out), np.empty(out.shape, np.bool_)
        _prior_flat(fbest, fsum, n, tau, maps.confidence, prior_root, prior, flat)
        return ranked(out, prior, flat, RANK_SLOPE[refine])
    return out


class Calibrate(PostStage):
    """``maps.confidence`` := the probability that ``maps.depth`` is within a frame of the truth."""

    def __init__(self, refine: str):
        self.refine = refine

    def run(self, maps):
        maps.confidence = confidence_of(maps, self.refine)
        return maps
