"""The stage interface: what every stage of a plan looks like, and what flows between them.

A stack goes through three kinds of stage (``docs/architecture.md``):

* **pre-stream** stages read the frames once before the stream (registration:
  :func:`dffbatch.stages.align.register`) and give the plan what every later stage
  sees: a :class:`Grid`, the output pixels and how a frame's pixels reach them;
* **per-frame** stages (:class:`FrameStage`): ``start(shape, dtype)`` with the first
  frame, ``update(frame, k)`` for every frame, ``finish(maps)`` when the stream ends,
  adding their outputs to the maps (:class:`dffbatch.stages.post.Maps`). They keep O(H W) running state, never
  the frames;
* **post-stream** stages (:class:`PostStage`): ``run(maps) -> maps``, maps in, maps out
  (the ``refine`` modes of :mod:`dffbatch.stages.post`, the coverage of aligned frames,
  depth in units).

A stage declares in ``needs`` what the plan must provide for it: ``"coarse"`` (the
block-mean focus curve), ``"volume"`` (every frame's focus), ``"frames"`` (a second
pass over the frames, on the output grid, after the stream), ``"registration"``
(frames registered to the reference before it sees them).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["Frame", "FrameStage", "PostStage", "Grid", "check_frame", "fresh", "NEEDS"]

#: What a stage may declare in ``needs``, and who provides it.
NEEDS = {
    "coarse": "the per-frame stage dffbatch.stages.depth.CoarseCurve (maps.coarse)",
    "volume": "the per-frame stage dffbatch.stages.sgm.KeepVolume (maps.volume)",
    "frames": "the plan: maps.frames(), a fresh iterator over the frames as read (maps.grid: their output grid)",
    "registration": "the pre-stream stage dffbatch.stages.align.register (the plan's grid)",
}

_DTYPES = (np.uint8, np.uint16, np.float32, np.float64)


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


def fresh(frames):
    """A callable returning a fresh iterator over ``frames`` (a callable as it is, a
    sequence or array iterated again), or None for a one-shot iterator."""
    if callable(frames):
        return frames
    if isinstance(frames, (Sequence, np.ndarray)):
        return lambda: iter(frames)
    return None


class Frame:
    """One frame on its way through the per-frame stages.

    Attributes
    ----------
    k : int
        Its place in the stack.
    raw : ndarray (H, W) or (H, W, C)
        As read (checked, C-contiguous), on the frame's own grid.
    pixels : ndarray (H, W, C)
        The same pixels, always with a channel axis.
    focus, focus_prev : ndarray (h, w) float32
        This frame's focus measure and the previous frame's (for frame 0 a buffer of no
        particular values, which no stage reads), on the output grid: set by the measure
        stage, read by the stages after it.
    """

    __slots__ = ("k", "raw", "pixels", "focus", "focus_prev")

    def __init__(self, k: int, raw: np.ndarray):
        self.k = k
        self.raw = raw
        self.pixels = raw[:, :, None] if raw.ndim == 2 else raw
        self.focus = self.focus_prev = None


class FrameStage:
    """A per-frame stage. Subclasses override what they use.

    ``timing`` names the entry of :attr:`dffbatch.DFFResult.timings` its seconds are
    booked under; ``needs``: see :data:`NEEDS`.
    """

    timing = "measure"
    needs: frozenset = frozenset()

    def start(self, shape: tuple, dtype: np.dtype) -> None:
        """Allocate the running state for frames of ``shape`` ((H, W) or (H, W, C)) and ``dtype``."""

    def update(self, frame: Frame, k: int) -> None:
        """Fold frame ``k`` into the running state."""

    def finish(self, maps: "Maps") -> None:
        """The stream has ended: add this stage's outputs to ``maps``."""

    def parts(self) -> tuple:
        """The stages this one runs (a fused group: its members, each finished and timed as itself)."""
        return (self,)


class PostStage:
    """A post-stream stage: ``run(maps) -> maps``."""

    timing = "refine"
    needs: frozenset = frozenset()

    def run(self, maps: "Maps") -> "Maps":
        return maps


class Grid:
    """The output pixels and how a frame's pixels reach them: here, the frame's own grid.

    Registration (:class:`dffbatch.stages.align.RegisteredGrid`) replaces it; the stages
    ask the grid and never test whether frames were aligned.
    """

    applied = False

    def shape(self, frame_shape) -> tuple:
        """(h, w) of the outputs for frames of ``frame_shape``."""
        return tuple(frame_shape[:2])

    def measure(self, fm, img, k: int, out: np.ndarray) -> np.ndarray:
        """Focus of frame ``k`` (``img``, what the measure sees) into ``out`` on the output grid."""
        return fm(img, out)

    def image(self, pixels: np.ndarray, k: int) -> np.ndarray:
        """Frame ``k``'s pixels (H, W, C) on the output grid."""
        return pixels

    def reduced(self, pixels: np.ndarray, k: int, out: np.ndarray, reduce) -> np.ndarray:
        """Frame ``k``'s pixels reduced one pyramid level (``reduce(src, dst)``) on the
        output grid's level 1, into ``out`` (h1, w1, C) float32."""
        reduce(pixels, out)
        return out

    def matrix(self, k: int):
        """2x3 map from output pixels to frame ``k``'s pixels; None where they are the same."""
        return None

    def post(self) -> list:
        """Post-stream stages the grid adds (the coverage of aligned frames): none here."""
        return []
