"""Residual motion on the real focus_stack stacks: does the default (auto) cut it where frames move?

    python benchmarks/bench_align_residual.py [--data DIR] [--stacks 100]

For each stack, ``align: auto`` is estimated from the 320-px previews; where it applies
alignment, :func:`dffbatch.stages.align.residual_motion` (the median tile misregistration of
neighbouring frames, full resolution) is measured without and with it. Prints the model
counts, and for the aligned stacks the residual before and after and how many it cut.
"""
import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
DEFAULT = os.path.join(os.path.dirname(os.path.dirname(HERE)), "shared", "datasets", "seed", "focus_stack")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DEFAULT)
    ap.add_argument("--stacks", type=int, default=100)
    a = ap.parse_args()
    if not os.path.isdir(a.data):
        print(f"skipped: {a.data} is absent (../shared/datasets is not next to the project)")
        return
    from dffbatch.stages.align import ESTIMATE_SIDE, estimate_alignment, residual_motion
    from dffbatch.batch.discover import discover
    from dffbatch.stages.read import iter_previews, read_frame
    models, before, after = {}, [], []
    for st in discover({"path": a.data})[:a.stacks]:
        s, shape, it = iter_previews(st.files, ESTIMATE_SIDE)
        al = estimate_alignment(it, "auto", frame_scale=s, full_shape=shape)
        models[al.model] = models.get(al.model, 0) + 1
        if al.applied:
            frames = [read_frame(f) for f in st.files]
            before.append(float(np.mean(residual_motion(iter(frames)))))
            after.append(float(np.mean(residual_motion(iter(frames), al))))
    b, f = np.array(before), np.array(after)
    print(f"auto chose: {models}")
    if len(b):
        print(f"aligned stacks: {len(b)}; mean residual {b.mean():.3f} -> {f.mean():.3f} px "
              f"(median {np.median(b):.3f} -> {np.median(f):.3f}); cut on {(f < b).sum()} of {len(b)}, "
              f"worst change {np.max(f - b):+.3f} px")


if __name__ == "__main__":
    main()
