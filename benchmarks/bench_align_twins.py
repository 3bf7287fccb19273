"""Alignment judged on ground truth: moving rendered stacks against their unmoved twins (issue 15).

    python benchmarks/bench_align_twins.py [--size 512] [--frames 20] [--shapes slant,terrain,step]

For each shape, three renders with the same scene and seed: the unmoved twin, a breathing
stack (0.3% magnification per frame) and a hand-held JPEG stack (shift std 0.7 px, shear and
stretch std 0.003, saved at IJG quality 75, as the twin is for it). Each runs with
``align: none`` and with the default (``auto``). Printed per row: the model auto chose, its
largest corner motion, all-in-focus PSNR against the true sharp image and depth RMSE against
the true depth, both on the region every frame covers less 8 px, and for the twin whether
auto's outputs are byte-identical to none's. ``step`` (a near rectangle over a far plane) is
the case where blur that grows around an outline can pass for breathing.
"""
import argparse
import io
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _jpeg(img, quality=75):
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--shapes", default="slant,terrain,step")
    a = ap.parse_args()
    from dffbatch import depth_from_focus
    from dffbatch.truth.metrics import psnr
    from dffbatch.truth.synth import render_stack
    n, size = a.frames, (a.size, a.size)
    print(f"{a.size}x{a.size}, {n} frames; PSNR dB / RMSE frames on the common region less 8 px")
    print(f"{'shape':8} {'stack':10} {'auto chose':22} {'PSNR none':>9} {'PSNR auto':>9} {'twin':>6} "
          f"{'RMSE none':>9} {'RMSE auto':>9} {'twin':>6}")
    for shape in a.shapes.split(","):
        twin, g, af, _ = render_stack(shape, "noise", size, n, seed=0)
        variants = {"breathing": (render_stack(shape, "noise", size, n, breathing=0.003, seed=0)[0], twin),
                    "hand-held": ([_jpeg(f) for f in render_stack(shape, "noise", size, n, shift=0.7,
                                                                   distort=0.003, seed=0)[0]],
                                  [_jpeg(f) for f in twin])}
        for name, (frames, tw) in variants.items():
            res = {al: depth_from_focus(frames, align=al) for al in ("none", "auto")}
            tn, ta = depth_from_focus(tw, align="none"), depth_from_focus(tw, align="auto")
            al = res["auto"].alignment
            y0, y1, x0, x1 = al.common if al.applied else (0, a.size, 0, a.size)
            y0, y1, x0, x1 = y0 + 8, y1 - 8, x0 + 8, x1 - 8

            def p(r):
                return psnr(r.allfocus[y0:y1, x0:x1], af[y0:y1, x0:x1])

            def e(r):
                return float(np.sqrt(np.mean((r.depth[y0:y1, x0:x1] - g[y0:y1, x0:x1]) ** 2)))
            same = all(np.array_equal(getattr(tn, k), getattr(ta, k)) for k in ("depth", "confidence", "allfocus"))
            chose = f"{al.model} {al.max_motion:.2f} px"
            print(f"{shape:8} {name:10} {chose:22} {p(res['none']):9.2f} {p(res['auto']):9.2f} {p(tn):6.2f} "
                  f"{e(res['none']):9.3f} {e(res['auto']):9.3f} {e(tn):6.3f}"
                  f"   twin: auto {ta.alignment.model} ({ta.alignment.max_motion:.2f} px), "
                  f"{'same bytes as none' if same else 'DIFFERS from none'}")


if __name__ == "__main__":
    main()
