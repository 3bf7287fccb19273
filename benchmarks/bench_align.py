"""Alignment cost per frame, as a share of the unaligned job time.

    python benchmarks/bench_align.py

On balls/25 and keyboard/32 (1280x720 JPEG) and focus_stack stack 2 (1080x1080 JPEG):
the same run of ``depth_from_focus`` from files (decode included, prefetch on, 2 Numba
threads) without and with ``align="similarity"``; best of 3.
"""
import glob
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = os.path.join(os.path.dirname(ROOT), "shared", "datasets", "seed")


def main():
    sys.path.insert(0, ROOT)
    from dffbatch import depth_from_focus
    from dffbatch.read import iter_previews, read_frame
    sets = {"balls/25 (1280x720)": sorted(glob.glob(os.path.join(SEED, "balls/25/*.jpg"))),
            "keyboard/32 (1280x720)": sorted(glob.glob(os.path.join(SEED, "keyboard/32/*.jpg"))),
            "focus_stack 2 (1080x1080)": sorted(glob.glob(os.path.join(SEED, "focus_stack/2__*.jpg")))}
    for name, files in sets.items():
        if not files:
            print(f"{name}: skipped (absent)")
            continue

        def src():
            return (read_frame(f) for f in files)
        src.preview = lambda: iter_previews(files)
        depth_from_focus(src, align="similarity")  # compile, page cache
        t0 = min(_t(lambda: depth_from_focus(src)) for _ in range(3))
        best = None
        for _ in range(3):
            t = time.perf_counter()
            r = depth_from_focus(src, align="similarity")
            dt = time.perf_counter() - t
            best = min(best or dt, dt)
        n = len(files)
        print(f"{name}: {n} frames; unaligned {t0 / n * 1e3:.1f} ms/frame, aligned {best / n * 1e3:.1f} ms/frame "
              f"(+{(best - t0) / t0 * 100:.0f}% of the unaligned time; estimation pass "
              f"{r.timings['align'] / n * 1e3:.1f} ms/frame)")


def _t(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
