"""The plan: which stages a call runs, built from its parameters, and the stream through them.

:func:`build_plan` is the one place that turns parameters into stages; a new method
is a stage class in its own module and one entry in a registry here or in
:mod:`dffbatch.stages.post`, never a branch in the loop. :func:`run_plan` streams the
frames through the per-frame stages, finishes them and runs the post-stream stages.

=========================  ==================================================================
pre-stream                 ``align`` (:func:`dffbatch.stages.align.register`): the grid
per-frame                  ``measure`` -> ``depth`` -> [needs: ``coarse``, ``volume``] ->
                           ``composite`` (``select`` / ``interpolate`` / ``hybrid`` /
                           ``pyramid``); on
                           the frames' own grid, a fusable composite runs with the
                           measure and the depth update as one banded pass
                           (:class:`dffbatch.stages.fused.FusedPass`)
post-stream                ``refine`` (:data:`dffbatch.stages.post.REFINERS`), the stages
                           ``AFTER_REFINE`` adds for it (``wls``: ``fill``,
                           :class:`dffbatch.stages.fill.Fill`), ``confidence``
                           (:class:`dffbatch.stages.confidence.Calibrate`), what the
                           grid adds (coverage of aligned frames), depth in units
=========================  ==================================================================
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .base import Frame, Grid, check_frame
from .composite import Composite
from .depth import CoarseCurve, Depth
from .fused import FusedPass
from .fusion import Pyramid
from .hybrid import Hybrid
from .measure import Measure
from .confidence import Calibrate
from .fill import Fill
from .post import COARSE_BLOCK, DepthUnits, Maps, Refine
from .sgm import KeepVolume

__all__ = ["Settings", "Plan", "build_plan", "run_plan", "COMPOSITE_STAGES", "NEED_STAGES", "AFTER_REFINE"]

#: ``composite`` -> its per-frame stages: (settings, depth stage, grid) -> (stage, *stages after
#: it); the first may be ``fusable`` with the measure and the depth update
COMPOSITE_STAGES = {
    "select": lambda s, depth, grid: (Composite("select", s.interpolation, depth, grid),),
    "interpolate": lambda s, depth, grid: (Composite("interpolate", s.interpolation, depth, grid),),
    "hybrid": lambda s, depth, grid: (Composite("interpolate", s.interpolation, depth, grid), Hybrid(depth, grid)),
    "pyramid": lambda s, depth, grid: (Pyramid(grid),),
}
#: a need of a later stage -> the per-frame stage that provides it: (grid) -> stage
NEED_STAGES = {
    "coarse": lambda grid: CoarseCurve(COARSE_BLOCK, grid),
    "volume": lambda grid: KeepVolume(),
}
#: ``refine`` -> the post stages that follow it, before the calibration: (refine mode) -> stage
AFTER_REFINE = {
    "wls": (Fill,),
}


@dataclass
class Settings:
    """The validated parameters of :func:`dffbatch.depth_from_focus`."""

    measure: str
    window: int
    step: int
    threshold: float
    interpolation: str
    median: int
    composite: str
    refine: str
    radius: int
    strength: float
    focus_channel: object = None
    positions: Optional[np.ndarray] = None


@dataclass
class Plan:
    """Stages in the order they run; ``grid`` is what registration left (or the frames' own)."""

    grid: Grid
    stages: list
    post: list
    settings: Settings
    frames_again: Optional[object] = None  # a callable giving a fresh iterator, for the need "frames"
    needs: frozenset = field(default_factory=frozenset)


def build_plan(s: Settings, grid: Grid, frames_again=None) -> Plan:
    """The stages for settings ``s`` on ``grid``."""
    post = [Refine(s.refine), *(stage(s.refine) for stage in AFTER_REFINE.get(s.refine, ())), Calibrate(s.refine), *grid.post()]
    if s.positions is not None:
        post.append(DepthUnits(s.positions))
    needs = frozenset().union(*(p.needs for p in post))
    if "frames" in needs and frames_again is None:
        raise TypeError("a post stage reads the stack again: pass frames as a sequence or as a callable "
                        "that returns a fresh iterator")
    measure = Measure(s.measure, s.window, s.step, s.threshold, s.focus_channel, grid)
    depth = Depth(s.interpolation, grid)
    composite, *after = COMPOSITE_STAGES[s.composite](s, depth, grid)
    extra = [NEED_STAGES[n](grid) for n in sorted(needs & NEED_STAGES.keys())]
    if getattr(composite, "fusable", False) and not grid.applied:
        stages = [FusedPass(measure, depth, composite), *extra, *after]
    else:
        stages = [measure, depth, *extra, composite, *after]
    return Plan(grid, stages, post, s, frames_again, needs)


def _timed(timings, key, fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    timings[key] += time.perf_counter() - t
    return out


def run_plan(plan: Plan, frames, timings: dict, prefetch: int = 1) -> Maps:
    """Stream ``frames`` through the plan's per-frame stages, finish them, run the post
    stages; the seconds of each go to ``timings`` (waiting for frames: ``read``)."""
    from .read import prefetch as _prefetch
    stream = _prefetch(frames, prefetch) if prefetch > 0 else iter(frames)
    ref, k = None, 0
    t = time.perf_counter()
    for raw in stream:
        timings["read"] += time.perf_counter() - t
        raw = check_frame(raw, k, ref)
        if ref is None:
            ref = raw
            for stage in plan.stages:
                stage.start(raw.shape, raw.dtype)
        frame = Frame(k, raw)
        for stage in plan.stages:
            _timed(timings, stage.timing, stage.update, frame, k)
        k += 1
        t = time.perf_counter()
    timings["read"] += time.perf_counter() - t
    if k < 2:
        raise ValueError(f"a focus stack needs at least 2 frames, got {k}")
    s = plan.settings
    maps = Maps(interpolation=s.interpolation, measure=s.measure, window=s.window, median=s.median,
                radius=s.radius, strength=s.strength, n=k, frames=plan.frames_again, grid=plan.grid)
    for stage in plan.stages:
        for part in stage.parts():
            _timed(timings, part.timing, part.finish, maps)
    for stage in plan.post:
        maps = _timed(timings, stage.timing, stage.run, maps)
    return maps
