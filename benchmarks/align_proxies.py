"""Do the no-ground-truth figures of issue 5 follow the truth? Rendered hand-held stacks.

    python benchmarks/align_proxies.py [--size 384]

The phone stacks have no ground truth, so issue 5 judges alignment on them by proxies:
the all-in-focus image's mean focus measure (SML) and the depth map's total variation
(TV). Here the project's renderer makes stacks that move like the phone stacks
(breathing 0.002 per frame, random shift std 0.7 px, shear and vertical stretch std
0.003), saved as JPEG at IJG quality 75 (the phone stacks' quantisation tables), with
ground truth. For none / similarity / affine and a deliberately misaligned control
(the affine transforms plus a random shift of std 1 px per frame), on the crop common
to all: all-in-focus PSNR against the truth, its mean SML (window 9), depth RMSE
against the truth, and depth TV. About 1.5 minutes on 2 cores.
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
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def _tv(d):
    return float(np.abs(np.diff(d, axis=0)).mean() + np.abs(np.diff(d, axis=1)).mean())


def _psnr(a, b):
    return 10 * np.log10(255.0 ** 2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=384)
    a = ap.parse_args()
    from _common import given_alignment, shifted
    from dffbatch import depth_from_focus, focus_measure
    from dffbatch.truth.metrics import depth_metrics
    from dffbatch.truth.synth import render_stack

    print(f"{a.size}x{a.size}, 12 frames, JPEG q75; breathing 0.002, shift 0.7 px, distort 0.003")
    print(f"  {'scene':16} {'model':11} {'AiF PSNR':>9} {'AiF SML':>8} {'depth RMSE':>10} {'depth TV':>9}")
    for shape, tex in (("terrain", "noise"), ("sinusoid", "noise"), ("step", "lowtex")):
        frames, g, gaf, _ = render_stack(shape, tex, (a.size, a.size), 12, noise=0.01, breathing=0.002,
                                         shift=0.7, seed=5, distort=0.003)
        frames = [_jpeg(f) for f in frames]
        runs = {"none": depth_from_focus(frames), "similarity": depth_from_focus(frames, align="similarity"),
                "affine": depth_from_focus(frames, align="affine")}
        with given_alignment(shifted(runs["affine"].alignment, std=1.0)):
            runs["misaligned"] = depth_from_focus(frames, align="affine")
        crops = [r.alignment.crop for r in runs.values() if r.alignment is not None]
        y0, y1 = max(c[0] for c in crops), min(c[1] for c in crops)
        x0, x1 = max(c[2] for c in crops), min(c[3] for c in crops)
        for model, r in runs.items():
            c = r.alignment.crop if r.alignment is not None else (0, 0, 0, 0)

            def view(img):
                return img[y0 - c[0]:y1 - c[0], x0 - c[2]:x1 - c[2]]
            af, d = view(r.allfocus), view(r.depth)
            print(f"  {shape + ' ' + tex:16} {model:11} {_psnr(af, gaf[y0:y1, x0:x1]):6.2f} dB "
                  f"{focus_measure(af, 'sml', 9).mean():8.4f} {depth_metrics(d, g[y0:y1, x0:x1])['rmse']:10.3f} "
                  f"{_tv(d):9.4f}", flush=True)


if __name__ == "__main__":
    main()
