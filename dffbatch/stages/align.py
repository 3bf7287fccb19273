"""Stage *align*: correct focus breathing and hand-held shift before measuring focus.

Two passes over the stack, never more than two frames in memory:

1. **estimate**: each frame is registered to its neighbour (their blur is similar),
   on a contrast-normalised band-pass image (difference of Gaussians divided by its
   local RMS) at most ``estimate_side`` pixels a side: a grid of points is tracked by
   Lucas-Kanade and an affine fitted to the tracks by least median of squares, so
   that blur edges that move as focus changes (an occluding outline) are outliers,
   not motion (:func:`_register`); the neighbour transforms are chained to the
   reference frame (default: the middle one).
2. **apply** (:class:`Warper`, in the core loop): focus is measured on each frame's
   own pixels and the measure map is moved onto the reference grid (bilinear; it is
   window-smoothed, so resampling barely changes it, whereas resampling the frame
   first would blur it and bias depth towards the reference); the frame itself is
   sampled by Lanczos-3 for the all-in-focus image (see :class:`Warper`);
   everything is cropped to the rectangle valid in every frame. The reference frame
   is only cropped.

Models: ``translation`` (2 parameters), ``similarity`` (scale, rotation, translation:
the affine fit projected onto a similarity about the image centre; the scale follows a
straight line over the frame index, see :func:`_smooth_scale`), ``affine`` (6
parameters, each frame's as measured), ``auto`` (applied only when some
frame moves a corner of the image by more than ``auto_threshold`` pixels, as a
similarity, or as an affine when neighbouring frames shear or stretch by more than
BEYOND_SIMILARITY_HINT px beyond it (hand-held, rolling shutter); otherwise
nothing is done, and the decision is reported).

``similarity`` models a tripod and a breathing lens. Hand-held phone stacks move more
freely: between neighbouring frames of ``balls/25`` and ``keyboard/32`` the
registration finds 0.2-0.4% of anisotropic scale and shear (rolling shutter, a hand
moving towards the scene), which no similarity can follow. After alignment, the
median local misregistration of neighbouring frames (tiles of a 4 x 3 grid) is
0.31 / 0.62 px without alignment, 0.27 / 0.53 px with ``similarity`` and
0.12 / 0.22 px with ``affine`` (benchmarks/bench_align_phone.py): use ``affine``
for hand-held stacks. OpenCV is an optional dependency
(the ``align`` extra); asking for alignment without it raises a clear error.

Transforms are 2x3 matrices mapping reference pixel coordinates to frame pixel
coordinates (x right, y down).
"""
from __future__ import annotations

import math
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, List, Optional

import numpy as np
from numba import njit

from .base import Grid, PostStage, check_frame, fresh
from .kernels import readonly

__all__ = ["ALIGN_MODES", "Alignment", "estimate_alignment", "Warper", "require_cv2", "residual_motion",
           "register", "RegisteredGrid", "Coverage"]

from ..params import ALIGN_MODES  # noqa: E402
#: Threads making the previews and registering neighbour pairs during the estimation pass.
ESTIMATE_THREADS = 2
#: Registration runs on images at most this many pixels a side (JPEG previews come at
#: the DCT reduction nearest to it: 1280 x 720 -> 320 x 180, 1080 x 1080 -> 270). On
#: rendered 512 x 512 stacks the worst scale error was 1.7e-4 registered at 256 px,
#: 1.5e-4 at 320 and 5e-5 at 512 (benchmarks/bench_align_accuracy.py).
ESTIMATE_SIDE = 320
#: With ``similarity``, the note suggests ``affine`` when some neighbour pair's affine
#: estimate moves a corner by more than this many pixels beyond the similarity kept from
#: it (balls/25: 1.1 px, keyboard/32: 2.1 px; rendered with ``distort=0.003``: 0.46 px at
#: 256 x 256, 1.1-1.7 px at 512 x 512;
#: rendered pure breathing: under 0.03 px; focus_stack: 0.12 px).
BEYOND_SIMILARITY_HINT = 0.3


def require_cv2():
    """OpenCV, on as many threads as the kernels (``numba.get_num_threads()``): a batch
    worker's share of the cores, not every core (its default) in each of the workers."""
    try:
        import cv2
    except ImportError as exc:
        raise RuntimeError("alignment needs OpenCV: pip install 'dffbatch[align]' "
                           f"(opencv-python-headless) ({exc})") from None
    import numba
    n = numba.get_num_threads()
    if cv2.getNumThreads() != n:
        cv2.setNumThreads(n)
    return cv2


@dataclass
class Alignment:
    """Per-frame transforms to the reference, the output region, and the decision."""

    mode: str
    reference: int
    matrices: List[np.ndarray]          # 2x3 float64, reference -> frame coordinates
    crop: tuple                          # output region (y0, y1, x0, x1), half-open, in reference pixels
    applied: bool
    max_motion: float                    # largest corner displacement over the frames, pixels
    note: str = ""
    shape: tuple = ()
    per_frame: list = field(default_factory=list)
    #: similarity: the largest corner displacement, pixels, between a neighbour pair's affine
    #: estimate and the similarity kept from it (shear and stretch it cannot follow)
    beyond_similarity: float = 0.0
    #: the motion model applied (``auto`` chooses similarity or affine)
    model: str = ""
    #: the region every frame covers (y0, y1, x0, x1); ``crop`` is this region with
    #: ``align_crop``, the whole reference frame without
    common: tuple = ()

    @classmethod
    def skipped(cls, mode: str, note: str) -> "Alignment":
        """The record of an ``auto`` alignment that could not run (nothing applied)."""
        return cls(mode, 0, [], (), False, 0.0, note, model="none")

    def to_json(self) -> dict:
        return {"mode": self.mode, "model": self.model, "reference": self.reference, "applied": self.applied,
                "max_motion_px": round(self.max_motion, 4), "crop": list(self.crop),
                "common": list(self.common or self.crop), "note": self.note,
                "beyond_similarity_px": round(self.beyond_similarity, 4),
                "frames": self.per_frame}


def _grey(cv2, frame):
    """Rec. 601 luminance, float32 (OpenCV's conversion: 4x faster than a NumPy dot)."""
    f = frame.astype(np.float32)
    if f.ndim == 3:
        if f.shape[2] >= 3:
            return cv2.cvtColor(f, cv2.COLOR_RGBA2GRAY if f.shape[2] == 4 else cv2.COLOR_RGB2GRAY)
        f = f[..., 0]
    return f


@njit(cache=True, nogil=True)
def _dog(g1, g2, bp, sq):
    """``bp = g1 - g2`` and ``sq = bp * bp``, float32 (h, w): NumPy's values, without the GIL."""
    for y in range(bp.shape[0]):
        for x in range(bp.shape[1]):
            d = g1[y, x] - g2[y, x]
            bp[y, x] = d
            sq[y, x] = d * d


@njit(cache=True, nogil=True)
def _normalise(bp, box, floor, out):
    """``out = bp / (sqrt(box) + floor)``, float32 (h, w): NumPy's values, without the GIL."""
    for y in range(bp.shape[0]):
        for x in range(bp.shape[1]):
            out[y, x] = bp[y, x] / (np.sqrt(box[y, x]) + floor)


def _bandpass(cv2, grey):
    """Difference of Gaussians normalised by its local RMS: insensitive to contrast and defocus level.

    Runs without holding the GIL but for one mean (OpenCV's filters, two small kernels),
    so that previews are prepared in threads side by side (:func:`_register_neighbours`)."""
    g1 = cv2.GaussianBlur(grey, (0, 0), 1.0)
    g2 = cv2.GaussianBlur(grey, (0, 0), 4.0)
    bp, sq = np.empty_like(g1), np.empty_like(g1)
    _dog(g1, g2, bp, sq)
    # local RMS over a 17 x 17 box (as wide as a Gaussian of sigma 8 is at half height, and
    # 7x cheaper: 0.07 against 0.46 ms at 320 x 180)
    box = cv2.boxFilter(sq, -1, (17, 17), borderType=cv2.BORDER_REFLECT)
    floor = np.float32(1e-3 * (float(np.abs(bp).mean()) + 1e-12))
    out = np.empty_like(bp)
    _normalise(bp, box, floor, out)
    return out


@njit(cache=True, nogil=True)
def _block_mean(grey, r, out):
    """``out`` (h, w) float32: the means of ``grey`` (h r, w r, 8-bit) over r x r blocks, as
    OpenCV's area reduction of its float32 copy gives them (sums of integers are exact)."""
    h, w = out.shape
    inv = np.float32(1.0 / (r * r))
    acc = np.empty(w * r, np.int32)
    for y2 in range(h):
        acc[:] = 0
        for dy in range(r):
            row = grey[y2 * r + dy]
            for x in range(w * r):
                acc[x] += np.int32(row[x])
        for x2 in range(w):
            s = np.int32(0)
            for dx in range(r):
                s += acc[x2 * r + dx]
            out[y2, x2] = np.float32(s) * inv


def _prepare(cv2, frame, side):
    """The band-passed preview of a frame and its scale: the frame's luminance, averaged
    over blocks of ``r`` x ``r`` pixels, ``r`` the least that brings the long side to at
    most ``side`` (as the batch runner's JPEG previews come, decoded at 1/r: 1080 -> 270;
    the rows and columns past the last whole block left out), where ``r`` is 3 or more;
    frames up to twice ``side`` are resampled to ``side`` (OpenCV's area reduction).

    The luminance of an integer frame is taken in its own depth (OpenCV's, rounded: the
    block mean of 16 such values is off by 0.07 of a level, rms), then averaged in float32.
    The point is to register as the batch runner does: on the ten focus_stack stacks of
    benchmarks/output_hashes.py, ``auto`` on the decoded frames now decides as on their
    JPEG previews on all ten; resampled to 320 px, two of them (7 and 52, 2.3 and 7.9 px
    of motion) failed to register and were left unaligned. 1.2 ms a 1080^2 RGB frame,
    without holding the GIL but for one mean: previews are made in the registration
    threads, side by side."""
    H, W = frame.shape[:2]
    r = -(-max(H, W) // side)
    if r < 3:  # a reduction by 2 would leave 256 px of a 512 one: scale error 2.3e-4 against
        grey = _grey(cv2, frame)  # 1.2e-4 at 320 (bench_align_accuracy.py): resampled to ``side``
        s = min(1.0, side / max(H, W))
        if s < 1.0:
            grey = cv2.resize(grey, (max(8, round(W * s)), max(8, round(H * s))), interpolation=cv2.INTER_AREA)
        return _bandpass(cv2, grey), s
    h, w = max(1, H // r), max(1, W // r)
    f = frame[:h * r, :w * r]
    if f.ndim == 3 and f.shape[2] >= 3:
        if f.dtype not in (np.uint8, np.uint16, np.float32):
            f = f.astype(np.float32)
        f = cv2.cvtColor(f, cv2.COLOR_RGBA2GRAY if f.shape[2] == 4 else cv2.COLOR_RGB2GRAY)
    elif f.ndim == 3:
        f = f[..., 0]
    if f.dtype == np.uint8:  # the same values as below, without the GIL or the float copy
        grey = np.empty((h, w), np.float32)
        _block_mean(f, r, grey)
    else:
        grey = cv2.resize(f.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
    return _bandpass(cv2, grey), 1.0 / r


#: Registration tracks a grid of this many points a side (inside the 1/16 border) from
#: one band-passed preview to the next by pyramidal Lucas-Kanade, and fits the warp to
#: the tracks robustly (least median of squares). On rendered stacks of a near
#: rectangle over a far plane (``step``), whose blurred outline grows and shrinks as
#: focus moves, the whole-image ECC this replaced read that as breathing: 0.97 px of
#: false corner motion on a still 512^2 stack (all-in-focus PSNR 39.0 -> 30.4 dB when
#: applied), while the tracks on the outline are outliers of the fit (0.32 px, not
#: applied; benchmarks/bench_align_twins.py). Cheaper too: 1.3 against 3.1 ms per 320-px
#: pair of the focus_stack previews.
TRACK_GRID = 16
#: Lucas-Kanade window (preview pixels) and pyramid levels above the preview: neighbouring
#: frames move by a few preview pixels at most.
TRACK_WINDOW = 21
TRACK_LEVELS = 1
#: ``auto`` aligns nothing on frames smaller than this on their short side: there, the
#: blurred outline of a near object, growing as focus moves, covers enough of the image
#: to pass for breathing. Largest false corner motion on still rendered stacks (slant,
#: terrain, step; 12 frames, 2 seeds): 2.1 px at 64^2, 1.7 at 96^2, 1.1 at 128^2, 0.74 at
#: 192^2, 0.55 at 256^2 (all from the step), 0.32 at 512^2 (20 frames, bench_align_twins.py).
AUTO_MIN_SIDE = 256
#: Fewer tracked points than this and the pair counts as not registered; so does a fit
#: that fewer than a quarter of the grid's points follow within FIT_TOLERANCE preview
#: pixels (unrelated frames).
MIN_TRACKS = 8
FIT_TOLERANCE = 0.5


@njit(cache=True, nogil=True)
def _to_u8_into(bp, out):
    for y in range(bp.shape[0]):
        for x in range(bp.shape[1]):
            out[y, x] = np.uint8(min(max(bp[y, x] * np.float32(40.0) + np.float32(128.0), np.float32(0.0)),
                                     np.float32(255.0)))


def _to_u8(bp):
    """The band-passed image (unit local RMS) as 8 bits for the tracker: +-3.2 RMS
    (``clip(bp * 40 + 128, 0, 255)`` in float32, truncated; without the GIL)."""
    out = np.empty(bp.shape, np.uint8)
    _to_u8_into(bp, out)
    return out


def _register(cv2, template, image, motion):
    """Warp (2x3, template -> image coordinates) of two 8-bit band-passed previews.

    A ``TRACK_GRID`` x ``TRACK_GRID`` grid of points inside a border of 1/16 of the size
    (content there may have entered or left the field of view) is tracked from
    ``template`` into ``image``; ``translation`` takes the median track, otherwise an
    affine is fitted by least median of squares (tracks on moving blur edges and
    untextured points are its outliers), refined on the inliers. Raises ValueError
    when too few points track or no fit is found.
    """
    h, w = template.shape
    m = max(2, min(h, w) // 16)
    win = min(TRACK_WINDOW, (min(h, w) // 3) | 1)
    if win < 5 or h - 2 * m < 4 or w - 2 * m < 4:
        raise ValueError(f"a {w} x {h} preview is too small to register")
    ys = np.linspace(m, h - 1 - m, TRACK_GRID, dtype=np.float32)
    xs = np.linspace(m, w - 1 - m, TRACK_GRID, dtype=np.float32)
    P = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 1, 2)
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.003)
    Q, st, _ = cv2.calcOpticalFlowPyrLK(template, image, P, None, winSize=(win, win),
                                        maxLevel=TRACK_LEVELS if min(h, w) >= 64 else 0, criteria=crit)
    ok = st[:, 0] == 1
    p, q = P[ok, 0], Q[ok, 0]
    if len(p) < MIN_TRACKS:
        raise ValueError(f"only {len(p)} of {len(P)} points could be tracked (too little texture)")
    if motion == "translation":
        M = np.eye(2, 3)
        M[:, 2] = np.median(q - p, axis=0)
        return M
    M, _ = cv2.estimateAffine2D(p, q, method=cv2.LMEDS)
    if M is None:
        raise ValueError("no affine fits the tracked points")
    # unrelated frames (noise, a cut) track somewhere too, but no warp explains most tracks
    fit = np.hypot(*(p @ M[:, :2].T + M[:, 2] - q).T) < FIT_TOLERANCE
    if fit.sum() < max(MIN_TRACKS, len(P) // 4):
        raise ValueError(f"no warp explains the tracked points ({int(fit.sum())} of {len(P)} fit)")
    return M.astype(np.float64)


def _to_similarity(A, centre):
    """The similarity nearest to the affine ``A`` that moves ``centre`` (x, y) as ``A`` does.

    The linear part is projected onto scale x rotation; the translation is then set so
    that the image centre lands where ``A`` puts it. Keeping ``A``'s own translation
    instead (its linear part acts about the corner (0, 0)) moves the centre by the
    dropped anisotropic part times the distance to the corner: on the phone stacks,
    whose neighbour registrations carry 0.2-0.4% of anisotropic scale and shear
    (rolling shutter, hand-held), that doubled the residual misalignment
    (benchmarks/bench_align_phone.py).
    """
    a, b, c, d = A[0, 0], A[0, 1], A[1, 0], A[1, 1]
    sc, ss = (a + d) / 2.0, (c - b) / 2.0
    L = np.array([[sc, -ss], [ss, sc]])
    centre = np.asarray(centre, np.float64)
    t = A[:, :2] @ centre + A[:, 2] - L @ centre
    return np.hstack([L, t[:, None]])


def _h(M):
    return np.vstack([M, [0.0, 0.0, 1.0]])


def _to_full_size(A, s):
    """A warp estimated on an image resized by ``s`` (pixel centres kept), in full-size pixels."""
    out = A.copy()
    L = A[:, :2]
    out[:, 2] = A[:, 2] / s + (L - np.eye(2)) @ np.full(2, 0.5 - 0.5 / s)
    return out


def _smooth_scale(Ms, H, W):
    """Replace each frame's scale by a straight-line fit of the scale over the frame index.

    Focus breathing is a smooth, monotonic function of the focus position, while
    hand-held motion is not: the fit averages out the estimation noise of the scale
    (chained over many neighbour registrations) and keeps each frame's rotation and
    the position of its image centre as estimated. The measured scales are kept in
    the per-frame report (``scale_measured``).
    """
    n = len(Ms)
    k = np.arange(n, dtype=np.float64)
    scales = np.array([math.sqrt(abs(np.linalg.det(M[:2, :2]))) for M in Ms])
    fit = np.polyval(np.polyfit(k, scales, 1), k)
    centre = np.array([(W - 1) / 2.0, (H - 1) / 2.0, 1.0])
    out = []
    for M, sf, sm in zip(Ms, fit, scales):
        L = M[:2, :2] * (sf / sm)
        c_to = (M @ centre)[:2]
        t = c_to - L @ centre[:2]
        out.append(np.vstack([np.hstack([L, t[:, None]]), [0.0, 0.0, 1.0]]))
    r = int(np.argmin([np.abs(M - np.eye(3)).max() for M in Ms]))  # the reference stays exact
    ref_inv = np.linalg.inv(out[r])
    return [M @ ref_inv for M in out]


def _corners(H, W):
    return np.array([[0, 0, 1], [W - 1, 0, 1], [0, H - 1, 1], [W - 1, H - 1, 1]], np.float64).T


def estimate_alignment(frames: Iterable[np.ndarray], mode: str = "similarity", reference="middle",
                       estimate_side: int = ESTIMATE_SIDE, auto_threshold: float = 0.5,
                       frame_scale: float = 1.0, full_shape: Optional[tuple] = None,
                       keep_size: bool = True) -> Alignment:
    """Estimate per-frame transforms to the reference frame (pass 1).

    Parameters
    ----------
    frames : iterable of ndarray
        The stack in focus order (consumed once, one frame at a time).
    mode : {"translation", "similarity", "affine", "auto"}
    reference : "middle", "first", "last" or int
        Frame the others are aligned to.
    estimate_side : int
        Registration runs on images at most this many pixels a side.
    auto_threshold : float
        ``auto`` applies similarity only if a corner moves by more than this (pixels).
    frame_scale, full_shape : float, (H, W)
        When ``frames`` are previews (e.g. JPEGs decoded at half size), their scale
        and the full frame size: transforms are returned for full-size frames.
    keep_size : bool
        Outputs keep the reference frame's size (pixels that some frames do not cover
        are measured on the frames that do; :meth:`Warper.coverage` counts them);
        False crops them to the region every frame covers.
    """
    if mode not in ALIGN_MODES or mode == "none":
        raise ValueError(f"unknown alignment {mode!r}; choose one of {', '.join(ALIGN_MODES[1:])}")
    pairs = _register_neighbours(frames, mode, estimate_side, frame_scale, full_shape)
    if isinstance(pairs, Alignment):  # auto found it cannot tell
        return pairs
    neighbours, neighbours_affine, dropped, shape = pairs
    beyond = max(dropped, default=0.0)
    model = "similarity" if mode == "auto" else mode
    if mode == "auto" and beyond > BEYOND_SIMILARITY_HINT:  # the frames shear or stretch: hand-held
        neighbours, model = neighbours_affine, "affine"
    n = len(neighbours) + 1
    if n < 2:
        raise ValueError(f"a focus stack needs at least 2 frames, got {n - 1 if shape is None else n}")
    r = {"middle": (n - 1) // 2, "first": 0, "last": n - 1}.get(reference, reference)
    if not isinstance(r, (int, np.integer)) or not 0 <= r < n:
        raise ValueError(f"alignment reference {reference!r} is not a frame of this {n}-frame stack")
    Ms = _chain(neighbours, r)
    H, W = shape = tuple(full_shape) if full_shape is not None else shape
    measured = [float(math.sqrt(abs(np.linalg.det(M[:2, :2])))) for M in Ms]
    if model == "similarity" and n >= 4:
        Ms = _smooth_scale(Ms, H, W)
    C = _corners(H, W)
    motion_px = max(float(np.abs((M @ C)[:2] - C[:2]).max()) for M in Ms)
    applied = not (mode == "auto" and motion_px <= auto_threshold)
    note = _note(mode, applied, motion_px, auto_threshold, model, beyond)
    common = _common_region(Ms if applied else [], C, H, W)
    if common[1] - common[0] < 2 or common[3] - common[2] < 2:
        why = f"alignment leaves no region common to every frame (crop {common})"
        if mode == "auto":
            return Alignment.skipped("auto", f"auto: {why}; not applied")
        raise ValueError(why)
    crop = (0, H, 0, W) if keep_size else common
    return Alignment(mode, int(r), [M[:2] for M in Ms], crop, applied, motion_px, note, (H, W),
                     _per_frame(Ms, measured, H, W), beyond, model if applied else "none", common)


def _preview(cv2, frame, side):
    """The 8-bit band-passed preview of a frame for :func:`_register`, and its scale."""
    img, s = _prepare(cv2, frame, side)
    return _to_u8(img), s


def _preview_and_register(cv2, frame, side, mine, before, motion):
    """Frame ``k``'s preview into the future ``mine`` (as soon as it is made), then its
    registration to frame k-1's (``before``, a future; None for frame 0):
    ``(A, scale, centre)``."""
    try:
        img, s = _preview(cv2, frame, side)
    except BaseException as exc:
        mine.set_exception(exc)
        raise
    mine.set_result((img, s))
    if before is None:
        return None
    a = before.result()[0]
    try:
        A = _register(cv2, a, img, motion)
    except Exception as exc:  # noqa: BLE001 - too few tracks, no fit, cv2.error
        raise _NotRegistered() from exc
    return A, s, ((img.shape[1] - 1) / 2.0, (img.shape[0] - 1) / 2.0)


class _NotRegistered(Exception):
    """A pair of previews that :func:`_register` could not register (its cause says why)."""


def _register_neighbours(frames, mode, estimate_side, frame_scale, full_shape):
    """Pass 1: each frame registered to the one before it, on previews, in a few threads.

    Returns ``(neighbours, neighbours_affine, dropped, shape)`` (A_k: frame k-1 -> frame k
    in full-size pixels; with ``auto`` also the affine fits the similarities were
    projected from; what each projection left out, full-size corner pixels; frame 0's
    shape), or, with ``auto``, an :class:`Alignment` saying why it is not applied.
    """
    cv2 = require_cv2()
    motion = "similarity" if mode == "auto" else mode
    neighbours, neighbours_affine, dropped, failed = [], [], [], []
    pending = deque()  # (k, frame k-1's preview, frame k's task): futures, in frame order
    prev = shape = None

    def collect(k, before, fut):
        try:  # a frame that cannot be prepared raises as it is
            before.result()
            done = fut.result()
        except _NotRegistered as exc:
            done = exc
        if k == 0:
            return
        if isinstance(done, _NotRegistered):
            why = f"frame {k}: alignment to frame {k - 1} failed ({str(done.__cause__).splitlines()[0]})"
            if mode != "auto":
                raise ValueError(why) from None
            failed.append(why)  # auto, the default: measured as it is, and the note says why
            return
        A, s, centre = done
        s *= frame_scale
        if motion == "similarity":
            S = _to_similarity(A, centre)
            C = _corners(round(2 * centre[1] + 1), round(2 * centre[0] + 1))
            dropped.append(float(np.abs((A - S) @ C).max()) / s)  # preview px -> full-size px
            if mode == "auto":
                neighbours_affine.append(_to_full_size(A, s))
            A = S
        neighbours.append(_to_full_size(A, s))

    # each frame's preview, then its registration to the previous frame's, is a task in a
    # few threads (OpenCV and the preview kernels release the GIL) while the next frame is
    # decoded; a task waits only for the preview before it. A few frames at a time bound
    # the memory.
    with ThreadPoolExecutor(max_workers=ESTIMATE_THREADS) as pool:
        for k, frame in enumerate(frames):
            if shape is None:
                shape, shape0 = frame.shape[:2], frame.shape
                side = min(full_shape or shape)
                if mode == "auto" and side < AUTO_MIN_SIDE:
                    return Alignment.skipped("auto", f"auto: frames {side} px on their short side, under "
                                                     f"{AUTO_MIN_SIDE}, are too small to tell motion from "
                                                     "blur; not applied")
            elif frame.shape[:2] != shape:  # worded as the measuring pass words it
                raise ValueError(f"frame {k}: shape {frame.shape} differs from frame 0's {shape0}")
            mine = Future()
            pending.append((k, mine if prev is None else prev,
                            pool.submit(_preview_and_register, cv2, frame, estimate_side, mine, prev, motion)))
            prev = mine
            while len(pending) > ESTIMATE_THREADS:
                collect(*pending.popleft())
        while pending:
            collect(*pending.popleft())
    if failed:
        return Alignment.skipped("auto", f"auto: {failed[0]}; not applied")
    return neighbours, neighbours_affine, dropped, shape


def _chain(neighbours, r):
    """3x3 maps reference -> frame k from the neighbour maps, chained out from frame ``r``."""
    n = len(neighbours) + 1
    Ms = [None] * n
    Ms[r] = np.eye(3)
    for k in range(r + 1, n):
        Ms[k] = _h(neighbours[k - 1]) @ Ms[k - 1]
    for k in range(r - 1, -1, -1):
        Ms[k] = np.linalg.inv(_h(neighbours[k])) @ Ms[k + 1]
    return Ms


def _note(mode, applied, motion_px, auto_threshold, model, beyond):
    """What ``auto`` decided and why, and a hint where a similarity cannot follow the frames."""
    note = (f"auto: largest corner motion {motion_px:.2f} px > {auto_threshold} px, {model} applied"
            + (f" (neighbouring frames shear or stretch by up to {beyond:.2f} px at the corners)"
               if model == "affine" else "")
            if mode == "auto" and applied else
            f"auto: largest corner motion {motion_px:.2f} px <= {auto_threshold} px, not applied"
            if mode == "auto" else "")
    if applied and beyond > BEYOND_SIMILARITY_HINT and model == "similarity":
        note = (note + "; " if note else "") + (
            f"neighbouring frames shear or stretch by up to {beyond:.2f} px at the corners, which a "
            "similarity cannot follow (hand-held camera, rolling shutter): align: affine does")
    return note


def _common_region(Ms, C, H, W):
    """(y0, y1, x0, x1): the reference pixels that every frame (``Ms``: reference -> frame) covers."""
    y0, y1, x0, x1 = 0.0, H - 1.0, 0.0, W - 1.0
    for M in Ms:
        c = np.linalg.inv(M) @ C  # frame corners in reference coordinates
        x0 = max(x0, c[0, 0], c[0, 2])
        x1 = min(x1, c[0, 1], c[0, 3])
        y0 = max(y0, c[1, 0], c[1, 1])
        y1 = min(y1, c[1, 2], c[1, 3])
    return (int(math.ceil(y0 - 1e-6)), int(math.floor(y1 + 1e-6)) + 1,
            int(math.ceil(x0 - 1e-6)), int(math.floor(x1 + 1e-6)) + 1)


def _per_frame(Ms, measured, H, W):
    """Each frame's transform in words: scale, stretch, shear, rotation, where the centre moves."""
    per_frame = []
    centre = np.array([(W - 1) / 2.0, (H - 1) / 2.0])
    for k, M in enumerate(Ms):
        A = M[:2]
        shift = A[:, :2] @ centre + A[:, 2] - centre  # where the image centre moves
        col_x, col_y = np.hypot(*A[:, 0]), np.hypot(*A[:, 1])  # how x and y axes stretch
        per_frame.append({"frame": k, "scale": float(math.sqrt(abs(np.linalg.det(A[:, :2])))),
                          "scale_measured": measured[k],
                          "scale_x": float(col_x), "scale_y": float(col_y),
                          "shear_deg": float(math.degrees(math.asin(max(-1.0, min(1.0, float(
                              A[:, 0] @ A[:, 1]) / (col_x * col_y)))))),
                          "rotation_deg": float(math.degrees(math.atan2(A[1, 0], A[0, 0]))),
                          "shift_x": float(shift[0]), "shift_y": float(shift[1]),
                          "matrix": [[float(v) for v in row] for row in A]})
    return per_frame


class Warper:
    """Moves per-frame images onto the reference grid, cropped (pass 2 of the core loop).

    ``measure`` resamples a focus-measure map bilinearly (it is window-smoothed, so
    bilinear interpolation barely alters it); ``image`` takes each frame pixel nearest
    to where the reference pixel lands, for pyramid fusion. The ``select`` and
    ``interpolate`` compositors do not need the whole warped frame: they take
    :meth:`matrix` and sample the native frame by Lanczos-3 at the pixels it
    contributes (:func:`dffbatch.stages.composite.update_select_warped`). That choice is
    judged on ground truth, not on the all-in-focus image's mean focus measure (which
    rises with misregistration and falls with any interpolation): nearest-pixel
    sampling shifted fine texture by up to half a pixel and cost 5.5-7 dB of PSNR
    against the true all-in-focus image of rendered breathing stacks.
    The reference frame is only cropped.

    Output pixels that a frame does not cover get no focus from it (its measure is 0
    there), so that frame never wins them; :meth:`coverage` counts the frames that
    cover each output pixel.
    """

    def __init__(self, al: Alignment):
        self.al = al
        self.cv2 = require_cv2()
        y0, y1, x0, x1 = al.crop
        self.out_shape = (y1 - y0, x1 - x0)
        # reference -> frame, expressed on the cropped grid: x_frame = M (x_crop + offset)
        self._M = []
        for M in al.matrices:
            Mc = M.astype(np.float64).copy()
            Mc[:, 2] += M[:, :2] @ np.array([x0, y0], np.float64)
            self._M.append(Mc)

    def _warp(self, img, k, flag, dst=None):
        cv2 = self.cv2
        y0, y1, x0, x1 = self.al.crop
        if k == self.al.reference:
            return np.ascontiguousarray(img[y0:y1, x0:x1])
        h, w = self.out_shape
        out = cv2.warpAffine(img, self._M[k], (w, h), dst=dst, flags=flag | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        if out.ndim == 2 and img.ndim == 3:
            out = out[:, :, None]
        return out.astype(img.dtype, copy=False)

    def matrix(self, k):
        """2x3 float64: output (cropped reference) pixel (x, y, 1) -> frame ``k`` pixel."""
        return self._M[k]

    def measure(self, f, k, out):
        if k == self.al.reference:
            y0, y1, x0, x1 = self.al.crop
            out[...] = f[y0:y1, x0:x1]
            return out
        return self._warp(f, k, self.cv2.INTER_LINEAR, dst=out)

    def image(self, img, k):
        return np.ascontiguousarray(self._warp(img, k, self.cv2.INTER_NEAREST))

    def bilinear(self, img, k, dst=None):
        """Frame ``k`` (H, W, C) moved onto the output grid by bilinear sampling, into ``dst``
        (reused when its shape fits), the frame's dtype, always with a channel axis."""
        h, w = self.out_shape
        shape = (h, w, img.shape[2])
        if dst is None or dst.shape != shape or dst.dtype != img.dtype:
            dst = np.empty(shape, img.dtype)
        if k == self.al.reference:
            y0, y1, x0, x1 = self.al.crop
            dst[...] = img[y0:y1, x0:x1]
            return dst
        cv2 = self.cv2
        out = dst if img.shape[2] in (3, 4) else None  # OpenCV writes into (h, w, C) arrays of 3 or 4 channels
        res = cv2.warpAffine(img, self._M[k], (w, h), dst=out, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_REPLICATE)
        if res is not dst:
            dst[...] = res.reshape(shape)
        return dst

    def coverage(self) -> np.ndarray:
        """Number of frames that cover each output pixel, uint16 (H, W) on the output grid.

        Every frame covers the common region; only the band outside it is tested,
        frame by frame, against each frame's rectangle (pixel centres within
        [-0.5, size - 0.5]).
        """
        al = self.al
        n = len(al.matrices)
        h, w = self.out_shape
        cov = np.full((h, w), n, np.uint16)
        y0, y1, x0, x1 = al.crop
        cy0, cy1, cx0, cx1 = al.common or al.crop
        inner = np.zeros((h, w), bool)
        inner[max(cy0 - y0, 0):max(cy1 - y0, 0), max(cx0 - x0, 0):max(cx1 - x0, 0)] = True
        ys, xs = np.nonzero(~inner)
        if ys.size == 0:
            return cov
        Hf, Wf = al.shape
        pts = np.stack([xs.astype(np.float64), ys.astype(np.float64), np.ones(xs.size)])
        count = np.zeros(xs.size, np.uint16)
        for k in range(n):
            fx, fy = self._M[k] @ pts
            count += ((fx >= -0.5) & (fx <= Wf - 0.5) & (fy >= -0.5) & (fy <= Hf - 0.5)).astype(np.uint16)
        cov[ys, xs] = count
        return cov


class RegisteredGrid(Grid):
    """The output grid of registered frames (the reference's, cropped or not): what every
    stage after registration sees. The measure is taken on a frame's own pixels and
    moved onto the grid (resampling the frame first would blur it and bias depth); the
    compositors sample the native frames through :meth:`matrix`; pyramid fusion gets
    whole frames moved onto it."""

    applied = True

    def __init__(self, alignment: Alignment):
        self.warper = Warper(alignment)
        self._native = self._moved = None

    def shape(self, frame_shape):
        return self.warper.out_shape

    def measure(self, fm, img, k, out):
        if self._native is None:
            self._native = np.empty(img.shape[:2], np.float32)
        fm(img, self._native)
        return self.warper.measure(self._native, k, out)

    def image(self, pixels, k):
        return self.warper.image(pixels, k)

    def reduced(self, pixels, k, out, reduce):
        """Moved onto the output grid bilinearly at full size, then reduced: within 0.2 of a
        Lanczos-3 warp's reduction on a rendered breathing stack (8-bit units), where
        reducing first and moving the half-size image (bilinear, cubic or Lanczos alike)
        was 0.86 off: a level-1 image is not band-limited to its own grid. 2.5 ms a
        1080 x 1080 RGB frame (OpenCV, one thread)."""
        self._moved = self.warper.bilinear(pixels, k, self._moved)
        reduce(readonly(self._moved), out)  # read-only as on the frames' own grid: one specialisation
        return out

    def matrix(self, k):
        return self.warper.matrix(k)

    def post(self):
        return [Coverage(self.warper)]


class Coverage(PostStage):
    """Pixels that some frames do not cover were measured by fewer: their confidence is
    scaled by the share of frames that cover them."""

    def __init__(self, warper: Warper):
        self.warper = warper

    def run(self, maps):
        maps.confidence = maps.confidence * (self.warper.coverage().astype(np.float32) / np.float32(maps.n))
        return maps


def _auto_cannot_run(frames) -> str:
    """Why ``align: auto`` cannot run on these frames ("" when it can)."""
    if fresh(frames) is None:
        return "the frames come as a one-shot iterator (pass a sequence or a callable to align)"
    try:
        import cv2  # noqa: F401
    except ImportError:
        return "OpenCV (opencv-python-headless) is not installed"
    return ""


def register(frames, mode: str, reference, crop: bool, prefetch: int = 1):
    """The pre-stream stage *align*: ``(alignment, grid, frames)``.

    Estimates the transforms in a first pass over ``frames`` (a sequence, or a callable
    returning a fresh iterator, which may carry a ``preview``: see
    :func:`dffbatch.depth_from_focus`) and returns the :class:`Alignment` (None for
    ``none``), the grid the later stages see (:class:`RegisteredGrid` where it was
    applied, the frames' own otherwise) and the frames for the stream.
    """
    from .read import prefetch as _prefetch
    alignment = None
    if mode == "auto":  # where it cannot run, it says why and measures unaligned
        why = _auto_cannot_run(frames)
        if why:
            alignment, mode = Alignment.skipped("auto", f"auto: {why}; not applied"), "none"
    if mode == "none":
        return alignment, Grid(), frames() if callable(frames) else frames
    source = fresh(frames)
    if source is None:
        raise TypeError("alignment reads the stack twice: pass frames as a sequence or as a callable "
                        "that returns a fresh iterator")
    preview = getattr(frames, "preview", None)  # a cheaper decode for estimation, if offered
    scale, full_shape, it = preview() if preview is not None else (1.0, None, source())
    est_stream = _prefetch(it, prefetch) if prefetch > 0 else it
    alignment = estimate_alignment((check_frame(f, k) for k, f in enumerate(est_stream)), mode, reference,
                                   frame_scale=scale, full_shape=full_shape, keep_size=not crop)
    return alignment, RegisteredGrid(alignment) if alignment.applied else Grid(), source()


def _tile_shifts(cv2, a, b, grid):
    """Translation (pixels) that registers each tile of ``b`` to ``a``'s, ECC from zero."""
    H, W = a.shape
    gy, gx = grid
    out = []
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-5)
    for ty in range(gy):
        for tx in range(gx):
            ys, xs = slice(ty * H // gy, (ty + 1) * H // gy), slice(tx * W // gx, (tx + 1) * W // gx)
            M = np.eye(2, 3, dtype=np.float32)
            try:
                _, M = cv2.findTransformECC(a[ys, xs], b[ys, xs], M, cv2.MOTION_TRANSLATION, crit, None, 1)
            except cv2.error:  # a tile without texture: no estimate
                continue
            out.append(math.hypot(float(M[0, 2]), float(M[1, 2])))
    return out


def residual_motion(frames: Iterable[np.ndarray], alignment: Optional[Alignment] = None,
                    grid: tuple = (3, 4)) -> np.ndarray:
    """How far neighbouring frames still are from each other, after alignment (a diagnostic).

    Each pair of neighbouring frames (similar blur) is brought onto the reference grid
    with ``alignment`` (as is when None or not applied), band-passed at full
    resolution, cut into ``grid`` tiles, and each tile is registered by translation
    alone: a perfect global alignment leaves zero in every tile, while motion the
    model cannot follow (parallax, rolling shutter, a wrong estimate) leaves the local
    mismatch. Streams the frames, two at a time.

    Parameters
    ----------
    frames : iterable of ndarray (H, W) or (H, W, C)
        The stack, in order.
    alignment : Alignment, optional
    grid : (rows, columns)

    Returns
    -------
    ndarray (N - 1,), float64
        Per neighbour pair, the median over the tiles of the residual shift, pixels.
    """
    cv2 = require_cv2()
    warper = Warper(alignment) if alignment is not None and alignment.applied else None
    prev, out = None, []
    for k, frame in enumerate(frames):
        bp = _bandpass(cv2, _grey(cv2, frame))
        if warper is not None:
            bp = warper._warp(bp, k, cv2.INTER_LINEAR)
        if prev is not None:
            shifts = _tile_shifts(cv2, prev, bp, grid)
            out.append(float(np.median(shifts)) if shifts else float("nan"))
        prev = bp
    return np.array(out)
