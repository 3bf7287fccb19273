"""The library call: ``depth_from_focus(frames, ...) -> DFFResult``.

The stack is a stream: frames are consumed one at a time, flowing through the stages
measure -> depth -> composite, and at the end refine. Memory is O(H*W) whatever the
number of frames (no H x W x N focus volume is ever built). This module validates the
parameters and composes the stages (:mod:`dffbatch.stages.plan`); the stages live in
:mod:`dffbatch.stages`, one module each (``docs/architecture.md``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

import numpy as np

from .params import ALIGN_MODES, COMPOSITES, DEFAULTS, INTERPOLATIONS, MEASURES, REFINES, STRENGTH_DEFAULT
from .stages.align import register
from .stages.base import check_frame, fresh
from .stages.measure import check_window
from .stages.plan import Settings, build_plan, run_plan

__all__ = ["DFFResult", "depth_from_focus", "DEFAULTS", "check_frame"]

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
        The estimated probability that ``depth`` is within one frame of the truth, in
        [0, 1], with one meaning for every refine mode, measure and window: a logistic
        model of the focus curve's evidence calibrated on the renderer's ground truth
        (:mod:`dffbatch.stages.confidence`). Below 0.5: more likely wrong than right
        (the report's low-confidence share; grey in the plots).
    allfocus : ndarray
        All-in-focus image, same shape, dtype and channels as the input frames.
    n_frames : int
    depth_units : ndarray (H, W) float32 or None
        Depth in the units of ``positions`` (linear interpolation between the
        positions of the frames around the sub-frame depth), when given.
    params : dict
        The parameters used.
    alignment : dffbatch.stages.align.Alignment or None
        Per-frame transforms, the crop applied to every output, and the ``auto``
        decision, when alignment was asked for.
    timings : dict
        Seconds per stage: read (waiting for frames), align (estimation), measure,
        depth, composite, refine. Without alignment, ``select`` and ``interpolate`` run
        measure, depth update and compositing in one pass (:mod:`dffbatch.stages.fused`), booked
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


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


def _check_int(name, value, ok, want):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not ok(value):
        raise ValueError(f"{name} must be {want}, got {value!r}")


def _settings(measure, window, step, threshold, interpolation, median, composite, positions, refine,
              refine_radius, refine_strength, align, focus_channel) -> Settings:
    """The parameters checked, with messages that name the parameter and the problem."""
    _check_choice("focus measure", measure, MEASURES)
    _check_choice("interpolation", interpolation, INTERPOLATIONS)
    _check_choice("composite", composite, COMPOSITES)
    check_window(window)
    _check_int("median size", median, lambda m: m >= 0 and (m <= 1 or m % 2 == 1), "0, 1 or an odd integer >= 3")
    if positions is not None:
        positions = np.asarray(positions, dtype=np.float64)
        if positions.ndim != 1 or not np.isfinite(positions).all():
            raise ValueError("positions must be a 1-D sequence of finite numbers, one per frame")
    _check_choice("alignment", align, ALIGN_MODES)
    if not (focus_channel is None or focus_channel == "mean"
            or (isinstance(focus_channel, (int, np.integer)) and not isinstance(focus_channel, bool))):
        raise ValueError(f"focus_channel must be None, 'mean' or a channel index, got {focus_channel!r}")
    _check_choice("refine", refine, REFINES)
    _check_int("refine_radius", refine_radius, lambda r: r >= 1, "an integer >= 1")
    strength = STRENGTH_DEFAULT.get(refine, 0.0) if refine_strength is None else float(refine_strength)
    if not np.isfinite(strength) or strength < 0:
        raise ValueError(f"refine_strength must be a number >= 0, got {refine_strength!r}")
    return Settings(measure, int(window), int(step), float(threshold), interpolation, int(median), composite,
                    refine, int(refine_radius), strength, focus_channel, positions)


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
    frames : iterable of ndarray, each (H, W) or (H, W, C); or a callable returning one
        The stack in focus order, uint8, uint16 or float; consumed one at a time. With
        alignment it is read twice: a sequence, or a callable returning a fresh iterator
        (which may carry a ``preview``, see :func:`dffbatch.stages.align.register`).
    measure : str
        Focus measure, one of ``sml lape lapv lapd teng tenv glva wavs`` (:mod:`dffbatch.stages.measure`).
    window : int
        Odd side of the focus-measure window, pixels.
    step, threshold
        ``sml`` neighbour distance (pixels) and threshold (luminance in [0, 1]).
    interpolation : {"gaussian", "parabolic", "none"}
        Sub-frame refinement of the best frame (:mod:`dffbatch.stages.depth`).
    median : int
        Side of the median filter on the depth map, pixels (0 or 1 = off).
    composite : {"select", "interpolate", "pyramid"}
        All-in-focus construction (:mod:`dffbatch.stages.composite`, :mod:`dffbatch.stages.fusion`).
    positions : sequence of float, optional
        Focus position of each frame (e.g. micrometres); adds ``depth_units``.
    refine : {"wls", "none", "median", "bilateral", "sgm"}
        Depth clean-up, the post stages of :mod:`dffbatch.stages.post` (their table says
        what each does); ``refine_radius`` pixels (bilateral) and ``refine_strength``
        (default per mode: the WLS near lambda, the bilateral confidence power, SGM's P2).
    align : {"auto", "none", "translation", "similarity", "affine"}
        Registration first (:mod:`dffbatch.stages.align`, OpenCV): ``auto`` applies
        nothing to a still stack (outputs byte-identical to ``none``), ``similarity``
        for a breathing lens, ``affine`` for hand-held stacks. ``align_reference``:
        "middle", "first", "last" or a frame index; ``align_crop``: crop the outputs to
        what every frame covers (else the reference's size, confidence scaled by coverage).
    focus_channel : None, "mean" or int
        What the measure sees of (H, W, C) frames: the luminance (None, RGB(A)), the mean
        of the channels scaled by dtype ("mean"; the default for other C), or one channel.
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
    s = _settings(measure, window, step, threshold, interpolation, median, composite, positions, refine,
                  refine_radius, refine_strength, align, focus_channel)
    params = dict(measure=measure, window=s.window, step=s.step, threshold=s.threshold,
                  interpolation=interpolation, median=s.median, composite=composite, refine=refine,
                  refine_radius=s.radius, refine_strength=refine_strength, align=align,
                  align_reference=align_reference, align_crop=bool(align_crop))
    timings = dict(read=0.0, align=0.0, measure=0.0, depth=0.0, composite=0.0, refine=0.0)
    again = fresh(frames)  # for a stage that reads the stack again
    t = time.perf_counter()
    alignment, grid, frames = register(frames, align, align_reference, bool(align_crop), prefetch)
    timings["align"] += time.perf_counter() - t
    plan = build_plan(s, grid, again)
    maps = run_plan(plan, frames, timings, prefetch)
    return DFFResult(depth=maps.depth, index=maps.state.best, confidence=maps.confidence,
                     allfocus=maps.allfocus, n_frames=maps.n, depth_units=maps.depth_units,
                     positions=s.positions, alignment=alignment, params=params, timings=timings)
