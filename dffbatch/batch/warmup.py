"""First run: compile the kernels once, before the workers start, and say so.

Numba compiles each kernel the first time it runs and caches the machine code on disk
(``cache=True``: in ``__pycache__`` beside the installed package, or under
``NUMBA_CACHE_DIR`` when set). On a fresh install that takes 15-25 s on 2 cores. Done
inside the first jobs, every worker would compile the same kernels at once, the
progress bar would sit at 0 and the compile time would count as job time. Instead the
runner compiles once in a separate process (the parent stays small) on a small crop of
the run's first frame, with the run's parameters, and prints one line while it does;
the workers then load the kernels from the cache.
"""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time

__all__ = ["cache_is_cold", "compile_kernels"]


def cache_is_cold() -> bool:
    """True when Numba's cache holds no kernel of this package yet (a first run)."""
    CACHE_DIR = os.environ.get("NUMBA_CACHE_DIR", "")  # what Numba reads; no import of Numba here
    if CACHE_DIR:
        return not glob.glob(os.path.join(CACHE_DIR, "**", "*.nbi"), recursive=True)
    stages = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "stages")
    return not glob.glob(os.path.join(stages, "__pycache__", "*.nbi"))  # where the kernels live


def _warm(first_file, multipage, params_list):  # runs in the helper process
    import numpy as np
    from ..core import depth_from_focus
    from ..stages.read import iter_frames
    frame = next(iter_frames([first_file], multipage))
    crop = np.ascontiguousarray(frame[:48, :48])
    for p in params_list:
        p = {k: v for k, v in p.items() if k not in ("align", "align_reference", "align_crop")}
        depth_from_focus([crop, crop[::-1].copy(), crop], prefetch=0, **p)
        # the aligned path's kernels (staged measure, warped compositing): auto, the default,
        # aligns most stacks. White noise of the frame's dtype and channels, moved by 1 px,
        # always registers (a crop of the frame may be flat)
        rng = np.random.default_rng(0)
        top = np.iinfo(crop.dtype).max if crop.dtype.kind in "ui" else 1.0
        tex = (rng.random((64, 64) + crop.shape[2:]) * top).astype(crop.dtype)
        depth_from_focus([tex, np.roll(tex, 1, axis=1), tex], prefetch=0, align="translation", **p)


def compile_kernels(first_file, multipage, params_list, out=sys.stdout, after=1.0):
    """Compile in a helper process; print a line if it takes longer than ``after`` seconds.

    Returns the seconds it took. A failure is not an error: the jobs compile as before.
    """
    code = ("import json, sys; from dffbatch.batch.warmup import _warm; "
            "_warm(sys.argv[1], sys.argv[2] == '1', json.loads(sys.argv[3]))")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, first_file, "1" if multipage else "0",
                             json.dumps(params_list, default=str)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=after)
        return time.perf_counter() - t0
    except subprocess.TimeoutExpired:
        pass
    print("dffbatch: compiling kernels (first run, about 40 s; cached for later runs)...", file=out, flush=True)
    proc.wait()
    took = time.perf_counter() - t0
    print(f"dffbatch: kernels compiled in {took:.0f} s", file=out, flush=True)
    return took
