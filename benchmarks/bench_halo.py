"""All-in-focus at occlusion edges: the composites ranked on ground truth, real crops, cost.

    python benchmarks/bench_halo.py [--size 256] [--frames 12] [--out halo.png] [--skip-real] [--skip-cost]

1. Renderer (exact ground truth): the ``halo`` suite (a bright, weakly textured leaf and
   a thin stem far in front of a dark, textured background, blurred by 13 px at the far
   end, clean and noisy; a wide-blur step) and the ``sweep``, ``refine`` and ``flat``
   suites. Per scene and composite: whole-image all-in-focus PSNR, PSNR within 30 px of
   the depth jumps (``aif_band_psnr``), and depth RMSE (the default ``wls`` solve is
   guided by the all-in-focus image, so the composite can move the depth too). A
   control: the best single frame's PSNR, and the per-pixel oracle (each pixel from
   the frame nearest the truth), the bound of any per-pixel choice.
2. Real stacks (``../shared/datasets``): a montage PNG of crops at occlusion edges of
   focus_stack 56, 1, 7, 27 and balls/25, for ``hybrid`` (the default), ``interpolate``
   (the previous default) and ``pyramid``; each crop is centred where ``hybrid`` and
   ``interpolate`` differ most.
3. Cost on one 1080 x 1080 RGB stack (focus_stack 56), one thread: the hybrid stage's
   seconds per frame against the old float64 pyramid's update, and the tracemalloc
   peak of 12 against 48 frames.
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SEED = os.path.join(os.path.dirname(ROOT), "shared", "datasets", "seed")
COMPOSITES = ("select", "interpolate", "hybrid", "pyramid")


def renderer(size, n):
    from dffbatch import depth_from_focus
    from dffbatch.truth.metrics import band_psnr, depth_metrics, psnr
    from dffbatch.truth.synth import render_stack
    from dffbatch.truth.synth_cli import SUITE_RENDER, SUITES
    print(f"renderer: {size}x{size}, {n} frames; whole-image PSNR / PSNR within 30 px of depth jumps (dB), "
          "depth RMSE (frames)")
    print(f"{'scene':26} " + "  ".join(f"{c:>22}" for c in COMPOSITES) + "   best frame / oracle")
    worst = {}
    for suite in ("halo", "sweep", "refine", "flat"):
        for name, (shape, tex, noise, seed) in SUITES[suite].items():
            fr, g, af, _ = render_stack(shape, tex, (size, size), n, noise=noise, seed=seed,
                                        **SUITE_RENDER.get(suite, {}))
            cells, vals = [], {}
            for c in COMPOSITES:
                r = depth_from_focus(fr, composite=c, align="none")
                vals[c] = (psnr(r.allfocus, af), band_psnr(r.allfocus, af, g), depth_metrics(r.depth, g)["rmse"])
                p, b, e = vals[c]
                cells.append(f"{p:6.2f}/{'  -  ' if np.isnan(b) else f'{b:5.2f}'} {e:5.3f}")
            err = np.stack([np.abs(f.astype(np.float64) - af).sum(2) for f in fr])
            oracle = np.take_along_axis(np.stack(fr), err.argmin(0)[None, ..., None], 0)[0]
            print(f"{suite + '/' + name:26} " + "  ".join(f"{x:>22}" for x in cells)
                  + f"   {max(psnr(f, af) for f in fr):5.2f} / {psnr(oracle, af):5.2f}", flush=True)
            dp = vals["hybrid"][0] - vals["interpolate"][0]
            db = vals["hybrid"][1] - vals["interpolate"][1]
            de = vals["hybrid"][2] / vals["interpolate"][2] - 1
            worst[f"{suite}/{name}"] = (dp, db, de)
    print("hybrid against interpolate (whole dB, band dB, depth RMSE):")
    for k, (dp, db, de) in worst.items():
        print(f"  {k:26} {dp:+6.2f} {'' if np.isnan(db) else f'{db:+6.2f}':>7} {de:+7.1%}")
    others = [v[0] for k, v in worst.items() if not k.startswith("halo/leaf")]
    print(f"  worst whole-image change on the other scenes: {min(others):+.2f} dB")


def _stack(path_glob):
    key = lambda p: int(re.search(r"(\d+)\.\w+$", p).group(1))  # noqa: E731
    return sorted(glob.glob(path_glob), key=key)


def real(out, side=320):
    from PIL import Image, ImageDraw
    from dffbatch import depth_from_focus
    from dffbatch.stages.read import read_frame
    stacks = [(f"focus_stack {i}", os.path.join(SEED, "focus_stack", f"{i}__refocus_*.jpg")) for i in (56, 1, 7, 27)]
    stacks.append(("balls/25", os.path.join(SEED, "balls", "25", "*.jpg")))
    rows = []
    for name, pattern in stacks:
        files = _stack(pattern)
        if not files:
            print(f"real: {pattern} absent, skipped")
            continue
        frames = [read_frame(f) for f in files]
        imgs = {c: depth_from_focus(frames, composite=c).allfocus for c in ("hybrid", "interpolate", "pyramid")}
        d = np.abs(imgs["hybrid"].astype(np.float64) - imgs["interpolate"]).sum(2)
        H, W = d.shape
        s = min(side, H, W)
        k = np.ones(s // 4) / (s // 4)  # where the two differ most, on a smooth map
        dm = np.apply_along_axis(lambda r: np.convolve(r, k, "same"), 1, d)
        dm = np.apply_along_axis(lambda c: np.convolve(c, k, "same"), 0, dm)
        y, x = np.unravel_index(np.argmax(dm), dm.shape)
        y0, x0 = int(np.clip(y - s // 2, 0, H - s)), int(np.clip(x - s // 2, 0, W - s))
        rows.append((name, (y0, x0, s), [imgs[c][y0:y0 + s, x0:x0 + s] for c in ("hybrid", "interpolate", "pyramid")]))
        print(f"real: {name}: crop {s} px at ({x0}, {y0}); mean |hybrid - interpolate| there "
              f"{d[y0:y0 + s, x0:x0 + s].mean() / 3:.2f}, whole {d.mean() / 3:.2f}")
    if not rows:
        return
    pad, label = 8, 22
    canvas = Image.new("RGB", (3 * side + 4 * pad, len(rows) * (side + label + pad) + label + pad), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for j, c in enumerate(("hybrid (new default)", "interpolate (previous default)", "pyramid")):
        draw.text((pad + j * (side + pad), 4), c, fill=(0, 0, 0))
    for i, (name, (y0, x0, s), crops) in enumerate(rows):
        top = label + i * (side + label + pad)
        draw.text((pad, top + 2), f"{name}: crop at x {x0}, y {y0}", fill=(0, 0, 0))
        for j, c in enumerate(crops):
            im = Image.fromarray(c if c.ndim == 3 else np.repeat(c[:, :, None], 3, 2)).resize((side, side))
            canvas.paste(im, (pad + j * (side + pad), top + label))
    canvas.save(out)
    print(f"real: montage written to {out}")


def cost():
    import numba
    import tracemalloc
    from dffbatch import depth_from_focus
    from dffbatch.stages.fusion import PyramidFusion
    from dffbatch.stages.measure import focus_measure
    from dffbatch.stages.read import read_frame
    files = _stack(os.path.join(SEED, "focus_stack", "56__refocus_*.jpg"))
    if not files:
        print("cost: focus_stack 56 absent, skipped")
        return
    numba.set_num_threads(1)
    frames = [read_frame(f) for f in files]
    n = len(frames)
    per = {}
    for c in ("interpolate", "hybrid") * 2:
        ts = [depth_from_focus(frames, composite=c, align="none", prefetch=0).timings for _ in range(3)]
        per[c] = min(sum(t.values()) for t in ts) / n, min(t["composite"] for t in ts) / n
    F = focus_measure(frames[0], "lapd", 9)
    pf = PyramidFusion(frames[0].shape, frames[0].dtype)
    t = time.perf_counter()
    for f in frames[:3]:
        pf.update(f, F)
    old = (time.perf_counter() - t) / 3
    extra = per["hybrid"][0] - per["interpolate"][0]
    print(f"cost, 1080x1080 RGB, 1 thread: library call interpolate {1000 * per['interpolate'][0]:.1f} ms/frame, "
          f"hybrid {1000 * per['hybrid'][0]:.1f} ms/frame (+{1000 * extra:.1f}; its composite stage "
          f"{1000 * per['hybrid'][1]:.1f} ms/frame with the end-of-stack work); old pyramid update "
          f"{1000 * old:.0f} ms/frame: {old / per['hybrid'][1]:.0f}x the hybrid stage")
    small = [np.ascontiguousarray(f[:256, :256]) for f in frames]
    peaks = {}
    for m in (12, 48):
        stream = (small[k % n] for k in range(m))
        tracemalloc.start()
        depth_from_focus(stream, composite="hybrid", align="none")
        peaks[m] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    print(f"memory, 256x256 RGB, hybrid: tracemalloc peak {peaks[12] / 2**20:.1f} MB at 12 frames, "
          f"{peaks[48] / 2**20:.1f} MB at 48")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--out", default="halo_montage.png")
    ap.add_argument("--skip-renderer", action="store_true")
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--skip-cost", action="store_true")
    a = ap.parse_args()
    if not a.skip_renderer:
        renderer(a.size, a.frames)
    if not os.path.isdir(SEED):
        print(f"skipped real stacks and cost: {SEED} is absent (../shared/datasets is not next to the project)")
        return
    if not a.skip_real:
        real(a.out)
    if not a.skip_cost:
        cost()


if __name__ == "__main__":
    main()
