"""The library call: ``depth_from_focus(frames, ...) -> DFFResult``.

The stack is a stream: frames are consumed one at a time, flowing through the stages
measure -> depth -> composite, and at the end refine. Memory is O(H*W) whatever the
number of frames (no H x W x N focus volume is ever built).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

import numpy as np

from .align import ALIGN_MODES
from .composite import COMPOSITES, Compositor
from .depth import INTERPOLATIONS, DepthState
from .measure import MEASURES, FocusMeasure, check_window
from .depth import block_mean
from .fused import measure_pass
from .params import DEFAULTS, REFINES, STRENGTH_DEFAULT
from .post import COARSE_BLOCK, REFINERS, Maps
from .read import prefetch as _prefetch

__all__ = ["DFFResult", "depth_from_focus", "DEFAULTS", "check_frame"]

_DTYPES = (np.uint8, np.uint16, np.float32, np.float64)


@dataclass
class DFFResult:
    """Outputs of :func:`depth_from_focus`.

    Attributes
    ----------
    depth : ndarray (H, W) float32
        Sub-frame index of best focus in [0, N-1], after the median filter.
    index : ndarray (H, W) int32
        Integer best frame per pixel (ties to the lowest index).
    confidence : ndarray (H, W) float32
        In [0, 1]. With ``refine: wls`` (default) the evidence of the focus curve that
        weighted the solve (:func:`dffbatch.depth.evidence`, both scales): near 1 where
        depth was measured, near 0 where it was filled from neighbours. With the other
        modes, the relative prominence of the focus peak (:mod:`dffbatch.depth`),
        updated by the bilateral filter where it runs.
    allfocus : ndarray
        All-in-focus image, same shape, dtype and channels as the input frames.
    n_frames : int
    depth_units : ndarray (H, W) float32 or None
        Depth in the units of ``positions`` (linear interpolation between the
        positions of the frames around the sub-frame depth), when given.
    params : dict
        The parameters used.
    alignment : dffbatch.align.Alignment or None
        Per-frame transforms, the crop applied to every output, and the ``auto``
        decision, when alignment was asked for.
    timings : dict
        Seconds per stage: read (waiting for frames), align (estimation), measure,
        depth, composite, refine. Without alignment, ``select`` and ``interpolate`` run
        measure, depth update and compositing in one pass (:mod:`dffbatch.fused`), booked
        under measure; depth and composite then hold the rest (the coarse curve, the
        sub-frame depth and the blend at the end).
    """

    depth: np.ndarray
    index: np.ndarray
    confidence: np.ndarray
    allfocus: np.ndarray
    n_frames: int
    depth_units: Optional[np.ndarray] = None
    positions: Optional[np.ndarray] = None
    alignment: Optional[object] = None
    params: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)


def check_frame(frame, k: int, ref=None) -> np.ndarray:
    """Validate frame ``k`` of a stream against the first one; return it as a C-contiguous array."""
    if not isinstance(frame, np.ndarray):
        raise TypeError(f"frame {k}: expected a numpy array, got {type(frame).__name__}")
    if frame.dtype not in _DTYPES:
        raise TypeError(f"frame {k}: dtype {frame.dtype} is not supported (use uint8, uint16, float32 or float64)")
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] < 1):
        raise ValueError(f"frame {k}: expected shape (H, W) or (H, W, C); got {frame.shape}")
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ValueError(f"frame {k}: empty frame of shape {frame.shape}")
    if ref is not None:
        if frame.shape != ref.shape:
            raise ValueError(f"frame {k}: shape {frame.shape} differs from frame 0's {ref.shape}")
        if frame.dtype != ref.dtype:
            raise ValueError(f"frame {k}: dtype {frame.dtype} differs from frame 0's {ref.dtype}")
    if frame.dtype.kind == "f" and not np.isfinite(frame).all():
        raise ValueError(f"frame {k}: contains NaN or infinite values")
    return np.ascontiguousarray(frame)  # views (a channel slice, a stride) are copied: the kernels read rows flat


def _check_volume_memory(shape, n):
    """Stop SGM with a clear error before its focus volume outgrows the memory."""
    from .schedule import available_memory
    from .sgm import sgm_memory
    need = sgm_memory(shape[0], shape[1], n)
    avail = available_memory()
    if avail and need > 0.8 * avail:
        raise MemoryError(f"refine 'sgm' needs {need / 2**20:.0f} MB for {n} frames of {shape[1]}x{shape[0]} "
                          f"but only {avail / 2**20:.0f} MB are available; use refine 'bilateral' "
                          "(streaming) or fewer/smaller frames")


def _focus_input(frame, focus_channel):
    """None (the measure's own luminance) or a function giving the 2-D image to measure."""
    C = frame.shape[2] if frame.ndim == 3 else 1
    if focus_channel is None and C in (1, 3, 4):
        return None
    if focus_channel is None or focus_channel == "mean":
        from .hyperstack import plane_mean_focus
        return plane_mean_focus if C > 1 else None
    if not -C <= int(focus_channel) < C:
        raise ValueError(f"focus_channel {focus_channel} does not exist: the frames have {C} channel(s)")
    c = int(focus_channel) % C
    return (lambda f: np.ascontiguousarray(f[:, :, c])) if frame.ndim == 3 else None


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


def _auto_cannot_run(frames) -> str:
    """Why ``align: auto`` cannot run on these frames ("" when it can)."""
    if not (callable(frames) or isinstance(frames, (Sequence, np.ndarray))):
        return "the frames come as a one-shot iterator (pass a sequence or a callable to align)"
    try:
        import cv2  # noqa: F401
    except ImportError:
        return "OpenCV (opencv-python-headless) is not installed"
    return ""


def depth_from_focus(frames: Iterable[np.ndarray], *, measure: str = DEFAULTS["measure"],
                     window: int = DEFAULTS["window"], step: int = DEFAULTS["step"],
                     threshold: float = DEFAULTS["threshold"],
                     interpolation: str = DEFAULTS["interpolation"],
                     median: int = DEFAULTS["median"], composite: str = DEFAULTS["composite"],
                     positions: Optional[Sequence[float]] = None,
                     refine: str = DEFAULTS["refine"], refine_radius: int = DEFAULTS["refine_radius"],
                     refine_strength: Optional[float] = DEFAULTS["refine_strength"],
                     align: str = DEFAULTS["align"], align_reference=DEFAULTS["align_reference"],
                     align_crop: bool = DEFAULTS["align_crop"],
                     focus_channel=None, prefetch: int = 1) -> DFFResult:
    """Depth, confidence and all-in-focus image of a focus stack.

    Parameters
    ----------
    frames : iterable of ndarray, each (H, W) or (H, W, C) with C in {1, 3, 4}
        The stack in focus order, uint8, uint16 or float; consumed one at a time.
        A generator that decodes files lazily is the intended input.
    measure : str
        Focus measure, one of ``sml lape lapv lapd teng tenv glva wavs``
        (see :mod:`dffbatch.measure`).
    window : int
        Odd side of the focus-measure window, pixels.
    step, threshold
        ``sml`` neighbour distance (pixels) and threshold (luminance in [0, 1]).
    interpolation : {"gaussian", "parabolic", "none"}
        Sub-frame refinement of the best frame.
    median : int
        Side of the median filter on the depth map, pixels (0 or 1 = off).
    composite : {"select", "interpolate", "pyramid"}
        All-in-focus construction: see :mod:`dffbatch.composite`; ``pyramid`` is the
        Laplacian-pyramid fusion of :mod:`dffbatch.fusion`.
    refine : {"wls", "none", "median", "bilateral", "sgm"}
        Depth clean-up (the stages of :mod:`dffbatch.post`): ``wls`` (default), a global,
        edge-aware solve weighted by the evidence of each focus curve
        (:mod:`dffbatch.solve`): depth where focus is measured stays as measured, flat
        and ambiguous areas are filled from confident neighbours along the structure
        of the all-in-focus image (two solves, a near and a far reach; ``median``
        is not used); ``refine_strength`` = the near solve's lambda, default 60
        (reach about sqrt(lambda) pixels; the far one 3.5x); the confidence
        becomes the evidence weight in [0, 1].
        ``median`` (the ``median`` filter alone); ``bilateral``, the
        confidence-weighted joint bilateral filter guided by the all-in-focus image
        (:func:`dffbatch.refine.joint_bilateral`, ``refine_radius`` pixels,
        ``refine_strength`` = confidence power, default 8), then the median; ``sgm``,
        semi-global aggregation of the focus volume (:mod:`dffbatch.sgm`;
        ``refine_strength`` = P2, default 4, P1 = P2 / 10; keeps the volume: 8 x H x W
        x N bytes, checked against available memory), then the same bilateral filter
        on its depth and confidence, then the median. SGM does much of the smoothing a
        large measure window otherwise does, without its spill across occlusion edges:
        a small ``window`` (3) sharpens occlusion edges further, 9 is better on weak
        texture.
    positions : sequence of float, optional
        Focus position of each frame (e.g. micrometres); adds ``depth_units``.
    align : {"auto", "none", "translation", "similarity", "affine"}
        Correct focus breathing and camera shift first (see :mod:`dffbatch.align`;
        uses OpenCV): ``similarity`` for a breathing lens on a tripod, ``affine`` for
        hand-held stacks (it also follows rolling-shutter shear); ``auto`` (default)
        measures the motion and applies nothing when no corner moves by more than
        0.5 px (the outputs are then those of ``none``, byte for byte), else one of
        the two; frames under 256 px on their short side are not aligned by ``auto``. Alignment reads the
        stack twice, so ``frames`` must then be a sequence or a callable returning a
        fresh iterator. Outputs keep the reference frame's size; pixels that some
        frames do not cover are measured on those that do, and their confidence is
        scaled by the share of frames that cover them. A callable may carry a ``preview`` attribute: a
        callable returning ``(scale, (H, W), iterator)`` over frames decoded at reduced
        size (``scale``), used for the estimation pass.
    align_reference : "middle", "first", "last" or int
        The frame the others are aligned to.
    align_crop : bool
        With alignment applied, crop the outputs to the region every frame covers
        (``DFFResult.alignment.crop``, in reference pixels) instead.
    focus_channel : None, "mean" or int
        What the focus measure sees of (H, W, C) frames: None, the luminance (Rec. 601)
        of RGB(A) frames and the mean of the channels otherwise; "mean", the mean of
        the channels, each scaled to [0, 1] by its dtype (microscopy: every channel's
        structure counts); an int, that channel alone. The all-in-focus image keeps
        every channel either way.
    prefetch : int
        Frames decoded ahead in a background thread while the kernels run (0 = off).

    Returns
    -------
    DFFResult

    Raises
    ------
    ValueError, TypeError
        Fewer than 2 frames, inconsistent shapes/dtypes, non-finite floats, bad
        parameters. Messages name the frame and the problem.
    """
    _check_choice("focus measure", measure, MEASURES)
    _check_choice("interpolation", interpolation, INTERPOLATIONS)
    _check_choice("composite", composite, COMPOSITES)
    check_window(window)
    if isinstance(median, bool) or not isinstance(median, (int, np.integer)) or median < 0 \
            or (median > 1 and median % 2 == 0):
        raise ValueError(f"median size must be 0, 1 or an odd integer >= 3, got {median!r}")
    if positions is not None:
        positions = np.asarray(positions, dtype=np.float64)
        if positions.ndim != 1 or not np.isfinite(positions).all():
            raise ValueError("positions must be a 1-D sequence of finite numbers, one per frame")
    _check_choice("alignment", align, ALIGN_MODES)
    if not (focus_channel is None or focus_channel == "mean"
            or (isinstance(focus_channel, (int, np.integer)) and not isinstance(focus_channel, bool))):
        raise ValueError(f"focus_channel must be None, 'mean' or a channel index, got {focus_channel!r}")
    _check_choice("refine", refine, REFINES)
    if isinstance(refine_radius, bool) or not isinstance(refine_radius, (int, np.integer)) or refine_radius < 1:
        raise ValueError(f"refine_radius must be an integer >= 1, got {refine_radius!r}")
    strength = STRENGTH_DEFAULT.get(refine, 0.0) if refine_strength is None else float(refine_strength)
    if not np.isfinite(strength) or strength < 0:
        raise ValueError(f"refine_strength must be a number >= 0, got {refine_strength!r}")
    params = dict(measure=measure, window=int(window), step=int(step), threshold=float(threshold),
                  interpolation=interpolation, median=int(median), composite=composite,
                  refine=refine, refine_radius=int(refine_radius), refine_strength=refine_strength,
                  align=align, align_reference=align_reference, align_crop=bool(align_crop))

    timings = dict(read=0.0, align=0.0, measure=0.0, depth=0.0, composite=0.0, refine=0.0)
    alignment = alignment_warp = None
    if align == "auto":  # where it cannot run, it says why and measures unaligned
        from .align import Alignment
        why = _auto_cannot_run(frames)
        if why:
            alignment, align = Alignment.skipped("auto", f"auto: {why}; not applied"), "none"
    if align != "none":
        from .align import estimate_alignment
        if callable(frames):
            source = frames
        elif isinstance(frames, (Sequence, np.ndarray)):
            source = lambda: iter(frames)  # noqa: E731
        else:
            raise TypeError("alignment reads the stack twice: pass frames as a sequence or as a callable "
                            "that returns a fresh iterator")
        t0 = time.perf_counter()
        preview = getattr(frames, "preview", None)  # a cheaper decode for estimation, if offered
        if preview is not None:
            scale, full_shape, it = preview()
        else:
            scale, full_shape, it = 1.0, None, source()
        est_stream = _prefetch(it, prefetch) if prefetch > 0 else it
        alignment = estimate_alignment((check_frame(f, k) for k, f in enumerate(est_stream)), align,
                                       align_reference, frame_scale=scale, full_shape=full_shape,
                                       keep_size=not align_crop)
        timings["align"] += time.perf_counter() - t0
        frames = source()
        if not alignment.applied:
            alignment_warp = None
        else:
            from .align import Warper
            alignment_warp = Warper(alignment)
    elif callable(frames):
        frames = frames()
    stream = _prefetch(frames, prefetch) if prefetch > 0 else iter(frames)
    ref = fm = state = comp = focus = None
    f_cur = f_prev = prev3 = None
    M_cur = None  # with alignment: output pixel -> frame pixel, for the compositor
    needs = REFINERS[refine].needs
    volume = [] if "volume" in needs else None
    coarse = fc_cur = fc_prev = None
    k = 0
    t = time.perf_counter()
    for frame in stream:
        t1 = time.perf_counter()
        timings["read"] += t1 - t
        frame = check_frame(frame, k, ref)
        if ref is None:
            ref = frame
            H, W = frame.shape[:2]
            fm = FocusMeasure((H, W), measure, window, step, threshold)
            focus = _focus_input(frame, focus_channel)
            if alignment_warp is not None:
                f_full = np.empty((H, W), np.float32)
                H, W = alignment_warp.out_shape
            state = DepthState((H, W))
            f_cur = np.empty((H, W), np.float32)
            f_prev = np.zeros((H, W), np.float32)
            if "coarse" in needs:
                cshape = (-(-H // COARSE_BLOCK), -(-W // COARSE_BLOCK))
                coarse = DepthState(cshape)
                fc_cur = np.empty(cshape, np.float32)
                fc_prev = np.zeros(cshape, np.float32)
        frame3 = frame[:, :, None] if frame.ndim == 2 else frame
        if comp is None:
            shape3 = (H, W, frame3.shape[2])
            if composite == "pyramid":
                from .fusion import PyramidFusion
                comp = PyramidFusion(shape3, frame.dtype)
            else:
                comp = Compositor(shape3, frame.dtype, composite, interpolation)
        img = frame if focus is None else focus(frame)
        if alignment_warp is None and composite != "pyramid":
            # measure, depth state and all-in-focus in one pass over bands of rows (the
            # stage kernels' bytes): its time is booked under "measure"
            measure_pass(fm, img, f_cur, state, f_prev, comp, frame3, prev3)
            t2 = time.perf_counter()
        else:
            if alignment_warp is None:
                fm(img, f_cur)
            else:
                # measure focus on the frame's own pixels, then move the (smooth) measure onto
                # the reference grid: resampling the frame first would blur it and bias depth
                fm(img, f_full)
                alignment_warp.measure(f_full, k, f_cur)
                if composite == "pyramid":  # fusion needs whole frames on the output grid
                    frame3 = alignment_warp.image(frame3, k)
                else:  # the compositor samples the native frame where it needs it
                    M_cur = alignment_warp.matrix(k)
            t2 = time.perf_counter()
            state.update(f_cur, f_prev)
        if volume is not None:
            _check_volume_memory(f_cur.shape, k + 1)
            volume.append(f_cur.copy())
        if coarse is not None:
            block_mean(f_cur, COARSE_BLOCK, fc_cur)
            coarse.update(fc_cur, fc_prev)
            fc_cur, fc_prev = fc_prev, fc_cur
        t4 = time.perf_counter()
        if composite == "pyramid":
            comp.update(frame3, f_cur)
        elif alignment_warp is not None:
            comp.update(frame3, prev3, state.best, k, M_cur, state)
        t = time.perf_counter()
        timings["measure"] += t2 - t1
        timings["depth"] += t4 - t2
        timings["composite"] += t - t4
        f_cur, f_prev = f_prev, f_cur
        prev3 = frame3 if composite == "interpolate" else None
        k += 1
    timings["read"] += time.perf_counter() - t
    if k < 2:
        raise ValueError(f"a focus stack needs at least 2 frames, got {k}")
    if positions is not None and len(positions) != k:
        raise ValueError(f"positions has {len(positions)} values but the stack has {k} frames")

    t0 = time.perf_counter()
    raw, conf = state.finish(interpolation)
    t1 = time.perf_counter()
    allfocus = comp.finish() if composite == "pyramid" else comp.finish(raw, state.best)
    if ref.ndim == 2:
        allfocus = allfocus[:, :, 0]
    t2 = time.perf_counter()
    maps = Maps(raw=raw, confidence=conf, allfocus=allfocus, state=state, interpolation=interpolation,
                measure=measure, window=int(window), median=int(median), radius=int(refine_radius),
                strength=strength, coarse=coarse, volume=volume)
    volume = None
    depth, conf = REFINERS[refine].run(maps)
    t3 = time.perf_counter()
    timings["depth"] += t1 - t0
    timings["composite"] += t2 - t1
    timings["refine"] += t3 - t2

    if alignment_warp is not None:  # pixels some frames do not cover: measured by fewer
        conf = conf * (alignment_warp.coverage().astype(np.float32) / np.float32(k))
    depth_units = None
    if positions is not None:
        depth_units = np.interp(depth, np.arange(k), positions).astype(np.float32)
    return DFFResult(depth=depth, index=state.best, confidence=conf, allfocus=allfocus,
                     n_frames=k, depth_units=depth_units, positions=positions, alignment=alignment,
                     params=params, timings=timings)
