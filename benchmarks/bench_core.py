"""Compute-only throughput of the core engine (frames already decoded in memory).

    python benchmarks/bench_core.py [--frames 12] [--size 1080] [--repeat 3]

Prints MP-frames/s (megapixels x frames per second) for every focus measure with
depth + all-in-focus + median (``refine: median``, the method the NumPy version
implements), on 1 and 2 Numba threads (each in its own process), and the package
default (``refine: wls``). Like is compared with like: the vectorised NumPy/SciPy
implementation (whole focus volume in memory, one thread) computes ``sml`` only, so
the "x numpy" ratio is given for ``sml`` on 1 thread against it, both best of
``--repeat``.

Then the default library call (2 Numba threads, as a 2-core machine runs it) against
the NumPy reference **in the same process**, the two alternated ``--ratio-repeat``
times, best of each: the figure issue 33 asks for. (Alternated in one process because
the machine's speed drifts by several percent from one process to the next.) Last, the
first-call JIT compile time and the start-up time of a second process that loads the
kernels from Numba's on-disk cache.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
# this checkout, not whatever copy of dffbatch is installed (children import it too)
sys.path.insert(0, os.path.dirname(HERE))
#: Both implementations run with the package defaults' window and median.
WINDOW, MEDIAN = 9, 5


def make_stack(n, size, seed=0):
    """A cheap synthetic stack: texture blended with its blur by per-pixel defocus."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (size, size, 3)).astype(np.float32)
    k = 9
    blur = base.copy()
    for ax in (0, 1):  # separable box blur
        c = np.cumsum(np.pad(blur, [(k, k) if a == ax else (0, 0) for a in range(3)], mode="edge"), axis=ax)
        blur = (np.take(c, range(2 * k, c.shape[ax]), axis=ax) - np.take(c, range(0, c.shape[ax] - 2 * k), axis=ax)) / (2 * k)
    g = np.linspace(0, n - 1, size)[None, :, None]
    frames = []
    for i in range(n):
        w = np.clip(np.abs(i - g) / 3.0, 0, 1)
        frames.append(((1 - w) * base + w * blur).astype(np.uint8))
    return frames


def numpy_dff(frames, window=9, median=5):
    """Vectorised NumPy/SciPy version of the same method (whole volume in memory):
    sml, Gaussian sub-frame depth, interpolated all-in-focus, median."""
    from scipy import ndimage
    st = np.stack(frames)
    grey = st.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255.0
    F = np.empty(grey.shape, np.float32)
    for i, I in enumerate(grey):
        ml = np.abs(ndimage.convolve1d(I, [-1, 2, -1], axis=0, mode="mirror")) + \
            np.abs(ndimage.convolve1d(I, [-1, 2, -1], axis=1, mode="mirror"))
        F[i] = ndimage.uniform_filter(ml, window, mode="mirror") * window * window
    n = len(frames)
    best = F.argmax(0)
    f0 = np.take_along_axis(F, best[None], 0)[0]
    fm = np.take_along_axis(F, np.clip(best - 1, 0, n - 1)[None], 0)[0]
    fp = np.take_along_axis(F, np.clip(best + 1, 0, n - 1)[None], 0)[0]
    with np.errstate(all="ignore"):
        lm, l0, lp = (np.log(np.maximum(v, 1e-30)) for v in (fm, f0, fp))
        den = lm - 2 * l0 + lp
        off = np.nan_to_num(np.where(den < 0, 0.5 * (lm - lp) / den, 0))
    raw = np.clip(best + np.where((best > 0) & (best < n - 1), np.clip(off, -0.5, 0.5), 0), 0, n - 1)
    lo = np.floor(raw).astype(int)
    t = (raw - lo)[..., None]
    a = np.take_along_axis(st, lo[None, :, :, None], 0)[0].astype(np.float32)
    b = np.take_along_axis(st, np.minimum(lo + 1, n - 1)[None, :, :, None], 0)[0].astype(np.float32)
    allfocus = np.rint((1 - t) * a + t * b).astype(st.dtype)
    depth = raw
    depth = ndimage.median_filter(depth, median, mode="mirror") if median > 1 else depth
    return depth, allfocus


def child(threads, n, size, repeat, measures):
    import numba
    numba.set_num_threads(threads)
    from dffbatch import depth_from_focus
    frames = make_stack(n, size)
    mp = n * size * size / 1e6
    out = {}
    for m in measures:
        kw = dict(measure=m, window=WINDOW, median=MEDIAN, interpolation="gaussian", composite="interpolate",
                  refine="median", prefetch=0)
        depth_from_focus(frames[:2], **kw)  # compile / load
        best = min(_timed(lambda: depth_from_focus(frames, **kw)) for _ in range(repeat))
        out[m] = mp / best
    depth_from_focus(frames[:2], prefetch=0)
    out["default (wls)"] = mp / min(_timed(lambda: depth_from_focus(frames, prefetch=0)) for _ in range(repeat))
    if threads == 1:
        best = min(_timed(lambda: numpy_dff(frames, WINDOW, MEDIAN)) for _ in range(repeat))
        out["numpy-scipy sml"] = mp / best
    print(json.dumps(out))


def ratio_child(threads, n, size, repeat):
    """The default call and the NumPy reference alternated in this process: best of each, seconds."""
    import numba
    numba.set_num_threads(threads)
    from dffbatch import depth_from_focus
    frames = make_stack(n, size)
    depth_from_focus(frames, prefetch=0)  # compile / load, and the first call's allocations
    numpy_dff(frames, WINDOW, MEDIAN)
    ours, ref = [], []
    for _ in range(repeat):
        ref.append(_timed(lambda: numpy_dff(frames, WINDOW, MEDIAN)))
        ours.append(_timed(lambda: depth_from_focus(frames, prefetch=0)))
    print(json.dumps({"default": min(ours), "numpy": min(ref), "default_all": ours, "numpy_all": ref}))


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def startup(cache_dir):
    code = (f"import sys; sys.path.insert(0, {os.path.dirname(HERE)!r}); "
            "import time; t=time.perf_counter(); import numpy as np; from dffbatch import depth_from_focus; "
            "depth_from_focus([np.zeros((64,64,3),np.uint8)]*3); print(time.perf_counter()-t)")
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--size", type=int, default=1080)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ratio-repeat", type=int, default=7)
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--ratio-child", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    from dffbatch import MEASURES
    if a.child:
        return child(a.child, a.frames, a.size, a.repeat, MEASURES)
    if a.ratio_child:
        return ratio_child(a.ratio_child, a.frames, a.size, a.ratio_repeat)
    print(f"stack: {a.frames} frames of {a.size}x{a.size} RGB uint8, in memory; "
          f"window {WINDOW}, gaussian, median {MEDIAN}, interpolate (the package defaults but the measure); "
          f"best of {a.repeat}")
    res = {}
    for t in (1, 2):
        r = subprocess.run([sys.executable, __file__, "--child", str(t), "--frames", str(a.frames),
                            "--size", str(a.size), "--repeat", str(a.repeat)],
                           capture_output=True, text=True, check=True)
        res[t] = json.loads(r.stdout.strip().splitlines()[-1])
    np_rate = res[1].pop("numpy-scipy sml")
    print(f"{'measure':<14}{'1 thread':>12}{'2 threads':>12}   (MP-frames/s)")
    for m in [*MEASURES, "default (wls)"]:
        print(f"{m:<14}{res[1][m]:>12.1f}{res[2][m]:>12.1f}")
    print(f"numpy/scipy sml (whole volume, 1 thread): {np_rate:.1f}; sml on 1 Numba thread is "
          f"{res[1]['sml'] / np_rate:.1f}x that")
    r = subprocess.run([sys.executable, __file__, "--ratio-child", "2", "--frames", str(a.frames),
                        "--size", str(a.size), "--ratio-repeat", str(a.ratio_repeat)],
                       capture_output=True, text=True, check=True)
    rr = json.loads(r.stdout.strip().splitlines()[-1])
    mp = a.frames * a.size * a.size / 1e6
    print(f"default library call (2 threads) against the NumPy reference, one process, alternated "
          f"{a.ratio_repeat} times, best of each: {rr['default'] * 1000:.0f} ms ({mp / rr['default']:.1f}) "
          f"against {rr['numpy'] * 1000:.0f} ms ({mp / rr['numpy']:.1f}): "
          f"{rr['numpy'] / rr['default']:.2f}x")
    with tempfile.TemporaryDirectory() as cache:
        cold = startup(cache)
        warm = startup(cache)
    print(f"import + first call, empty Numba cache (JIT compile): {cold:.1f} s")
    print(f"import + first call, second process (cached kernels): {warm:.2f} s")


if __name__ == "__main__":
    main()
