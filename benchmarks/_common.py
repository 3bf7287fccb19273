"""Helpers the benchmarks share: a wall-clock timer and the misaligned-alignment control."""
import copy
import time
from contextlib import contextmanager

import numpy as np


def timed(fn):
    """Seconds one call of ``fn()`` takes (wall clock)."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def shifted(alignment, std=1.0, seed=1):
    """A copy of ``alignment`` with a random shift (std ``std`` px) added to every frame but the reference."""
    al = copy.copy(alignment)
    rng = np.random.default_rng(seed)
    al.matrices = [M if k == al.reference else M + np.hstack([np.zeros((2, 2)), rng.normal(0, std, (2, 1))])
                   for k, M in enumerate(al.matrices)]
    return al


@contextmanager
def given_alignment(alignment):
    """Within the block, ``depth_from_focus(..., align=...)`` uses ``alignment`` instead of estimating one."""
    import dffbatch.stages.align as align_module
    estimate = align_module.estimate_alignment
    align_module.estimate_alignment = lambda *args, **kw: alignment
    try:
        yield
    finally:
        align_module.estimate_alignment = estimate
