"""Alignment cost per frame, as a share of the unaligned job time.

    python benchmarks/bench_align.py

On balls/25 and keyboard/32 (1280x720 JPEG) and focus_stack stack 2 (1080x1080 JPEG),
without and with ``align="similarity"``, alternated, median of 7, 2 Numba threads:

* the batch runner's job (``run_job``: decode, compute, write the outputs, plots; the
  aligned job also draws alignment.png) -- the job time the issue's target refers to;
* the bare ``depth_from_focus`` call from files (decode included, prefetch on).
"""
import glob
import os
import sys
import time

import numpy as np
from _common import timed

REPEATS = 7
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = os.path.join(os.path.dirname(ROOT), "shared", "datasets", "seed")


def main():
    sys.path.insert(0, ROOT)
    from dffbatch import depth_from_focus
    import tempfile

    import numba
    numba.set_num_threads(2)
    from dffbatch.batch.jobs import run_job
    from dffbatch.stages.align import ESTIMATE_SIDE
    from dffbatch.stages.read import iter_previews, read_frame
    tmp = tempfile.mkdtemp(prefix="bench_align_")
    sets = {"balls/25 (1280x720)": sorted(glob.glob(os.path.join(SEED, "balls/25/*.jpg"))),
            "keyboard/32 (1280x720)": sorted(glob.glob(os.path.join(SEED, "keyboard/32/*.jpg"))),
            "focus_stack 2 (1080x1080)": sorted(glob.glob(os.path.join(SEED, "focus_stack/2__*.jpg")))}
    for name, files in sets.items():
        if not files:
            print(f"{name}: skipped (absent)")
            continue

        def src():
            return (read_frame(f) for f in files)
        src.preview = lambda: iter_previews(files, ESTIMATE_SIDE)
        depth_from_focus(src, align="similarity")  # compile, page cache
        t_none, t_al = [], []
        for _ in range(REPEATS):
            t_none.append(timed(lambda: depth_from_focus(src, align="none")))
            t = time.perf_counter()
            r = depth_from_focus(src, align="similarity")
            t_al.append(time.perf_counter() - t)
        t0, best = float(np.median(t_none)), float(np.median(t_al))
        n = len(files)
        jobs = [_job(files, align, tmp) for align in ("none", "similarity")]
        run_job(jobs[1])
        times = [[], []]
        for _ in range(REPEATS):  # alternated, so that machine noise hits both alike
            for i, j in enumerate(jobs):
                times[i].append(run_job(j)["timings"]["total"])
        j0, j1 = (float(np.median(t)) for t in times)
        print(f"{name}: {n} frames\n"
              f"  job (runner):      unaligned {j0 / n * 1e3:5.1f} ms/frame, aligned {j1 / n * 1e3:5.1f} ms/frame: "
              f"{(j1 - j0) / j0 * 100:+.0f}% of the unaligned job time\n"
              f"  depth_from_focus:  unaligned {t0 / n * 1e3:5.1f} ms/frame, aligned {best / n * 1e3:5.1f} ms/frame: "
              f"{(best - t0) / t0 * 100:+.0f}% (estimation pass {r.timings['align'] / n * 1e3:.1f} ms/frame)")


def _job(files, align, tmp):
    from dffbatch.batch.config import _SECTIONS
    from dffbatch.core import DEFAULTS
    from dffbatch.batch.discover import Stack
    from dffbatch.batch.jobs import make_job
    folder = os.path.dirname(files[0])
    stack = Stack(id=os.path.basename(folder), files=list(files), layout="folder", root=folder)
    params = dict(DEFAULTS, align=align)
    return make_job(stack, params, align, tmp, dict(_SECTIONS["outputs"]))


if __name__ == "__main__":
    main()
