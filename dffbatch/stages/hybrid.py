"""Stage *composite* ``hybrid`` (the default): ``interpolate`` at the finest scale,
Laplacian-pyramid fusion at the coarser ones. No halo at occlusion edges.

Near an occlusion edge no frame shows the far side sharp: where it is in focus, the
blurred near object glows over it (a bright leaf over a dark background: a ring). A
per-pixel choice of frames (``select``, ``interpolate``) switches frames along a ragged
line through that glow and shows the seam. Pyramid fusion (Burt & Adelson) blends each
scale with weights smoothed at that scale, so the glow's low frequencies are averaged
with the frames where the near object is sharp and the seam disappears; but at the
finest scale its focus-power weights blur smooth surfaces, where ``interpolate``'s
blend of the two frames around the sub-frame depth is better (renderer, 256^2, 12
frames: pyramid loses 0.5-1.9 dB on the cone, sinusoid and terrain).

``hybrid`` takes each from where it is better, as one Laplacian pyramid:

* level 0 (the finest detail): each frame's Laplacian blended per pixel as
  ``interpolate`` blends the frames (the frames below, at and above each pixel's best
  one, weighed by the sub-frame depth). Since a Laplacian is the frame less its
  low-pass ``E_k = EXPAND(REDUCE(frame k))``, this is the ``interpolate`` image less the
  same blend of the ``E_k``, which streams as ``interpolate`` does (the ``E_k`` below,
  at and above the best frame kept: :func:`expand_neighbours`);
* levels 1 .. :data:`FUSED` (2): the frames' Laplacians fused with weights ``(G_l F)^p``:
  the focus measure ``F`` reduced to the level (its Gaussian pyramid ``G_l``) to the
  power :data:`SHARPNESS`, summed as they stream (running sums per level: O(H W)
  memory). These scales (2 to 8 px) carry the seam of a per-pixel choice. Where the
  weights are undecided (the largest of the n weights not well above their mean:
  noise, not texture, drives the focus measure) the level is ``interpolate``'s own
  instead, mixed by how decisive they are (:data:`UNDECIDED`, :data:`DECIDED`; the
  largest weight is kept as they stream): fusing weights that noise drives averages
  each frame's detail with that of frames out of focus;
* the levels above: ``interpolate``'s own (the Gaussian pyramid of its image), where
  focus-power weights follow noise more than edges. (Exact: one frame weighed 1
  everywhere comes back as itself; the pyramid of the blend of the frames' low-pass
  would not, and loses 3 dB on a checker plane.)
* the image: the fused levels collapsed onto that top and added to level 0.

On the renderer (``benchmarks/bench_halo.py``, 256^2, 12 frames) this gains 4.05 dB
in the band around the clean leaf's edge, and is within 0.09 dB of ``interpolate``'s
whole-image PSNR on every other scene (the leaf's noisy twin: +0.00).

The depth: the default refine ``wls`` is guided by the all-in-focus image's
luminance. For ``hybrid`` that guide is its own luminance only where it changed
``interpolate``'s by much (a halo removed), ``interpolate``'s where by little
(:func:`guide`, ``maps.allfocus_base``): depth RMSE -41.9% on the clean leaf, no scene
worse than ``interpolate``'s by more than 0.006%.

Kernels are float32 and follow :func:`dffbatch.stages.fusion.pyr_down` /
:func:`~dffbatch.stages.fusion.pyr_up` (binomial [1 4 6 4 1]/16, mirrored borders) to
the byte, computed row by row (``prange`` over rows).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .base import FrameStage
from .composite import _neighbours_row, blend
from .kernels import JIT, JIT_DIV, kernel, readonly

__all__ = ["reduce_level", "expand_level", "expand_accumulate", "expand_neighbours", "collapse_level",
           "level_weights", "levels_for", "combine", "guide", "Hybrid", "SHARPNESS", "FUSED", "UNDECIDED",
           "DECIDED", "GUIDE_GATE"]

#: Power of the reduced focus measure in the fused levels' weights: chosen on the
#: renderer (bench_halo.py): 4 against 2, 8 and 16 gives the clean leaf's best band
#: (31.85 dB against 31.56, 31.57, 31.37) and is within 0.03 dB of the best on its
#: noisy twin.
SHARPNESS = 4
#: Levels fused by focus (1 .. FUSED); the coarser ones are ``interpolate``'s own. Chosen
#: on the renderer (bench_halo.py, 256^2, 12 frames) against 1 and 3: fusing level 1
#: alone loses 0.46 dB on the flat-patch step (untextured blobs, where a per-pixel
#: choice shows the blur of the texture beside them) and level 3 too loses 0.3 dB more
#: on the noisy leaf, where the coarse focus-power weights follow noise, not the edge.
FUSED = 2
#: How decisive the fused levels' weights must be (the largest of the n frames' weights
#: over their mean, per pixel of the level) for the fused level to be taken: at or
#: below UNDECIDED the level is ``interpolate``'s own, at or above DECIDED the fused
#: one, linear between. Where noise, not texture, drives the focus measure (weak
#: texture under sensor noise) the weights are undecided, and their fusion averages
#: each frame's detail with that of frames out of focus. Chosen on the renderer
#: (bench_halo.py, 256^2, 12 frames) with :data:`GUIDE_GATE`: without the mix the noisy
#: leaf loses 0.40 dB (whole image) and 0.47 dB (band) to ``interpolate``; 2 / 4 gives
#: +0.00 / +0.01 and the clean leaf's band +4.05 dB (without: +4.16), against 1.5 / 3
#: (noisy leaf -0.13 dB, clean band +4.13) and 2 / 5 (+0.03, +3.99). As a ratio to the
#: mean it holds for other stack lengths: at 24 frames 2 / 4 gives the clean leaf +5.04 dB
#: (whole image) and the noisy one -0.07, where the max weight's share of the sum
#: (0.15 / 0.4, the same at 12 frames) gives +4.29.
UNDECIDED, DECIDED = 2.0, 4.0
#: The guide of the depth solve (:func:`guide`): where the low-pass of the change the
#: hybrid image made to the luminance (in [0, 1]) goes from GUIDE_GATE[0] to [1], the
#: guide goes from ``interpolate``'s luminance to the hybrid image's. Chosen on the
#: renderer (bench_halo.py; depth RMSE against ``interpolate``'s): the hybrid image
#: itself as the guide takes the clean leaf's depth to -43% but the step-lowtex-noisy
#: scenes to +5.0% / +1.6%, the flat-patch step +1.3%, the noisy leaf +1.0%; a blend of the two
#: luminances trades the one for the other, and so does the low-pass of their
#: difference (the depth follows the edges). The gate 0.035 / 0.07: clean leaf -41.9%,
#: checker steps -0.1% to -0.5%, the noisy leaf +0.006% (14 px at its border, where
#: the hybrid took out a stem's glow), no other scene worse; 0.03 / 0.06 gives
#: -2.0% / -3.4% on the checker steps but the noisy leaf +0.013%, 0.04 / 0.08 +0.002%
#: and no checker gain.
GUIDE_GATE = (0.035, 0.07)
#: Added to the reduced focus before the power: keeps ``(F + eps)^4`` a normal float32
#: where no frame has texture (all frames then weigh alike there).
EPS = 1e-6
_K0, _K1, _K2 = np.float32(1.0 / 16.0), np.float32(4.0 / 16.0), np.float32(6.0 / 16.0)
_FOUR = np.float32(4.0)


def levels_for(shape, min_side=16, max_levels=6) -> int:
    """Pyramid levels for an image of ``shape``: as :class:`dffbatch.stages.fusion.PyramidFusion`."""
    H, W = shape[:2]
    levels = 1
    while levels < max_levels and min(H, W) // (2 ** levels) >= min_side:
        levels += 1
    return levels


def level_shape(shape, level):
    """(h, w) of a level: ``pyr_down`` keeps every second pixel, the first included."""
    h, w = shape[:2]
    for _ in range(level):
        h, w = (h + 1) // 2, (w + 1) // 2
    return h, w


@njit(cache=True, inline="always")
def _refl(i, n):
    """Mirrored index (numpy's ``reflect``) for overshoots of at most ``n - 1``."""
    return -i if i < 0 else (2 * (n - 1) - i if i >= n else i)


@kernel(**JIT)
def reduce_level(src, dst):
    """``pyr_down``: the binomial blur (rows, then columns; mirrored borders) of ``src``
    (h, w, C), any real dtype, at every second row and column, into ``dst`` float32
    ((h + 1) // 2, (w + 1) // 2, C). ``h, w >= 3``."""
    h, w, C = src.shape
    h2, w2 = dst.shape[0], dst.shape[1]
    n = w * C
    for y2 in prange(h2):
        y = 2 * y2
        ra, rb, rc = src[_refl(y - 2, h)].reshape(n), src[_refl(y - 1, h)].reshape(n), src[y].reshape(n)
        rd, re = src[_refl(y + 1, h)].reshape(n), src[_refl(y + 2, h)].reshape(n)
        row = np.empty(n, np.float32)
        for i in range(n):  # rows as flat runs of values: vectorised
            row[i] = ((np.float32(ra[i]) + np.float32(re[i])) * _K0 + (np.float32(rb[i]) + np.float32(rd[i])) * _K1
                      + np.float32(rc[i]) * _K2)
        out = dst[y2].reshape(w2 * C)
        inner = min(w2, (w - 3) // 2 + 1)  # columns 2 x2 +- 2 inside the row: no mirroring
        if C == 1:  # a focus map
            for x2 in range(1, inner):
                x = 2 * x2
                out[x2] = (row[x - 2] + row[x + 2]) * _K0 + (row[x - 1] + row[x + 1]) * _K1 + row[x] * _K2
        elif C == 3:  # spelt out for RGB (see _expand_row)
            for x2 in range(1, inner):
                o, x = 3 * x2, 6 * x2
                out[o] = (row[x - 6] + row[x + 6]) * _K0 + (row[x - 3] + row[x + 3]) * _K1 + row[x] * _K2
                out[o + 1] = (row[x - 5] + row[x + 7]) * _K0 + (row[x - 2] + row[x + 4]) * _K1 + row[x + 1] * _K2
                out[o + 2] = (row[x - 4] + row[x + 8]) * _K0 + (row[x - 1] + row[x + 5]) * _K1 + row[x + 2] * _K2
        else:
            for x2 in range(1, inner):
                o, x = x2 * C, 2 * x2 * C
                for c in range(C):
                    out[o + c] = ((row[x - 2 * C + c] + row[x + 2 * C + c]) * _K0
                                  + (row[x - C + c] + row[x + C + c]) * _K1 + row[x + c] * _K2)
        for x2 in range(w2):  # the ends, mirrored
            if 1 <= x2 < inner:
                continue
            x = 2 * x2
            xa, xb, xd, xe = _refl(x - 2, w), _refl(x - 1, w), _refl(x + 1, w), _refl(x + 2, w)
            for c in range(C):
                out[x2 * C + c] = ((row[xa * C + c] + row[xe * C + c]) * _K0
                                   + (row[xb * C + c] + row[xd * C + c]) * _K1 + row[x * C + c] * _K2)


@njit(cache=True, nogil=True)
def _expand_row(src, i, H, W, row, vrow):
    """Row ``i`` of ``pyr_up(src, (H, W))`` into ``row`` (W * C flat); ``vrow`` (wc * C) scratch.

    The zero-inserted image has values at even (row, column) only; mirroring keeps an
    index's parity, so each tap is a coarse value or an exact zero, and the sums here
    (the zero taps left out: ``a + 0 = a`` exactly) are those of the blur over it."""
    wc, C = src.shape[1], src.shape[2]
    n = wc * C
    if i % 2 == 0:  # taps i-2, i, i+2 hold coarse rows; i-1, i+1 are zero
        ra, rm, rb = src[_refl(i - 2, H) // 2].reshape(n), src[i // 2].reshape(n), src[_refl(i + 2, H) // 2].reshape(n)
        for j in range(n):
            vrow[j] = (ra[j] + rb[j]) * _K0 + rm[j] * _K2
    else:  # taps i-1, i+1 hold coarse rows
        ra, rb = src[_refl(i - 1, H) // 2].reshape(n), src[_refl(i + 1, H) // 2].reshape(n)
        for j in range(n):
            vrow[j] = (ra[j] + rb[j]) * _K1
    last = (W - 1) // 2  # coarse columns 1 .. last - 1 need no mirroring on either side
    if C == 3:  # spelt out for RGB, as composite._masks: the channel loop keeps LLVM from vectorising
        for m in range(1, last):
            o, v = 6 * m, 3 * m
            row[o] = ((vrow[v - 3] + vrow[v + 3]) * _K0 + vrow[v] * _K2) * _FOUR
            row[o + 1] = ((vrow[v - 2] + vrow[v + 4]) * _K0 + vrow[v + 1] * _K2) * _FOUR
            row[o + 2] = ((vrow[v - 1] + vrow[v + 5]) * _K0 + vrow[v + 2] * _K2) * _FOUR
            row[o + 3] = ((vrow[v] + vrow[v + 3]) * _K1) * _FOUR
            row[o + 4] = ((vrow[v + 1] + vrow[v + 4]) * _K1) * _FOUR
            row[o + 5] = ((vrow[v + 2] + vrow[v + 5]) * _K1) * _FOUR
    elif C == 1:  # a grey image or a map (the depth solve's guide), spelt out as RGB is
        for m in range(1, last):
            row[2 * m] = ((vrow[m - 1] + vrow[m + 1]) * _K0 + vrow[m] * _K2) * _FOUR
            row[2 * m + 1] = ((vrow[m] + vrow[m + 1]) * _K1) * _FOUR
    else:
        for m in range(1, last):
            o, v = 2 * m * C, m * C
            for c in range(C):
                row[o + c] = ((vrow[v - C + c] + vrow[v + C + c]) * _K0 + vrow[v + c] * _K2) * _FOUR
                row[o + C + c] = ((vrow[v + c] + vrow[v + C + c]) * _K1) * _FOUR
    for x in range(W):  # the ends, mirrored
        if 2 <= x < 2 * last:
            continue
        if x % 2 == 0:
            a, m, b = _refl(x - 2, W) // 2, x // 2, _refl(x + 2, W) // 2
            for c in range(C):
                row[x * C + c] = ((vrow[a * C + c] + vrow[b * C + c]) * _K0 + vrow[m * C + c] * _K2) * _FOUR
        else:
            a, b = _refl(x - 1, W) // 2, _refl(x + 1, W) // 2
            for c in range(C):
                row[x * C + c] = ((vrow[a * C + c] + vrow[b * C + c]) * _K1) * _FOUR


@njit(cache=True, nogil=True)
def _coarse_row(coarse, i, H, W, C):
    """Row ``i`` of ``pyr_up(coarse, (H, W))``, flat (W * C); zeros where ``coarse`` is
    empty (the top level: nothing above it)."""
    row = np.zeros(W * C, np.float32)
    if coarse.shape[0] != 0:
        _expand_row(coarse, i, H, W, row, np.empty(coarse.shape[1] * C, np.float32))
    return row


@kernel(**JIT)
def expand_level(src, dst):
    """``pyr_up(src, dst.shape[:2])`` into ``dst`` (H, W, C) float32; ``H, W >= 3``."""
    H, W, C = dst.shape
    for i in prange(H):
        vrow = np.empty(src.shape[1] * C, np.float32)
        _expand_row(src, np.int64(i), H, W, dst[i].reshape(W * C), vrow)


@kernel(**JIT)
def expand_accumulate(g, coarse, w, first, acc, wsum, wmax):
    """One frame's Laplacian level ``g - pyr_up(coarse)`` (``coarse`` None-like: an empty
    array for the top level, whose "Laplacian" is ``g`` itself) weighed by ``w`` (h, w)
    into the running sums ``acc`` (h, w, C) and ``wsum`` (h, w); ``wmax`` (h, w) keeps
    the largest weight (how decisive the weights are: :func:`collapse_level`). ``first``
    (the first frame): each row of the three is set to 0 here before it is summed into
    (the arrays start uninitialised)."""
    H, W, C = g.shape
    zero = np.float32(0.0)
    for i in prange(H):
        row = _coarse_row(coarse, np.int64(i), H, W, C)
        gi, wi, ai, si, mi = g[i].reshape(W * C), w[i], acc[i].reshape(W * C), wsum[i], wmax[i]
        if first:  # the row set to 0 here, in the cache, rather than the whole arrays beforehand
            for x in range(W):
                si[x] = zero
                mi[x] = zero
            for j in range(W * C):
                ai[j] = zero
        for x in range(W):
            si[x] += wi[x]
            mi[x] = max(mi[x], wi[x])
        if C == 3:  # spelt out for RGB (see _expand_row)
            for x in range(W):
                wx, j = wi[x], 3 * x
                ai[j] += wx * (gi[j] - row[j])
                ai[j + 1] += wx * (gi[j + 1] - row[j + 1])
                ai[j + 2] += wx * (gi[j + 2] - row[j + 2])
        else:
            for x in range(W):
                wx = wi[x]
                for c in range(C):
                    ai[x * C + c] += wx * (gi[x * C + c] - row[x * C + c])


@kernel(**JIT)
def expand_neighbours(g1, k, best, scale, E, E_prev, below, at, above):
    """``E = pyr_up(g1)`` (frame ``k``'s low-pass on the output grid) as stored, and, as
    :func:`dffbatch.stages.composite.update_neighbours` keeps colours, the low-pass of
    the frames below, at and above each pixel's best frame (``best``: the depth state
    after frame k; ``E_prev``: frame k-1's low-pass, ignored for frame 0).

    Storage (``E`` and the three states alike): float32 seen as uint32 bits, ``scale``
    1; or, for 8-bit frames, uint16 fixed point, ``scale`` 256 (rounded: within 1/512
    of the float, and half the memory traffic of float32, which bounds this pass)."""
    H, W, C = E.shape
    n = W * C
    kk = np.int32(k)
    ones = E.dtype.type(-1) if E.dtype.kind == "i" else ~E.dtype.type(0)
    for i in prange(H):
        vrow = np.empty(g1.shape[1] * C, np.float32)
        row = np.empty(n, np.float32)
        _expand_row(g1, np.int64(i), H, W, row, vrow)
        e = E[i].reshape(n)
        if scale == 1.0:
            ef = e.view(np.float32)
            for j in range(n):
                ef[j] = row[j]
        else:  # a low-pass of 8-bit values: a convex sum in [0, 255] (rounding: within 1e-4), no clamp needed
            for j in range(n):
                e[j] = E.dtype.type(row[j] * scale + np.float32(0.5))
        m, q = np.empty(n, E.dtype), np.empty(n, E.dtype)
        p = E_prev[i] if k > 0 else E[i]
        _neighbours_row(E[i], p, best[i], kk, ones, m, q, below[i], at[i], above[i])


@kernel(**JIT_DIV)
def collapse_level(coarse, acc, wsum, wmax, n, own, own_coarse, lo, hi, dst):
    """``dst = pyr_up(coarse) + a * acc / wsum + (1 - a) * (own - pyr_up(own_coarse))``: a
    fused level on the image below it, mixed per pixel with the same level of another
    pyramid (``own``, the Gaussian levels l and l + 1 of ``interpolate``'s image) by how
    decisive the weights were: ``a`` rises from 0 to 1 as ``n * wmax / wsum`` (the
    largest of ``n`` weights over their mean) goes from ``lo`` to ``hi``; 0 where no
    weight reached. ``own`` empty: ``a`` = 1 (pure fusion; 0 where no weight reached).
    ``coarse`` empty: the top level, nothing above it."""
    H, W, C = dst.shape
    mixed = own.shape[0] != 0
    nf, inv = np.float32(n), np.float32(1.0) / (hi - lo)
    for i in prange(H):
        row = _coarse_row(coarse, np.int64(i), H, W, C)
        ai, si, mi, di = acc[i].reshape(W * C), wsum[i], wmax[i], dst[i].reshape(W * C)
        if mixed:
            orow = _coarse_row(own_coarse, np.int64(i), H, W, C)
            oi = own[i].reshape(W * C)
            fs, bs = np.empty(W, np.float32), np.empty(W, np.float32)
            for x in range(W):  # the pixels' factors first: a loop without branches, vectorised
                s = si[x]
                a = min(max((nf * mi[x] / s - lo) * inv, np.float32(0.0)), np.float32(1.0))
                a = a if s > 0 else np.float32(0.0)
                f = a / s
                fs[x] = f if s > 0 else np.float32(0.0)
                bs[x] = np.float32(1.0) - a
            if C == 3:  # spelt out for RGB (see _expand_row)
                for x in range(W):
                    f, b, j = fs[x], bs[x], 3 * x
                    di[j] = row[j] + ai[j] * f + b * (oi[j] - orow[j])
                    di[j + 1] = row[j + 1] + ai[j + 1] * f + b * (oi[j + 1] - orow[j + 1])
                    di[j + 2] = row[j + 2] + ai[j + 2] * f + b * (oi[j + 2] - orow[j + 2])
            else:
                for x in range(W):
                    f, b = fs[x], bs[x]
                    for c in range(C):
                        j = x * C + c
                        di[j] = row[j] + ai[j] * f + b * (oi[j] - orow[j])
        else:
            for x in range(W):
                s = si[x]
                f = np.float32(1.0) / s if s > 0 else np.float32(0.0)
                for c in range(C):
                    di[x * C + c] = row[x * C + c] + ai[x * C + c] * f


@kernel(**JIT)
def _gate(g, base, spread, t0, inv, out):
    """``base + clip((spread - t0) * inv, 0, 1) * (g - base)`` (see :func:`guide`)."""
    H, W = out.shape
    for y in prange(H):
        gy, by, sy, oy = g[y], base[y], spread[y], out[y]
        for x in range(W):
            t = min(max((sy[x] - t0) * inv, np.float32(0.0)), np.float32(1.0))
            oy[x] = by[x] + t * (gy[x] - by[x])


@kernel(**JIT)
def _absdiff(a, b, out):
    H, W = out.shape
    for y in prange(H):
        for x in range(W):
            out[y, x] = abs(a[y, x] - b[y, x])


def guide(g, base):
    """The depth solve's guide for a hybrid image: its luminance ``g`` where it differs
    from ``interpolate``'s (``base``, both (H, W) float32 in [0, 1]) by much, ``base``
    where by little, as the low-pass ``EXPAND(REDUCE(|g - base|))`` goes from
    :data:`GUIDE_GATE` [0] to [1].

    Where the hybrid image changes much, it removed a halo (the glow of a near object
    over a far background), whose ragged seams would hold the solve off the true edge;
    where it changes little, it only softened the seam of a per-pixel choice at a
    depth jump, and that seam (an artefact, but where the depth jumps) holds the solve
    at the jump better than the truer image."""
    H, W = g.shape
    d = np.empty((H, W, 1), np.float32)
    _absdiff(g, base, d[:, :, 0])
    low = np.empty(((H + 1) // 2, (W + 1) // 2, 1), np.float32)
    reduce_level(d, low)
    expand_level(low, d)
    out = np.empty((H, W), np.float32)
    t0, t1 = GUIDE_GATE
    _gate(g, base, d[:, :, 0], np.float32(t0), np.float32(1.0 / (t1 - t0)), out)
    return out


@kernel(**JIT)
def level_weights(s, eps, log2p, out):
    """``(s + eps) ** 2**log2p`` (float32, by squaring) of a reduced focus map (h, w)."""
    H, W = s.shape
    for y in prange(H):
        sy, oy = s[y], out[y]
        for x in range(W):  # the squarings as passes over the row: vectorised (an inner loop per value is not)
            oy[x] = sy[x] + eps
        for _ in range(log2p):
            for x in range(W):
                oy[x] = oy[x] * oy[x]


@kernel(**JIT)
def combine(interp, low_interp, inv_scale, low_fused, is_int, top, out):
    """``interp - low_interp * inv_scale + low_fused`` (float32), rounded to nearest and
    clipped to [0, top] for integer outputs."""
    H, W, C = out.shape
    n = W * C
    for y in prange(H):
        a, b, f, o = interp[y].reshape(n), low_interp[y].reshape(n), low_fused[y].reshape(n), out[y].reshape(n)
        for j in range(n):
            v = np.float32(a[j]) - b[j] * inv_scale + f[j]
            if is_int:
                o[j] = min(max(math.floor(v + np.float32(0.5)), np.float32(0.0)), top)
            else:
                o[j] = v


class Hybrid(FrameStage):
    """Per-frame stage for ``composite: hybrid``: beside the ``interpolate`` composite
    (``interp``, a :class:`dffbatch.stages.composite.Composite`, fused or not) it builds
    each frame's pyramid on the output grid, keeps the low-pass of the frames around
    each pixel's best one and the fused coarse levels; at the end it replaces
    ``maps.allfocus`` (``interpolate``'s) by the hybrid image."""

    timing = "composite"

    def __init__(self, depth, grid):
        self.depth = depth
        self.grid = grid

    def start(self, shape, dtype):
        self.planar = len(shape) == 2
        C = 1 if self.planar else shape[2]
        self.shape = (*self.grid.shape(shape), C)
        self.dtype = np.dtype(dtype)
        self.m = min(FUSED, levels_for(self.shape) - 1)  # fused levels 1 .. m
        if self.m < 1:
            return
        m, f32 = self.m, np.float32
        self.sizes = [level_shape(self.shape, l) for l in range(m + 2)]
        self.G = [None] + [np.empty((*s, C), f32) for s in self.sizes[1:]]  # frame k, levels 1 .. m + 1
        self.S = [None] + [np.empty(s, f32) for s in self.sizes[1:m + 1]]  # its focus, levels 1 .. m
        self.w = [None] + [np.empty(s, f32) for s in self.sizes[1:m + 1]]
        # running sums and states: written whole by the first frame (expand_accumulate's
        # ``first``, expand_neighbours at k = 0), not filled here
        self.acc = [None] + [np.empty((*s, C), f32) for s in self.sizes[1:m + 1]]
        self.wsum = [None] + [np.empty(s, f32) for s in self.sizes[1:m + 1]]
        self.wmax = [None] + [np.empty(s, f32) for s in self.sizes[1:m + 1]]
        self.n = 0
        # the low-pass of the frames around each pixel's best one: see expand_neighbours
        store, self.scale = (np.uint16, 256.0) if self.dtype == np.uint8 else (np.uint32, 1.0)
        # E is written whole before it is read, and E_prev is the E of the frame before
        self.E, self.E_prev = np.empty(self.shape, store), np.empty(self.shape, store)
        self.below, self.at, self.above = (np.empty(self.shape, store) for _ in range(3))

    def update(self, frame, k):
        m = self.m
        if m < 1:
            return
        # read-only, as every kernel sees input frames: one compiled specialisation, not two
        self.G[1] = self.grid.reduced(readonly(frame.pixels), k, self.G[1], reduce_level)
        for l in range(2, m + 2):
            reduce_level(self.G[l - 1], self.G[l])
        reduce_level(frame.focus[:, :, None], self.S[1][:, :, None])
        for l in range(2, m + 1):
            reduce_level(self.S[l - 1][:, :, None], self.S[l][:, :, None])
        eps, log2p = np.float32(EPS), int(round(math.log2(SHARPNESS)))
        for l in range(1, m + 1):
            level_weights(self.S[l], eps, log2p, self.w[l])
            expand_accumulate(self.G[l], self.G[l + 1], self.w[l], k == 0, self.acc[l], self.wsum[l],
                              self.wmax[l])
        self.n = k + 1
        if k:
            self.E, self.E_prev = self.E_prev, self.E
        expand_neighbours(self.G[1], k, self.depth.state.best, np.float32(self.scale), self.E, self.E_prev,
                          self.below, self.at, self.above)

    def finish(self, maps):
        if self.m < 1:
            return
        interp = maps.allfocus[:, :, None] if self.planar else maps.allfocus
        low_interp = np.empty(self.shape, np.float32)
        states = (self.below, self.at, self.above) if self.scale != 1.0 else \
            (self.below.view(np.float32), self.at.view(np.float32), self.above.view(np.float32))
        blend(maps.raw, maps.state.best, *states, False, low_interp)
        own = [readonly(interp)]  # interpolate's own Gaussian pyramid: the levels above the fused ones,
        for l in range(1, self.m + 2):  # and the fused levels' fallback where their weights are undecided
            own.append(np.empty((*self.sizes[l], self.shape[2]), np.float32))
            reduce_level(own[l - 1], own[l])
        img = own[self.m + 1]
        lo, hi = np.float32(UNDECIDED), np.float32(DECIDED)
        for l in range(self.m, 0, -1):
            dst = np.empty((*self.sizes[l], self.shape[2]), np.float32)
            collapse_level(img, self.acc[l], self.wsum[l], self.wmax[l], self.n, own[l], own[l + 1], lo, hi, dst)
            img = dst
        low_fused = np.empty(self.shape, np.float32)
        expand_level(img, low_fused)
        is_int = self.dtype.kind in "ui"
        out = np.empty(self.shape, self.dtype)
        combine(interp, low_interp, np.float32(1.0 / self.scale), low_fused, is_int,
                np.float32(np.iinfo(self.dtype).max if is_int else 0.0), out)
        maps.allfocus_base = maps.allfocus  # interpolate's image: the depth solve's guide keeps its seams (guide)
        maps.allfocus = out[:, :, 0] if self.planar else out

_EMPTY = np.zeros((0, 0, 1), np.float32)
