"""Alignment accuracy on rendered focus breathing (issue 5's acceptance figures).

    python benchmarks/bench_align_accuracy.py [--size 512] [--frames 12] [--align similarity]

For each shape (slant, cone, terrain, sinusoid) and breathing b in {0.001, 0.004}
(per-frame magnification 1 + b*k about the middle frame, plus a random shift of
std 0.3 / 0.5 px), rendered with the project's renderer: the worst per-frame error of
the recovered scale and shift against the truth, and the depth RMSE after alignment
against the RMSE on the same scene rendered without breathing. Rendering takes about
20 s per 512 x 512 stack.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--align", default="similarity", choices=["similarity", "affine"])
    a = ap.parse_args()
    from dffbatch import depth_from_focus
    from dffbatch.stages.align import ESTIMATE_SIDE
    from dffbatch.truth.metrics import depth_metrics
    from dffbatch.truth.synth import render_stack
    size = (a.size, a.size)
    print(f"{a.size}x{a.size}, {a.frames} frames, align={a.align} (registration at {min(a.size, ESTIMATE_SIDE)} px)")
    worst = [0.0, 0.0, 0.0]
    for shape in ("slant", "cone", "terrain", "sinusoid"):
        f0, g0, _, _ = render_stack(shape, "noise", size, a.frames, seed=5)
        base = depth_metrics(depth_from_focus(f0, align="none").depth, g0)["rmse"]
        for b, shift in ((0.001, 0.3), (0.004, 0.5)):
            frames, g, _, meta = render_stack(shape, "noise", size, a.frames, breathing=b, shift=shift, seed=5)
            r = depth_from_focus(frames, align=a.align)
            al, truth = r.alignment, meta["transforms"]
            se = max(abs(p["scale"] - t["scale"]) for p, t in zip(al.per_frame, truth))
            sh = max(max(abs(p["shift_x"] - t["tx"]), abs(p["shift_y"] - t["ty"])) for p, t in zip(al.per_frame, truth))
            y0, y1, x0, x1 = al.crop
            rmse = depth_metrics(r.depth, g[y0:y1, x0:x1])["rmse"]
            ratio = rmse / base - 1
            worst = [max(worst[0], se), max(worst[1], sh), max(worst[2], ratio)]
            print(f"  {shape:9} b {b}: scale err {se:.1e}  shift err {sh:.2f} px  depth RMSE {rmse:.3f} vs "
                  f"{base:.3f} unmoved ({ratio:+.0%})", flush=True)
    print(f"worst: scale {worst[0]:.1e} (target 2e-4), shift {worst[1]:.2f} px (target 0.2), "
          f"RMSE {worst[2]:+.0%} (target +15%)")


if __name__ == "__main__":
    main()
