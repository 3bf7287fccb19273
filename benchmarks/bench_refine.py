"""Cost of the refinement and fusion modes against the default path.

    python benchmarks/bench_refine.py [--size 1080] [--frames 12]

Compute only (frames in memory), 2 Numba threads, best of 2; also the traced peak
memory (tracemalloc) for 12 and 48 frames, to show which modes stay O(H*W).
"""
import argparse
import os
import sys
import tracemalloc

import numpy as np
from _common import timed

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1080)
    ap.add_argument("--frames", type=int, default=12)
    a = ap.parse_args()
    import numba
    numba.set_num_threads(2)
    from dffbatch import depth_from_focus
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (a.size, a.size, 3), dtype=np.uint8)
    frames = [np.roll(base, k, axis=1) for k in range(a.frames)]
    mp = a.frames * a.size * a.size / 1e6
    modes = {"default (wls, interpolate)": {}, "refine median": {"refine": "median"},
             "refine bilateral": {"refine": "bilateral"},
             "refine sgm": {"refine": "sgm"}, "composite pyramid": {"composite": "pyramid"}}
    print(f"{a.frames} frames of {a.size}x{a.size} RGB; MP-frames/s, extra ms per MP-frame, peak traced MB")
    ref = None
    for name, kw in modes.items():
        depth_from_focus(frames[:2], **kw)
        best = min(timed(lambda: depth_from_focus(frames, prefetch=0, **kw)) for _ in range(2))
        ref = best if ref is None else ref
        peaks = []
        for n in (12, 48):
            small = [np.roll(base[:256, :256], k, axis=1) for k in range(n)]
            tracemalloc.start()
            depth_from_focus(small, prefetch=0, **kw)
            peaks.append(tracemalloc.get_traced_memory()[1] / 2 ** 20)
            tracemalloc.stop()
        print(f"{name:<26}{mp / best:8.1f}{(best - ref) / mp * 1e3:+9.1f}   peak 256x256: 12 frames {peaks[0]:.1f} MB, "
              f"48 frames {peaks[1]:.1f} MB")


if __name__ == "__main__":
    main()
