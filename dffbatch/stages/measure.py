"""Stage *measure*: focus measures per pixel of one frame (Numba kernels).

Names follow Pertuz, Puig & Garcia, "Analysis of focus measure operators for
shape-from-focus", Pattern Recognition 46 (2013):

========  ==============================================================  ============
name      per-pixel quantity ``q`` (on luminance ``I``)                   window
========  ==============================================================  ============
``sml``   modified Laplacian ``|2I-I(x-s)-I(x+s)| + |2I-I(y-s)-I(y+s)|``  **sum**
          (Nayar), zeroed where below ``threshold``; ``s`` = ``step``
``lape``  energy of the 4-neighbour Laplacian, ``lap**2``                 mean
``lapv``  4-neighbour Laplacian ``lap``                                   variance
``lapd``  diagonal Laplacian ``|Lx|+|Ly|+(|Ld1|+|Ld2|)/sqrt(2)``          mean
``teng``  Tenengrad, squared 3x3 Sobel gradient ``gx**2+gy**2``           mean
``tenv``  Sobel gradient magnitude ``sqrt(gx**2+gy**2)``                  variance
``glva``  the grey level ``I`` itself                                     variance
``wavs``  undecimated Haar detail energy ``|LH|+|HL|+|HH|`` (2x2 block)   mean
========  ==============================================================  ============

The window is a ``window x window`` square (odd, >= 1) centred on the pixel. Borders
are handled by reflection about the edge pixel (see :mod:`dffbatch.stages.kernels`), both
for the neighbours of ``q`` and for the window. Colour frames are measured on
luminance with the Rec. 601 weights ``0.299 R + 0.587 G + 0.114 B`` (alpha ignored);
integer frames are scaled to [0, 1] first (``/255`` or ``/65535``), float frames are
used as they are, so a ``threshold`` is in those units.

All measures are >= 0; larger means sharper.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .base import FrameStage
from .kernels import JIT, kernel, pad_reflect, readonly, reflect_index

__all__ = ["MEASURES", "focus_measure", "FocusMeasure", "luminance", "check_window", "plane_mean_focus", "Measure"]

from ..params import MEASURES  # noqa: E402 - the names live with the other parameters
_VARIANCE = ("lapv", "tenv", "glva")  # measures whose window statistic is a variance

#: Rec. 601 luma weights (the weights of OpenCV's and MATLAB's rgb2gray).
LUMA = (0.299, 0.587, 0.114)

_INV_SQRT2 = 1.0 / math.sqrt(2.0)


# --------------------------------------------------------------------------- luminance
@njit(cache=True, inline="always")
def _luma_weights(scale):
    """The Rec. 601 weights times ``scale``, and ``scale``, as float32."""
    return (np.float32(0.299 * scale), np.float32(0.587 * scale), np.float32(0.114 * scale),
            np.float32(scale))


@njit(cache=True, nogil=True)  # a call per row: compiled once, not inlined into each kernel
def _luma_row(src, weights, dst):
    """One row: ``dst = luma(src)`` (``src`` (W, C), C in {1, 3, 4}; ``weights`` from :func:`_luma_weights`)."""
    wr, wg, wb, s = weights
    W, C = src.shape
    if C == 3 and src.strides[1] == src.itemsize and src.strides[0] == 3 * src.itemsize:
        f = src.ravel()  # a packed RGB row, flat: LLVM vectorises its stride-3 loads (3x faster)
        for x in range(W):
            dst[x] = (wr * np.float32(f[3 * x]) + wg * np.float32(f[3 * x + 1])
                      + wb * np.float32(f[3 * x + 2]))
    elif C >= 3:
        for x in range(dst.shape[0]):
            dst[x] = (wr * np.float32(src[x, 0]) + wg * np.float32(src[x, 1])
                      + wb * np.float32(src[x, 2]))
    else:
        for x in range(dst.shape[0]):
            dst[x] = s * np.float32(src[x, 0])


@kernel(**JIT)
def _luma_into(frame, scale, out, p):
    """``out[p:p + H, p:p + W] = scale * luma(frame)``; ``frame`` is (H, W, C), C in {1, 3, 4},
    ``out`` C-contiguous with a border of ``p`` (0: none). Rows of ``out`` taken whole and
    sliced stay contiguous to Numba, and the stores vectorise: the interior passed as a
    view (``out[p:-p, p:-p]``) took 3x as long."""
    weights = _luma_weights(scale)
    W = frame.shape[1]
    for y in prange(frame.shape[0]):
        _luma_row(frame[y], weights, out[y + p, p:p + W])


def value_scale(dtype) -> float:
    """Factor that maps a dtype's values to [0, 1] (1.0 for floats)."""
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return 1.0 / 255.0
    if dtype == np.uint16:
        return 1.0 / 65535.0
    return 1.0


def luminance(frame: np.ndarray) -> np.ndarray:
    """Luminance of a frame as float32, integers scaled to [0, 1].

    Parameters
    ----------
    frame : ndarray, shape (H, W) or (H, W, C), C in {1, 3, 4}

    Returns
    -------
    ndarray, shape (H, W), float32
    """
    f3 = frame[:, :, None] if frame.ndim == 2 else frame
    out = np.empty(frame.shape[:2], np.float32)
    _luma_into(f3, value_scale(frame.dtype), out, 0)
    return out


# ------------------------------------------------------------- per-pixel quantities
# Each takes the reflect-padded luminance ``P`` (pad ``p``) and writes ``q`` (H, W).
# Loops index row views with the bare loop variable: Numba then drops its
# negative-index handling and LLVM vectorises the loops (about 3x faster).
@njit(cache=True, inline="always")
def _rows(P, p, y, dy, dx, W):
    """View of padded row ``y+dy`` starting at column offset ``dx`` (W values)."""
    row = P[y + p + dy]
    return row[p + dx:p + dx + W]


@njit(cache=True, inline="always")
def _cross(P, p, y, s, W):
    """Centre, left, right, up and down row views at distance ``s``."""
    return (_rows(P, p, y, 0, 0, W), _rows(P, p, y, 0, -s, W), _rows(P, p, y, 0, s, W),
            _rows(P, p, y, -s, 0, W), _rows(P, p, y, s, 0, W))


@njit(cache=True, inline="always")
def _diagonals(P, p, y, W):
    """Up-left, up-right, down-left and down-right row views."""
    return (_rows(P, p, y, -1, -1, W), _rows(P, p, y, -1, 1, W),
            _rows(P, p, y, 1, -1, W), _rows(P, p, y, 1, 1, W))


#: Measure name -> the id the kernels dispatch on (per row, outside the vectorised loops).
MEASURE_ID = {m: i for i, m in enumerate(("sml", "lape", "lapv", "lapd", "teng", "tenv", "glva", "wavs"))}


@njit(cache=True, nogil=True)  # a call per row: compiled once, not inlined into each kernel
def _q_row(P, p, y, mid, s, threshold, out):
    """Row ``y`` of the per-pixel quantity ``q`` of measure ``mid`` (:data:`MEASURE_ID`) from
    the padded luminance ``P`` (pad ``p``; ``s`` the ``sml`` step) into ``out`` (W,)."""
    W = out.shape[0]
    two = np.float32(2.0)
    if mid == 0:  # sml
        c, le, ri, up, dn = _cross(P, p, y, s, W)
        for x in range(W):
            c2 = two * c[x]
            v = abs(c2 - le[x] - ri[x]) + abs(c2 - up[x] - dn[x])
            out[x] = v if v >= threshold else np.float32(0.0)
    elif mid == 1 or mid == 2:  # lape (squared), lapv
        four = np.float32(4.0)
        c, le, ri, up, dn = _cross(P, p, y, 1, W)
        if mid == 1:
            for x in range(W):
                v = up[x] + dn[x] + le[x] + ri[x] - four * c[x]
                out[x] = v * v
        else:
            for x in range(W):
                out[x] = up[x] + dn[x] + le[x] + ri[x] - four * c[x]
    elif mid == 3:  # lapd
        k = np.float32(_INV_SQRT2)
        c, le, ri, up, dn = _cross(P, p, y, 1, W)
        ul, ur, dl, dr = _diagonals(P, p, y, W)
        for x in range(W):
            c2 = two * c[x]
            out[x] = (abs(c2 - le[x] - ri[x]) + abs(c2 - up[x] - dn[x])
                      + k * (abs(c2 - ul[x] - dr[x]) + abs(c2 - ur[x] - dl[x])))
    elif mid == 4 or mid == 5:  # teng (squared), tenv (magnitude)
        _, le, ri, up, dn = _cross(P, p, y, 1, W)
        ul, ur, dl, dr = _diagonals(P, p, y, W)
        for x in range(W):
            gx = ur[x] + two * ri[x] + dr[x] - ul[x] - two * le[x] - dl[x]
            gy = dl[x] + two * dn[x] + dr[x] - ul[x] - two * up[x] - ur[x]
            g2 = gx * gx + gy * gy
            out[x] = math.sqrt(g2) if mid == 5 else g2
    elif mid == 6:  # glva
        c = _rows(P, p, y, 0, 0, W)
        for x in range(W):
            out[x] = c[x]
    else:  # wavs
        half = np.float32(0.5)
        a_ = _rows(P, p, y, 0, 0, W)
        b_ = _rows(P, p, y, 0, 1, W)
        c_ = _rows(P, p, y, 1, 0, W)
        d_ = _rows(P, p, y, 1, 1, W)
        for x in range(W):
            a = a_[x]
            b = b_[x]
            c = c_[x]
            d = d_[x]
            out[x] = half * (abs(a + b - c - d) + abs(a - b + c - d) + abs(a - b - c + d))


@kernel(**JIT)
def _pointwise(P, p, mid, s, threshold, q):
    for y in prange(q.shape[0]):
        _q_row(P, p, np.int64(y), mid, s, threshold, q[y])  # int64 as in fused.frame_pass: one specialisation


# ------------------------------------------------------------------------- windows
@njit(cache=True, inline="always")
def _reflect_row_ends(row, r, W):
    for i in range(1, r + 1):
        row[r - i] = row[r + reflect_index(-i, W)]
        row[r + W - 1 + i] = row[r + reflect_index(W - 1 + i, W)]


@njit(cache=True, nogil=True)  # a call per row: compiled once, not inlined into each kernel
def _box_sum_row(q, lo, H, y, r, scale, row, dst):
    """Row ``y`` of :func:`box_sum` into ``dst`` (W,). Image row ``j`` (of ``H``, reflected)
    is ``q[j - lo]``: the whole image with ``lo`` = 0, or a band of rows from row ``lo`` on.
    ``row`` is scratch of W + 2r values."""
    W = dst.shape[0]
    mid = row[r:r + W]
    for x in range(W):
        mid[x] = 0.0
    for dy in range(-r, r + 1):
        src = q[reflect_index(y + dy, H) - lo]
        for x in range(W):
            mid[x] += src[x]
    _reflect_row_ends(row, r, W)
    for x in range(W):
        dst[x] = row[x]
    for dx in range(1, 2 * r + 1):
        seg = row[dx:dx + W]
        for x in range(W):
            dst[x] += seg[x]
    for x in range(W):
        dst[x] *= scale


@njit(cache=True, nogil=True)  # a call per row: compiled once, not inlined into each kernel
def _box_var_row(q, lo, H, y, r, s1, s2, dst):
    """Row ``y`` of :func:`box_var` (rows of ``q`` as in :func:`_box_sum_row`); ``s1``,
    ``s2`` are float64 scratch of W + 2r values."""
    W = dst.shape[0]
    inv_n = 1.0 / ((2 * r + 1) * (2 * r + 1))
    m1 = s1[r:r + W]
    m2 = s2[r:r + W]
    for x in range(W):
        m1[x] = 0.0
        m2[x] = 0.0
    for dy in range(-r, r + 1):
        src = q[reflect_index(y + dy, H) - lo]
        for x in range(W):
            v = np.float64(src[x])
            m1[x] += v
            m2[x] += v * v
    _reflect_row_ends(s1, r, W)
    _reflect_row_ends(s2, r, W)
    a = s1[:W].copy()
    b = s2[:W].copy()
    for dx in range(1, 2 * r + 1):
        g1 = s1[dx:dx + W]
        g2 = s2[dx:dx + W]
        for x in range(W):
            a[x] += g1[x]
            b[x] += g2[x]
    for x in range(W):
        m = a[x] * inv_n
        v = b[x] * inv_n - m * m
        dst[x] = v if v > 0.0 else 0.0


@kernel(**JIT)
def box_sum(q, r, scale, out):
    """``out = scale * sum of q over a (2r+1)^2 window``, reflected borders.

    Vertical then horizontal direct sums in float32, each loop running along a row
    view so that it vectorises (no running sums, so no drift and no dependence of
    the rounding on how rows are split between threads).
    """
    H, W = q.shape
    for y in prange(H):
        _box_sum_row(q, np.int64(0), H, np.int64(y), r, scale, np.empty(W + 2 * r, np.float32), out[y])


@kernel(**JIT)
def box_var(q, r, out):
    """Variance of ``q`` over a (2r+1)^2 reflected window, accumulated in float64."""
    H, W = q.shape
    for y in prange(H):
        _box_var_row(q, 0, H, y, r, np.empty(W + 2 * r), np.empty(W + 2 * r), out[y])


# ------------------------------------------------------------------------ dispatch
def check_window(window) -> int:
    """Validate a window size: an odd integer >= 1."""
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)):
        raise TypeError(f"window must be an odd integer >= 1, got {window!r}")
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be an odd integer >= 1, got {window}")
    return int(window)


class FocusMeasure:
    """A focus measure with its buffers, for a stream of frames of one shape.

    Parameters
    ----------
    shape : (H, W)
        Frame size in pixels.
    measure : str
        One of :data:`MEASURES`.
    window : int
        Odd window side in pixels.
    step : int
        Neighbour distance of ``sml`` in pixels (>= 1).
    threshold : float
        ``sml`` only: modified-Laplacian values below it count as 0 (luminance units).

    Calling the object with a frame writes the measure into ``out`` (float32, (H, W))
    and returns it; no memory is allocated per frame.
    """

    def __init__(self, shape, measure="sml", window=9, step=1, threshold=0.0):
        if measure not in MEASURES:
            raise ValueError(f"unknown focus measure {measure!r}; choose one of {', '.join(MEASURES)}")
        self.window = check_window(window)
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
            raise ValueError(f"step must be an integer >= 1, got {step!r}")
        threshold = float(threshold)
        if not math.isfinite(threshold) or threshold < 0:
            raise ValueError(f"threshold must be a finite number >= 0, got {threshold!r}")
        self.measure, self.step, self.threshold = measure, int(step), threshold
        self.shape = tuple(shape)
        self.pad = self.step if measure == "sml" else 1
        self._P = self._q = None  # whole-frame buffers, made when first used

    def pointwise(self, frame: np.ndarray) -> np.ndarray:
        """Per-pixel quantity ``q`` of a frame, before the window (float32 (H, W), a buffer)."""
        if self._P is None:
            H, W = self.shape
            self._P = np.empty((H + 2 * self.pad, W + 2 * self.pad), np.float32)
            self._q = np.empty((H, W), np.float32)
        p, P, q = self.pad, self._P, self._q
        f3 = frame[:, :, None] if frame.ndim == 2 else frame
        _luma_into(readonly(f3), value_scale(frame.dtype), P, p)
        pad_reflect(P, p)
        _pointwise(P, p, MEASURE_ID[self.measure], self.step, np.float32(self.threshold), q)
        return q

    def __call__(self, frame: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Focus measure of ``frame`` written into ``out`` (float32 (H, W)), stage by stage over
        the whole frame (luminance, quantity, window). Where the depth state and the
        all-in-focus image are updated at once, :func:`dffbatch.stages.fused.measure_pass` runs the
        same row functions band by band, 7-8% faster; alone, these passes are faster."""
        q = self.pointwise(frame)
        r = self.window // 2
        if self.measure in _VARIANCE:
            box_var(q, r, out)
        else:
            box_sum(q, r, self.window_scale, out)
        return out

    @property
    def window_scale(self) -> np.float32:
        """The factor on the window sum: 1 for ``sml`` (Nayar's window sum), else 1/area (a mean)."""
        return np.float32(1.0 if self.measure == "sml" else 1.0 / (self.window * self.window))


def focus_measure(frame: np.ndarray, measure: str = "sml", window: int = 9,
                  step: int = 1, threshold: float = 0.0) -> np.ndarray:
    """Focus measure of one frame.

    Parameters
    ----------
    frame : ndarray, shape (H, W) or (H, W, C)
        uint8, uint16 or float image.
    measure, window, step, threshold
        See :class:`FocusMeasure`.

    Returns
    -------
    ndarray, shape (H, W), float32
        Focus measure per pixel (>= 0, larger is sharper).
    """
    fm = FocusMeasure(frame.shape[:2], measure, window, step, threshold)
    return fm(frame, np.empty(frame.shape[:2], np.float32))


def plane_mean_focus(frame: np.ndarray) -> np.ndarray:
    """Mean of a multichannel frame's channels, each scaled to [0, 1] by its dtype (float32 (H, W))."""
    s = np.float32(value_scale(frame.dtype))
    return (frame.astype(np.float32).mean(axis=2) * s).astype(np.float32)


def focus_input(shape, focus_channel):
    """None (the measure's own luminance) or a function giving the 2-D image to measure
    from frames of ``shape`` ((H, W) or (H, W, C)); see ``focus_channel`` of
    :func:`dffbatch.depth_from_focus`."""
    C = shape[2] if len(shape) == 3 else 1
    if focus_channel is None and C in (1, 3, 4):
        return None
    if focus_channel is None or focus_channel == "mean":
        return plane_mean_focus if C > 1 else None
    if not -C <= int(focus_channel) < C:
        raise ValueError(f"focus_channel {focus_channel} does not exist: the frames have {C} channel(s)")
    c = int(focus_channel) % C
    return (lambda f: np.ascontiguousarray(f[:, :, c])) if len(shape) == 3 else None


class Measure(FrameStage):
    """Per-frame stage *measure*: each frame's focus, on the output grid, into
    ``frame.focus`` (``frame.focus_prev``: the previous frame's; two buffers, swapped)."""

    timing = "measure"

    def __init__(self, measure: str, window: int, step: int, threshold: float, focus_channel, grid):
        self.args = (measure, window, step, threshold)
        self.focus_channel = focus_channel
        self.grid = grid

    def start(self, shape, dtype):
        self.fm = FocusMeasure(shape[:2], *self.args)
        self.seen = focus_input(shape, self.focus_channel)
        out = self.grid.shape(shape)
        self.cur = np.empty(out, np.float32)
        self.prev = np.empty(out, np.float32)  # frame 0's "previous" measure is never read (k = 0)

    def image(self, frame, k):
        """What the measure sees of frame ``k``; its buffers made ready (``frame.focus``)."""
        if k:
            self.cur, self.prev = self.prev, self.cur
        frame.focus, frame.focus_prev = self.cur, self.prev
        return frame.raw if self.seen is None else self.seen(frame.raw)

    def update(self, frame, k):
        self.grid.measure(self.fm, self.image(frame, k), k, frame.focus)
