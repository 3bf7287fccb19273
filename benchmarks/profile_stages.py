"""Where a default job's CPU time goes, stage by stage, per frame (issue 17's profile table).

    python benchmarks/profile_stages.py [--data DIR] [--stacks 100] [--align none|auto] [--root CHECKOUT]

Runs the stages of the batch job one stack after the other in one process, on one
Numba thread and without prefetching, so that each stage's time is its own CPU time:
decode (the files, as the runner reads them), then ``depth_from_focus`` with the
default parameters (its timings: align, measure, depth, composite, refine), then the
outputs the runner writes by default (``write_maps``), the report's images
(``write_views``) and the plots as the runner draws them (2-D, 3-D, and the motion plot
of an aligned stack). Prints milliseconds per frame and each stage's share. ``--root``
profiles another checkout of the package (e.g. an older commit in a ``git worktree``)
with this same script.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT = os.path.join(os.path.dirname(os.path.dirname(HERE)), "shared", "datasets", "seed", "focus_stack")
STAGES = ("decode", "align", "measure", "depth", "composite", "refine", "write", "views", "plots")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DEFAULT)
    ap.add_argument("--stacks", type=int, default=100)
    ap.add_argument("--align", default="none")
    ap.add_argument("--root", default=os.path.dirname(HERE))
    a = ap.parse_args()
    if not os.path.isdir(a.data):
        print(f"skipped: {a.data} is absent (../shared/datasets is not next to the project)")
        return
    sys.path.insert(0, os.path.abspath(a.root))
    import numba
    numba.set_num_threads(1)
    from dffbatch import depth_from_focus
    from dffbatch.batch.config import FORMATS_DEFAULT
    from dffbatch.batch.discover import discover
    from dffbatch.batch.jobs import write_maps
    from dffbatch.batch.jobs import _axis_top
    from dffbatch.report.plots import alignment_png, depth_2d_png, depth_3d_png
    from dffbatch.stages.read import read_frame
    from dffbatch.report.views import write_views
    import dffbatch
    stacks = discover({"path": a.data})[:a.stacks]
    outputs = {"formats": FORMATS_DEFAULT, "tiff_compression": "none"}
    tot = dict.fromkeys(STAGES, 0.0)
    n_frames = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, st in enumerate(stacks + stacks[:1]):  # the first stack twice: its first pass compiles
            t0 = time.perf_counter()
            frames = [read_frame(f) for f in st.files]
            t1 = time.perf_counter()
            src = frames
            if a.align != "none":
                from dffbatch.stages.align import ESTIMATE_SIDE
                from dffbatch.stages.read import iter_previews

                def src():
                    return iter(frames)
                src.preview = lambda: iter_previews(st.files, ESTIMATE_SIDE)
            r = depth_from_focus(src, prefetch=0, align=a.align)
            out = os.path.join(tmp, str(i))
            os.makedirs(out)
            t2 = time.perf_counter()
            write_maps(out, r, outputs, None, [])
            t3 = time.perf_counter()
            write_views(out, r.allfocus, r.depth, r.confidence, r.n_frames)
            t4 = time.perf_counter()
            # the plots as the runner draws them (jobs._write_plots): the 3-D axis from 0 to
            # the frames rounded up (one scaffold for stacks of nearby sizes), and the motion
            # plot of an aligned stack
            depth_2d_png(r.depth, st.id, confidence=r.confidence, near_low=True)
            depth_3d_png(r.depth, 48, st.id, zrange=(0, _axis_top(r.n_frames - 1)), confidence=r.confidence)
            al = r.alignment
            if al is not None and al.per_frame and al.applied:
                alignment_png(al.per_frame, st.id)
            t5 = time.perf_counter()
            if i == 0:
                continue
            n_frames += r.n_frames
            tot["decode"] += t1 - t0
            for k in ("align", "measure", "depth", "composite", "refine"):
                tot[k] += r.timings.get(k, 0.0)
            tot["write"] += t3 - t2
            tot["views"] += t4 - t3
            tot["plots"] += t5 - t4
    all_s = sum(tot.values())
    print(f"{dffbatch.__file__}: {len(stacks)} stacks, {n_frames} frames, align {a.align}, 1 thread, no prefetch")
    print(f"{'stage':12}{'ms/frame':>10}{'share':>8}")
    for k in STAGES:
        print(f"{k:12}{tot[k] / n_frames * 1000:>10.2f}{tot[k] / all_s:>8.1%}")
    print(f"{'all':12}{all_s / n_frames * 1000:>10.2f}   ({all_s:.2f} s of CPU; plots off: "
          f"{(all_s - tot['plots']) / n_frames * 1000:.2f} ms/frame)")


if __name__ == "__main__":
    main()
