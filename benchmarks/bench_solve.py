"""The global depth solve (``refine: wls``, the default) against the previous default.

    python benchmarks/bench_solve.py [--size 256] [--frames 12] [--real N] [--stacks 4,5,33] [--montage out.png]

1. Renderer: the ``refine``, ``sweep``, ``flat``, ``bare`` and ``bare2`` suites
   (``dffbatch synth --suite``), each scene rendered in memory. Per scene class: mean
   (and worst) RMSE ratio of ``wls`` to the previous default (lapd / 9 / median 5), RMSE
   per texture region (textured / weak / flat), the sweep suite's mean RMSE, the AUSE
   of each default's confidence against its own depth errors, and the mean RMSE of
   ``wls`` without and with the fill stage that follows it.
2. Solvers on the same weights: the exact minimiser of the WLS energy (SciPy sparse
   direct solve) against the normalised Fast Global Smoother that ``wls`` runs.
3. Real stacks (if ../shared/datasets is present): on the focus_stack stacks with >= 8
   frames, the share of pixels more than 2 frames from the median of their 15 x 15
   neighbourhood (previous default, ``wls`` without its fill stage, ``wls``); a montage
   PNG of the stacks whose bare regions showed blotches (4, 5, 33, 80) and two more
   (all-in-focus, ``wls`` depth without the fill, with it, confidence) for a person to
   look at.
"""
import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SEED = os.path.join(os.path.dirname(ROOT), "shared", "datasets", "seed", "focus_stack")

from dffbatch import depth_from_focus  # noqa: E402
from dffbatch.truth.metrics import ause  # noqa: E402
from dffbatch.truth.synth import REGIONS, render_stack, texture_regions  # noqa: E402
from dffbatch.truth.synth_cli import SUITES  # noqa: E402

OLD = dict(refine="median")  # the previous default: lapd, window 9, gaussian, median 5


def _rmse(d, g, mask=None, b=8):
    e = (d.astype(np.float64) - g)[b:-b, b:-b]
    if mask is not None:
        e = e[mask[b:-b, b:-b]]
    return float(np.sqrt(np.mean(e ** 2))) if e.size else float("nan")


def _class(suite, name):
    if suite in ("flat", "bare"):
        return suite
    return "low-texture" if "lowtex" in name else "occlusion step" if name.startswith("step") else "smooth textured"


def _no_fill(frames):
    """The default depth without the fill stage that follows ``wls`` (dffbatch/stages/fill.py)."""
    import dffbatch.stages.plan as plan
    fill, plan.AFTER_REFINE = plan.AFTER_REFINE, {}
    try:
        return depth_from_focus(frames)
    finally:
        plan.AFTER_REFINE = fill


def renderer(size, frames):
    rows, sweep, fills = [], [], {}
    print(f"renderer: {size}x{size}, {frames} frames; RMSE in frames (previous default -> wls)")
    for suite in ("refine", "sweep", "flat", "bare", "bare2"):
        for name, (shape, tex, noise, seed) in SUITES[suite].items():
            fr, g, _, _ = render_stack(shape, tex, (size, size), frames, noise=noise, seed=seed)
            reg = texture_regions(tex, size, size, seed)
            a, b = depth_from_focus(fr, **OLD), depth_from_focus(fr)
            fills.setdefault(_class(suite.rstrip("2"), name), []).append((_rmse(_no_fill(fr).depth, g), _rmse(b.depth, g)))
            ra, rb = _rmse(a.depth, g), _rmse(b.depth, g)
            ua, ub = ause(np.abs(a.depth - g), a.confidence), ause(np.abs(b.depth - g), b.confidence)
            regs = " ".join(f"{REGIONS[r]} {_rmse(a.depth, g, reg == r):.3f}->{_rmse(b.depth, g, reg == r):.3f}"
                            for r in np.unique(reg))
            print(f"  {suite:6} {name:24} {ra:6.3f} -> {rb:6.3f} ({rb / ra - 1:+5.0%})  AUSE {ua:.3f} -> {ub:.3f}  {regs}")
            rows.append((_class(suite, name), rb / ra, ua, ub))
            if suite == "sweep":
                sweep.append((ra, rb))
    print("\nper class: mean (worst) RMSE ratio wls / previous default; mean AUSE previous -> wls")
    for c in ("low-texture", "flat", "bare", "occlusion step", "smooth textured"):
        v = [r for r in rows if r[0] == c]
        ratios = [r[1] for r in v]
        print(f"  {c:16} {np.mean(ratios):.3f} ({max(ratios):.3f})   AUSE {np.mean([r[2] for r in v]):.3f} -> "
              f"{np.mean([r[3] for r in v]):.3f}")
    s = np.array(sweep)
    print(f"  sweep suite mean RMSE: {s[:, 0].mean():.3f} -> {s[:, 1].mean():.3f} (previous best point there: sgm, 0.334)")
    print("\nthe fill stage after wls (dffbatch/stages/fill.py): mean RMSE per class, wls without it -> with it")
    for c, v in fills.items():
        v = np.array(v)
        print(f"  {c:16} {v[:, 0].mean():.4f} -> {v[:, 1].mean():.4f} ({v[:, 1].mean() / v[:, 0].mean() - 1:+.1%})")


def solvers(size, frames):
    """Exact WLS (sparse direct solve) against the normalised FGS, with the same weights."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as spl
    import dffbatch.stages.post as post
    from dffbatch.stages.solve import affinities, wls_solve
    print("\nsolvers on the evidence weights of the refine and flat suites: mean RMSE ratio to the previous default")
    keep = {}
    run = post.REFINERS["wls"].run

    def spy(m):
        keep["m"] = m
        return run(m)
    try:
        import cv2
        ximgproc = cv2.ximgproc
        cv2.setNumThreads(1)
    except (ImportError, AttributeError):
        ximgproc = None
        print("  cv2.ximgproc FGS: not compared here (it needs opencv-contrib-python-headless, which clashes with the "
              "project's opencv-python-headless: run this script in a separate venv with it)")
    res = {"exact WLS, lambda 1": [], "exact WLS, lambda 3": [], "normalised FGS (wls)": []}
    if ximgproc is not None:
        res["cv2.ximgproc FGS, lambda 100, sigma_color 2"] = []
    times = {k: 0.0 for k in res}
    post.REFINERS["wls"] = post.Refiner(spy, 100.0, "", frozenset({"coarse"}))
    try:
        for suite in ("refine", "flat"):
            for name, (shape, tex, noise, seed) in SUITES[suite].items():
                fr, g, _, _ = render_stack(shape, tex, (size, size), frames, noise=noise, seed=seed)
                base = _rmse(depth_from_focus(fr, **OLD).depth, g)
                depth_from_focus(fr)
                m = keep["m"]
                d = post.median_filter(m.raw, m.median)
                w = m.state.evidence(post.noise_floor(m.measure, m.window), post.WLS_POWER, post.WLS_END)
                ax, ay = np.empty_like(d), np.empty_like(d)
                affinities(m.guide(), np.float32(post.WLS_SIGMA), ax, ay)
                for lam in (1, 3):
                    t = time.perf_counter()
                    H, W = d.shape
                    idx = np.arange(H * W).reshape(H, W)
                    r = np.concatenate([idx[:, :-1].ravel(), idx[:-1].ravel()])
                    c = np.concatenate([idx[:, 1:].ravel(), idx[1:].ravel()])
                    v = lam * np.concatenate([ax[:, :-1].ravel(), ay[:-1].ravel()]).astype(np.float64)
                    A = sp.coo_matrix((-v, (r, c)), shape=(H * W,) * 2)
                    A = A + A.T
                    A = A + sp.diags(-np.asarray(A.sum(1)).ravel() + w.ravel() + 1e-4)
                    u = spl.spsolve(A.tocsc(), (w.ravel() + 1e-4) * d.ravel()).reshape(H, W)
                    times[f"exact WLS, lambda {lam}"] += time.perf_counter() - t
                    res[f"exact WLS, lambda {lam}"].append(_rmse(u, g) / base)
                if ximgproc is not None:  # the same normalised filter, with OpenCV's FGS
                    t = time.perf_counter()
                    g8 = np.clip(m.guide() * 255, 0, 255).astype(np.uint8)
                    a = ximgproc.fastGlobalSmootherFilter(g8, (w * d).astype(np.float32), 100.0, 2.0, 0.25, 3)
                    b = ximgproc.fastGlobalSmootherFilter(g8, w, 100.0, 2.0, 0.25, 3)
                    u = np.where(b > 1e-6, a / np.maximum(b, 1e-30), d)
                    times["cv2.ximgproc FGS, lambda 100, sigma_color 2"] += time.perf_counter() - t
                    res["cv2.ximgproc FGS, lambda 100, sigma_color 2"].append(_rmse(u, g) / base)
                t = time.perf_counter()
                u, _ = wls_solve(d, w, m.guide(), 100.0, post.WLS_SIGMA)
                times["normalised FGS (wls)"] += time.perf_counter() - t
                res["normalised FGS (wls)"].append(_rmse(u, g) / base)
    finally:
        post.REFINERS["wls"] = post.Refiner(run, 100.0, post.REFINERS["wls"].strength_doc, frozenset({"coarse"}))
    for k, v in res.items():
        print(f"  {k:44} {np.mean(v):.3f} (worst {max(v):.3f})  {times[k] / len(v) * 1e3:7.1f} ms per {size}^2 map"
              "  (fine scale only, no coarse evidence)")


def real(n_stacks, montage, only=None):
    if not os.path.isdir(SEED):
        print(f"\nreal stacks skipped: {SEED} is absent (../shared/datasets is not next to the project)")
        return
    from scipy.ndimage import median_filter as nd_median
    from dffbatch.batch.discover import discover
    from dffbatch.stages.read import read_frame
    import dffbatch.stages.plan as plan
    stacks = [s for s in discover({"path": SEED}) if len(s.files) >= 8
              and (not only or s.id.split("__")[-1] in only)][:n_stacks]
    print(f"\nreal: {len(stacks)} focus_stack stacks with >= 8 frames; share of pixels > 2 frames from their "
          "15x15 median (previous default -> wls without its fill -> wls)")
    shown = [f"focus_stack__{k}" for k in (4, 5, 33, 80, 7, 56)]
    tiles, worst = {}, 0.0
    for i, s in enumerate(stacks):
        frames = [read_frame(f) for f in s.files]
        fill, plan.AFTER_REFINE = plan.AFTER_REFINE, {}
        try:
            c = depth_from_focus(frames)
        finally:
            plan.AFTER_REFINE = fill
        a, b = depth_from_focus(frames, **OLD), depth_from_focus(frames)
        out = [float(np.mean(np.abs(r.depth - nd_median(r.depth, 15, mode="mirror")) > 2)) for r in (a, c, b)]
        worst = max(worst, out[2])
        print(f"  {s.id:32} {len(frames):3d} frames  {out[0]:6.2%} -> {out[1]:6.2%} -> {out[2]:6.2%}  "
              f"mean confidence {c.confidence.mean():.3f} -> {b.confidence.mean():.3f}")
        if montage and s.id in shown:
            tiles[s.id] = _tile(b.allfocus, c.depth, b.depth, b.confidence, len(frames))
    print(f"  worst after: {worst:.2%} (target <= 0.5%)")
    tiles = [tiles[k] for k in shown if k in tiles]
    if montage and tiles:
        import imageio.v3 as iio
        iio.imwrite(montage, np.concatenate(tiles, 0))
        print(f"  montage (rows: focus_stack {', '.join(k.split('__')[1] for k in shown)}; all-in-focus, wls depth "
              f"without the fill, with it, confidence): {montage}")


def _tile(allfocus, d_old, d_new, conf, n, side=270):
    from matplotlib import colormaps
    step = max(1, allfocus.shape[0] // side)
    cm = colormaps["viridis"]

    def col(d):
        return (cm(np.clip(d[::step, ::step] / (n - 1), 0, 1))[:, :, :3] * 255).astype(np.uint8)
    af = allfocus[::step, ::step]
    af = np.repeat(af[:, :, None], 3, 2) if af.ndim == 2 else af[:, :, :3]
    c = (np.clip(conf[::step, ::step], 0, 1) * 255).astype(np.uint8)
    return np.concatenate([af.astype(np.uint8), col(d_old), col(d_new), np.repeat(c[:, :, None], 3, 2)], 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--real", type=int, default=1000, help="at most this many real stacks")
    ap.add_argument("--montage", default="outputs/bench_solve_montage.png")
    ap.add_argument("--skip", nargs="*", default=[], choices=["renderer", "solvers", "real"])
    ap.add_argument("--stacks", help="only these focus_stack stacks (numbers, comma-separated)")
    a = ap.parse_args()
    import numba
    numba.set_num_threads(2)
    if "renderer" not in a.skip:
        renderer(a.size, a.frames)
    if "solvers" not in a.skip:
        solvers(a.size, a.frames)
    if "real" not in a.skip:
        os.makedirs(os.path.dirname(os.path.abspath(a.montage)), exist_ok=True)
        real(a.real, a.montage, a.stacks.split(",") if a.stacks else None)


if __name__ == "__main__":
    main()
