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

from .base import FrameStage
from .kernels import JIT, JIT_DIV, kernel, readonly, zeros
from .depth import _offset

__all__ = ["COMPOSITES", "Compositor", "Composite"]

from ..params import COMPOSITES  # noqa: E402 - pyramid: dffbatch.stages.fusion


@njit(cache=True, inline="always")
def _masks(by, kk, C, ones, m_at, m_above):
    """Per-element masks of one row: all ones where ``by == kk`` (``m_at``), and where
    ``by == kk - 1`` (``m_above``), each value repeated over the ``C`` channels."""
    zero = ones ^ ones
    km1 = kk - np.int32(1)
    if C == 3:  # spelt out for RGB: 4x faster than the channel loop
        for x in range(by.shape[0]):
            b = by[x]
            ma = ones if b == kk else zero
            mb = ones if b == km1 else zero
            m_at[3 * x] = ma
            m_at[3 * x + 1] = ma
            m_at[3 * x + 2] = ma
            m_above[3 * x] = mb
            m_above[3 * x + 1] = mb
            m_above[3 * x + 2] = mb
        return
    for x in range(by.shape[0]):
        b = by[x]
        ma = ones if b == kk else zero
        mb = ones if b == km1 else zero
        for c in range(C):
            m_at[x * C + c] = ma
            m_above[x * C + c] = mb


@njit(cache=True, nogil=True)  # a call per row: compiled once, not inlined into each kernel
def _select_row(src, by, kk, ones, m, n, dst):
    """One row of :func:`update_select`: rows as (W, C) views, ``m``, ``n`` scratch of W*C."""
    W, C = src.shape
    s, d = src.reshape(W * C), dst.reshape(W * C)
    _masks(by, kk, C, ones, m, n)
    if kk == 0:  # the first frame: the row starts at 0 here, in the cache (see Compositor)
        for i in range(W * C):
            d[i] = 0
    for i in range(W * C):
        d[i] = (s[i] & m[i]) | (d[i] & ~m[i])


@njit(cache=True, nogil=True)  # a call per row: compiled once, not inlined into each kernel
def _neighbours_row(src, prv, by, kk, ones, m, n, below, at, above):
    """One row of :func:`update_neighbours` (as :func:`_select_row`)."""
    W, C = src.shape
    s, p = src.reshape(W * C), prv.reshape(W * C)
    bl, at_, ab = below.reshape(W * C), at.reshape(W * C), above.reshape(W * C)
    _masks(by, kk, C, ones, m, n)
    if kk == 0:  # the first frame: the rows start at 0 here, in the cache (see Compositor)
        for i in range(W * C):
            at_[i] = bl[i] = ab[i] = 0
    for i in range(W * C):
        si, mi, ni = s[i], m[i], n[i]
        at_[i] = (si & mi) | (at_[i] & ~mi)
        bl[i] = (p[i] & mi) | (bl[i] & ~mi)
        ab[i] = (si & ni) | (ab[i] & ~ni)


@kernel(**JIT)
def update_select(frame, best, k, out, ones):
    """Copy frame ``k``'s pixels where it is the best frame so far.

    Arrays are (H, W, C) of unsigned integers (any dtype seen through the unsigned view
    of its width, see :meth:`Compositor.update`); ``ones`` is that type's all-ones value.
    The copy is a bitwise blend through a mask: no branch per pixel, so LLVM vectorises
    it (4-6x faster than a branch per pixel on real depth maps), and exact.
    """
    H, W, C = frame.shape
    kk = np.int32(k)
    for y in prange(H):
        m, n = np.empty(W * C, frame.dtype), np.empty(W * C, frame.dtype)
        _select_row(frame[y], best[y], kk, ones, m, n, out[y])


@kernel(**JIT)
def update_neighbours(frame, prev, best, k, below, at, above, ones):
    """Keep the colours of the best frame and of the frames just below and above it
    (bitwise blends, as :func:`update_select`)."""
    H, W, C = frame.shape
    kk = np.int32(k)
    for y in prange(H):
        m, n = np.empty(W * C, frame.dtype), np.empty(W * C, frame.dtype)
        _neighbours_row(frame[y], prev[y], best[y], kk, ones, m, n, below[y], at[y], above[y])


def _bits(a):
    """``a`` seen as unsigned integers of its width (a view: the kernels above blend bits)."""
    return a.view(np.dtype(f"u{a.dtype.itemsize}"))


def _ones(dtype):
    """The all-ones value of the unsigned type as wide as ``dtype``."""
    u = np.dtype(f"u{np.dtype(dtype).itemsize}")
    return u.type(np.iinfo(u).max)


_S3 = math.sin(math.pi / 3.0)


@njit(cache=True, inline="always")
def _lanczos3(t):
    """Lanczos-3 weights of the 6 samples at offsets -2..3 around t in [0, 1), normalised.

    ``3 sin(pi d) sin(pi d / 3) / (pi d)^2`` at d = t + 2 - i, with three
    transcendental calls instead of twelve: sin(pi d) = (-1)^i sin(pi t), and
    sin(pi d / 3) = sin(a + m pi / 3) with a = pi t / 3, m = 2 - i, by angle addition.
    Returned as a tuple: no allocation per sample.
    """
    if t == 0.0:
        return 0.0, 0.0, 1.0, 0.0, 0.0, 0.0
    st = math.sin(math.pi * t)
    a = math.pi * t / 3.0
    sa, ca = math.sin(a), math.cos(a)
    h = 0.5
    # sin(a + m pi / 3) for m = 2, 1, 0, -1, -2, -3 (taps i = 0..5)
    s0 = sa * -h + ca * _S3
    s1 = sa * h + ca * _S3
    s2 = sa
    s3 = sa * h - ca * _S3
    s4 = sa * -h - ca * _S3
    s5 = -sa
    p2 = math.pi * math.pi
    d0, d1, d2, d3, d4, d5 = t + 2.0, t + 1.0, t, t - 1.0, t - 2.0, t - 3.0
    w0 = 3.0 * st * s0 / (p2 * d0 * d0)
    w1 = -3.0 * st * s1 / (p2 * d1 * d1)
    w2 = 3.0 * st * s2 / (p2 * d2 * d2)
    w3 = -3.0 * st * s3 / (p2 * d3 * d3)
    w4 = 3.0 * st * s4 / (p2 * d4 * d4)
    w5 = -3.0 * st * s5 / (p2 * d5 * d5)
    n = 1.0 / (w0 + w1 + w2 + w3 + w4 + w5)
    return w0 * n, w1 * n, w2 * n, w3 * n, w4 * n, w5 * n


#: Lanczos-3 weights tabulated at 1/1024 px: a sample's weights cost a table lookup instead
#: of 6 transcendental calls (which took most of the aligned compositor's time). The
#: position is rounded by at most 1/2048 px; offset 0 (and 1) keeps the exact (0, 0, 1, 0, 0, 0).
_LUT_STEPS = 1024
_L3 = np.array([_lanczos3.py_func(i / _LUT_STEPS) if i < _LUT_STEPS else (0.0, 0.0, 0.0, 1.0, 0.0, 0.0)
                for i in range(_LUT_STEPS + 1)], np.float64)


# Not inlined: settle_warped calls it five times, and inlining took that kernel's compile
# from 2.7 s to 12.3 s (benchmarks/compile_profile.py) for no gain at run time. Callers
# pass ``y`` as int64 (a prange index may be uint64): one specialisation.
@njit(cache=True)
def _sample_into(frame, M, x, y, dst, is_int, top):
    """``dst[c]`` = frame sampled at ``M @ (x, y, 1)`` by Lanczos-3 (6 x 6 taps, weights
    normalised), borders clamped; integer data rounded and clipped to [0, top]. Exact
    (the frame's own value) wherever the point falls on a pixel, e.g. for the identity.

    Chosen on ground truth (rendered breathing, 512^2, 20 frames, 0.3% per frame):
    all-in-focus PSNR nearest 31.7 / 31.3 dB, bicubic 37.2 / 36.7, Lanczos-3 38.8 / 38.0
    (slant / terrain; unmoved twins 44.1 / 38.5)."""
    Hf, Wf, C = frame.shape
    sx = M[0, 0] * x + M[0, 1] * y + M[0, 2]
    sy = M[1, 0] * x + M[1, 1] * y + M[1, 2]
    x0 = math.floor(sx)
    y0 = math.floor(sy)
    ix, iy = int((sx - x0) * _LUT_STEPS + 0.5), int((sy - y0) * _LUT_STEPS + 0.5)
    if (ix == 0 or ix == _LUT_STEPS) and (iy == 0 or iy == _LUT_STEPS):  # on a pixel (the reference
        yy = min(max(y0 + (iy != 0), 0), Hf - 1)  # frame): its value, as the weights (0 .. 1 .. 0) give
        xx = min(max(x0 + (ix != 0), 0), Wf - 1)
        for c in range(C):
            dst[c] = frame[yy, xx, c]
        return
    wx, wy = _L3[ix], _L3[iy]
    xs = (min(max(x0 - 2, 0), Wf - 1), min(max(x0 - 1, 0), Wf - 1), min(max(x0, 0), Wf - 1),
          min(max(x0 + 1, 0), Wf - 1), min(max(x0 + 2, 0), Wf - 1), min(max(x0 + 3, 0), Wf - 1))
    w0, w1, w2, w3, w4, w5 = wx[0], wx[1], wx[2], wx[3], wx[4], wx[5]
    if C == 3:  # colour: the 36 pixels read once for the three channels, in the same order of sums
        v0 = v1 = v2 = 0.0
        for j in range(6):
            if wy[j] == 0.0:  # a row of weight 0 adds exactly 0 (the pixels are finite)
                continue
            r = frame[min(max(y0 - 2 + j, 0), Hf - 1)]
            a, b, c_, d, e, f = r[xs[0]], r[xs[1]], r[xs[2]], r[xs[3]], r[xs[4]], r[xs[5]]
            wj = wy[j]
            v0 += wj * (w0 * np.float64(a[0]) + w1 * np.float64(b[0]) + w2 * np.float64(c_[0])
                        + w3 * np.float64(d[0]) + w4 * np.float64(e[0]) + w5 * np.float64(f[0]))
            v1 += wj * (w0 * np.float64(a[1]) + w1 * np.float64(b[1]) + w2 * np.float64(c_[1])
                        + w3 * np.float64(d[1]) + w4 * np.float64(e[1]) + w5 * np.float64(f[1]))
            v2 += wj * (w0 * np.float64(a[2]) + w1 * np.float64(b[2]) + w2 * np.float64(c_[2])
                        + w3 * np.float64(d[2]) + w4 * np.float64(e[2]) + w5 * np.float64(f[2]))
        if is_int:
            v0 = min(max(math.floor(v0 + 0.5), 0.0), top)
            v1 = min(max(math.floor(v1 + 0.5), 0.0), top)
            v2 = min(max(math.floor(v2 + 0.5), 0.0), top)
        dst[0] = v0
        dst[1] = v1
        dst[2] = v2
        return
    for c in range(C):
        v = 0.0
        for j in range(6):
            if wy[j] == 0.0:
                continue
            yy = min(max(y0 - 2 + j, 0), Hf - 1)
            r = frame[yy]
            row = (w0 * np.float64(r[xs[0], c]) + w1 * np.float64(r[xs[1], c])
                   + w2 * np.float64(r[xs[2], c]) + w3 * np.float64(r[xs[3], c])
                   + w4 * np.float64(r[xs[4], c]) + w5 * np.float64(r[xs[5], c]))
            v += wy[j] * row
        if is_int:
            v = min(max(math.floor(v + 0.5), 0.0), top)
        dst[c] = v


@kernel(**JIT)
def update_select_warped(frame, M, best, k, out, is_int, top):
    """:func:`update_select` for a frame not on the output grid (alignment): output pixel
    (y, x) takes the frame sampled at ``M @ (x, y, 1)`` (Lanczos-3), only where it is needed."""
    H, W, C = out.shape
    kk = np.int32(k)
    for y in prange(H):
        for x in range(W):
            if best[y, x] == kk:
                _sample_into(frame, M, x, np.int64(y), out[y, x], is_int, top)


@kernel(**JIT)
def update_neighbours_warped(frame, M, prev, Mp, best, k, below, at, above, is_int, top):
    """:func:`update_neighbours` for frames not on the output grid (see
    :func:`update_select_warped`); ``prev`` is frame k-1 with its own matrix ``Mp``."""
    H, W, C = at.shape
    for y in prange(H):
        for x in range(W):
            b = best[y, x]
            if b == k:
                _sample_into(frame, M, x, np.int64(y), at[y, x], is_int, top)
                _sample_into(prev, Mp, x, np.int64(y), below[y, x], is_int, top)
            elif b == k - 1:
                _sample_into(frame, M, x, np.int64(y), above[y, x], is_int, top)


@kernel(**JIT_DIV)  # _offset divides by den = 0 on flat curves, then discards the result
def settle_warped(frame, M, prev, Mp, nxt, Mn, best, k, stamp, below, at, above, neighbours, is_int, top,
                  fbelow, fbest, fabove, mode):
    """Lazy form of :func:`update_select_warped` / :func:`update_neighbours_warped`:
    where frame ``k`` is the best and the pixel has not been sampled for it yet
    (``stamp``, -1 at the start), sample it into ``at``, and the neighbouring frames:

    * ``neighbours`` 0: none (``select``, or the last frame of ``interpolate``, whose
      depth is N-1: :func:`blend` reads ``at`` alone there);
    * 1: the frame below (``prev``) into ``below`` and the one above (``nxt``) into
      ``above``, as the eager kernels do;
    * 2: only the one :func:`blend` will read. A pixel whose best frame ``k`` has a
      frame after it has its depth once that frame is measured: ``k + offset`` from
      the focus values around the peak (``fbelow``, ``fbest``, ``fabove``; ``mode`` the
      interpolation), in :func:`dffbatch.stages.depth.finish_depth`'s arithmetic. Below ``k``
      :func:`blend` reads ``below``, above it ``above``, at ``k`` exactly neither.

    Called once a pixel's best frame has held for a few frames, and at the end: each
    pixel is sampled 1.2-1.4 times per stack instead of at every change of its best
    frame. The result equals the eager updates'."""
    H, W, C = at.shape
    kk = np.int32(k)
    for y in prange(H):
        for x in range(W):
            if best[y, x] == kk and stamp[y, x] != kk:
                _sample_into(frame, M, x, np.int64(y), at[y, x], is_int, top)
                if neighbours == 1:
                    _sample_into(prev, Mp, x, np.int64(y), below[y, x], is_int, top)
                    _sample_into(nxt, Mn, x, np.int64(y), above[y, x], is_int, top)
                elif neighbours == 2 and k > 0:
                    off = _offset(fbelow[y, x], fbest[y, x], fabove[y, x], mode)
                    d = np.float32(np.float32(k) + off)
                    if d < np.float32(k):
                        _sample_into(prev, Mp, x, np.int64(y), below[y, x], is_int, top)
                    elif d > np.float32(k):
                        _sample_into(nxt, Mn, x, np.int64(y), above[y, x], is_int, top)
                stamp[y, x] = kk


@njit(cache=True, inline="always")
def _blend_weights(depth, best):
    """Weights of the frames below, at and above ``best`` for a pixel at ``depth`` (float64):
    the frame below with the best one where the depth lies below it, else the best one
    with the one above."""
    d = np.float64(depth)
    lo = math.floor(d)
    t = d - lo
    return ((1.0 - t), t, 0.0) if lo < best else (0.0, 1.0 - t, t)


@kernel(**JIT)
def blend(depth, best, below, at, above, is_int, out):
    """Linear blend between the frames around ``depth`` (see module docstring).

    Each row first gets per-value weights of ``below``, ``at`` and ``above`` (one of
    them 0: ``x + 0 * y`` is ``x`` exactly, so the sums are the two-term blend's), then
    one loop over the row's values that LLVM vectorises.
    """
    H, W, C = at.shape
    for y in prange(H):
        wb = np.empty(W * C)
        wa = np.empty(W * C)
        wc = np.empty(W * C)
        dy, by = depth[y], best[y]
        if C == 3:  # spelt out for RGB: the channel loop keeps LLVM from vectorising (2x)
            for x in range(W):
                u, v_, w = _blend_weights(dy[x], by[x])
                j = 3 * x
                wb[j], wb[j + 1], wb[j + 2] = u, u, u
                wa[j], wa[j + 1], wa[j + 2] = v_, v_, v_
                wc[j], wc[j + 1], wc[j + 2] = w, w, w
        else:
            for x in range(W):
                u, v_, w = _blend_weights(dy[x], by[x])
                for c in range(C):
                    wb[x * C + c] = u
                    wa[x * C + c] = v_
                    wc[x * C + c] = w
        bl, a_, ab, o = below[y].reshape(W * C), at[y].reshape(W * C), above[y].reshape(W * C), out[y].reshape(W * C)
        if is_int:
            for i in range(W * C):
                o[i] = math.floor(wb[i] * np.float64(bl[i]) + wa[i] * np.float64(a_[i])
                                  + wc[i] * np.float64(ab[i]) + 0.5)
        else:
            for i in range(W * C):
                o[i] = wb[i] * np.float64(bl[i]) + wa[i] * np.float64(a_[i]) + wc[i] * np.float64(ab[i])


_NO_FOCUS = np.zeros((1, 1), np.float32)  # settle_warped's focus arguments when there is no depth state

#: Aligned compositing: a pixel is sampled once its best frame has held for ``HOLD``
#: frames, as many as the frames kept (``HOLD + 2``) fit in :data:`HELD_BYTES`, from
#: ``HOLD`` to ``HOLD_MAX``. The image is the same whatever it is (each pixel ends up
#: sampled from the frames its final best frame names); only the number of samples
#: changes. Samples of the best frame per pixel (focus_stack 56 / 47 / 5 / 1, 12, 12, 12
#: and 10 frames): 1.46 / 1.41 / 1.38 / 1.29 at 3, 1.19 / 1.17 / 1.14 / 1.13 at 5,
#: 1.11 / 1.11 / 1.08 / 1.07 at 6, 1.00 when every frame is kept; the sampler's time on
#: 56 / 47 (one thread): 236 / 206 ms at 3, 187 / 165 at 6, 175 / 147 at 10, 173 / 146 at 16.
HOLD, HOLD_MAX = 3, 16
#: Memory the held frames may take: 1080 x 1080 RGB frames (3.5 MB) hold 16 frames,
#: 1920 x 1080 ones 8, 24-megapixel ones (72 MB) 3.
HELD_BYTES = 64 << 20


def hold_for(frame_bytes: int) -> int:
    """Frames a pixel's best frame must hold before it is sampled (see :data:`HOLD`)."""
    return int(min(HOLD_MAX, max(HOLD, HELD_BYTES // max(int(frame_bytes), 1) - 2)))


class Compositor:
    """Running all-in-focus image for frames of shape (H, W, C) and one dtype.

    ``aligned``: the frames come with matrices (:meth:`update`'s ``M``), and the colour
    states start at 0; otherwise frame 0's update writes them whole."""

    def __init__(self, shape_hwc, dtype, mode="select", interpolation="gaussian", aligned=False):
        if mode not in ("select", "interpolate"):
            raise ValueError(f"unknown composite {mode!r}; choose one of {', '.join(COMPOSITES)}")
        self.mode = mode
        self.dtype = np.dtype(dtype)
        self._is_int = self.dtype.kind in "ui"
        self._top = float(np.iinfo(self.dtype).max) if self._is_int else 0.0
        # on the frames' own grid frame 0 writes them whole (the kernels' first-frame path);
        # aligned frames are sampled lazily, only where needed: the rest stays 0
        start = zeros if aligned else np.empty
        self.at = start(shape_hwc, self.dtype)
        if mode == "interpolate":
            self.below = start(shape_hwc, self.dtype)
            self.above = start(shape_hwc, self.dtype)
        self._zeroed = aligned
        from .depth import _MODE
        self._interp = _MODE[interpolation]
        self._state = None  # aligned, interpolate: the depth state, whose peaks say which neighbour blend reads
        self._recent = []   # aligned frames: the last hold + 2 (k, frame, matrix), for lazy sampling
        self._stamp = None  # aligned frames: the best frame each pixel was last sampled for

    def update(self, frame3, prev3, best, k, M=None, state=None):
        """Fold frame ``k`` (as (H, W, C)); ``best`` is the depth state after frame k.

        With ``M`` (alignment), the frames are on their own grids and 2x3 matrices map
        output pixels to frame pixels: each output pixel takes its frames sampled
        there by Lanczos-3, exact where the matrix is the identity. Sampling is lazy:
        a pixel is sampled when its best frame has held for :func:`hold_for` more frames
        (and at :meth:`finish` for the last frames'), 1.0-1.1 times per pixel on the
        focus_stack stacks rather than at every change of its best frame (the
        compositor keeps the last ``hold + 2`` frames and their matrices, within
        :data:`HELD_BYTES` beyond the first few: O(H W) memory). The result equals the
        eager kernels', which the tests keep as its reference. With ``state`` (the
        :class:`dffbatch.stages.depth.DepthState` after frame k) and ``interpolate``, a
        pixel's depth is known when it is sampled, and only the neighbouring frame that
        :func:`blend` reads is sampled.
        """
        self._state = state
        if M is None:
            frame3 = readonly(np.ascontiguousarray(frame3))  # the kernels read rows as flat runs of values
            prev3 = None if prev3 is None else readonly(np.ascontiguousarray(prev3))
            ones = _ones(self.dtype)
            if self.mode == "select":
                update_select(_bits(frame3), best, k, _bits(self.at), ones)
            else:
                update_neighbours(_bits(frame3), _bits(frame3 if prev3 is None else prev3), best, k,
                                  _bits(self.below), _bits(self.at), _bits(self.above), ones)
            return
        if self._stamp is None:
            self._stamp = np.full(best.shape, -1, np.int32)
            if not self._zeroed:  # made for frames on their own grid (``aligned`` False)
                for a in (self.at, self.below, self.above) if self.mode == "interpolate" else (self.at,):
                    a.fill(0)
        hold = self._hold = hold_for(frame3.nbytes)
        self._recent = (self._recent + [(k, readonly(frame3), np.ascontiguousarray(M, np.float64))])[-(hold + 2):]
        if k >= hold:  # pixels whose best stayed at frame k-hold
            self._settle(best, k - hold)

    def _settle(self, best, j, last=False):
        """Sample, where frame ``j`` is the best and not yet sampled, frame j and the
        neighbours the blend needs (all three without a depth state; none after the last)."""
        frames = {k: (f, M) for k, f, M in self._recent}
        f, M = frames[j]
        fp, Mp = frames.get(j - 1, frames[j])  # frame 0 has no frame below: itself, as unaligned
        fn, Mn = frames.get(j + 1, frames[j])  # the last frame has none above: never read
        st = self._state
        if self.mode == "select":
            which, below, above = 0, self.at, self.at
        else:
            which, below, above = (1 if st is None else 0 if last else 2), self.below, self.above
        fb = (st.fbelow, st.fbest, st.fabove) if st is not None else (_NO_FOCUS,) * 3
        settle_warped(f, M, fp, Mp, fn, Mn, best, j, self._stamp, below, self.at, above, which,
                      self._is_int, self._top, *fb, self._interp)

    def finish(self, depth, best):
        """The all-in-focus image, (H, W, C), input dtype."""
        if self._stamp is not None:  # aligned: the last frame's pixels
            last = self._recent[-1][0]
            for j in range(max(0, last - self._hold + 1), last + 1):
                self._settle(best, j, last=j == last)
        if self.mode == "select":
            return self.at
        out = np.empty_like(self.at)
        blend(depth, best, self.below, self.at, self.above, self.dtype.kind in "ui", out)
        return out


class Composite(FrameStage):
    """Per-frame stage *composite* (``select``, ``interpolate``): a :class:`Compositor`
    fed each frame after the depth stage (``depth``, whose state says which frames
    hold each pixel's peak); at the end ``maps.allfocus``.

    On the frames' own grid its work is fused with the measure and the depth update
    (:class:`dffbatch.stages.fused.FusedPass`, ``fusable``); on a registered grid the
    compositor samples each frame through the grid's matrix.
    """

    timing = "composite"
    fusable = True

    def __init__(self, mode: str, interpolation: str, depth, grid):
        self.mode, self.interpolation = mode, interpolation
        self.depth = depth
        self.grid = grid

    def start(self, shape, dtype):
        self.planar = len(shape) == 2
        self.comp = Compositor((*self.grid.shape(shape), 1 if self.planar else shape[2]), dtype, self.mode,
                               self.interpolation, aligned=self.grid.applied)
        self.prev = None  # frame k-1 (interpolate)

    def update(self, frame, k):
        st = self.depth.state
        self.comp.update(frame.pixels, self.prev, st.best, k, self.grid.matrix(k), st)
        self.prev = frame.pixels if self.mode == "interpolate" else None

    def finish(self, maps):
        allfocus = self.comp.finish(maps.raw, maps.state.best)
        maps.allfocus = allfocus[:, :, 0] if self.planar else allfocus
