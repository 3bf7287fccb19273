"""Alignment on the hand-held phone stacks: how well each model aligns, and what it does.

    python benchmarks/bench_align_phone.py

For balls/25 and keyboard/32 (1280x720 JPEG, ../shared/datasets/seed) and each
alignment model (none, translation, similarity, affine):

* residual: the median local misregistration of neighbouring frames after alignment
  (:func:`dffbatch.stages.align.residual_motion`, 4 x 3 tiles), mean and worst over the pairs,
  pixels -- how well the model follows the camera;
* sharpness: mean SML (window 9) of the all-in-focus image, change against none;
* depth total variation (mean absolute difference of neighbouring pixels) with the
  default path (median filter) and with ``refine: sgm``, change against none, on the
  aligned run's crop; and the same TV split into the halves of the image with less
  and more texture (local contrast of the all-in-focus image, 9 x 9).

A control row, ``misaligned``: the affine transforms with a random shift (std 1 px)
added to every frame but the reference -- deliberately worse alignment, to show which
of these figures reward alignment and which reward misregistration.

Takes about 2 minutes on 2 cores.
"""
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = os.path.join(os.path.dirname(ROOT), "shared", "datasets", "seed")
MODELS = ("none", "translation", "similarity", "affine", "misaligned")


def _gradient(d):
    g = np.zeros_like(d)
    g[:-1] += np.abs(np.diff(d, axis=0))
    g[:, :-1] += np.abs(np.diff(d, axis=1))
    return g


def main():
    sys.path.insert(0, ROOT)
    import glob

    import cv2
    from _common import given_alignment, shifted

    from dffbatch import depth_from_focus, focus_measure
    from dffbatch.stages.align import ESTIMATE_SIDE, residual_motion
    from dffbatch.stages.measure import luminance
    from dffbatch.stages.read import iter_previews, read_frame

    for name in ("balls/25", "keyboard/32"):
        files = sorted(glob.glob(os.path.join(SEED, name, "*.jpg")))
        if not files:
            print(f"{name}: skipped ({SEED} is absent)")
            continue
        frames = [read_frame(f) for f in files]

        def src():
            return iter(frames)
        src.preview = lambda: iter_previews(files, ESTIMATE_SIDE)
        runs = {}
        for model in MODELS[:-1]:
            r = depth_from_focus(src, align=model)
            s = depth_from_focus(src, align=model, refine="sgm")
            runs[model] = (r, s)
        # the control: the affine estimate, each frame but the reference shifted at random
        with given_alignment(shifted(runs["affine"][0].alignment, std=1.0)):
            runs["misaligned"] = (depth_from_focus(src, align="affine"),
                                  depth_from_focus(src, align="affine", refine="sgm"))
        # every figure on the crop of the tightest model, so the runs compare the same pixels
        crops = [runs[m][0].alignment.crop for m in MODELS[1:]]
        y0, y1 = max(c[0] for c in crops), min(c[1] for c in crops)
        x0, x1 = max(c[2] for c in crops), min(c[3] for c in crops)

        def view(img, model):
            if model == "none":
                return img[y0:y1, x0:x1]
            c = runs[model][0].alignment.crop
            return img[y0 - c[0]:y1 - c[0], x0 - c[2]:x1 - c[2]]

        L = luminance(view(runs["affine"][0].allfocus, "affine"))
        contrast = np.sqrt(cv2.blur((L - cv2.blur(L, (9, 9))) ** 2, (9, 9)))
        textured = contrast >= np.median(contrast)
        print(f"{name} ({len(files)} frames), crop {y1 - y0}x{x1 - x0}")
        print(f"  {'model':11} {'residual px':>16}  {'AiF SML':>8}  {'TV median':>17}  "
              f"{'TV flat/textured half':>24}  {'TV sgm':>17}")
        base = {}
        for model in MODELS:
            r, s = runs[model]
            res = residual_motion(iter(frames), r.alignment)
            sml = float(focus_measure(view(r.allfocus, model), "sml", 9).mean())
            d, ds = view(r.depth, model), view(s.depth, model)
            g = _gradient(d)
            tv, tvs = float(g.mean()), float(_gradient(ds).mean())
            flat, tex = float(g[~textured].mean()), float(g[textured].mean())
            if model == "none":
                base = dict(sml=sml, tv=tv, tvs=tvs, flat=flat, tex=tex)

            def rel(v, k):
                return "" if model == "none" else f" ({100 * (v / base[k] - 1):+.1f}%)"
            print(f"  {model:11} {np.mean(res):6.3f} / {np.max(res):5.3f} max  {sml:8.5f}{rel(sml, 'sml'):9}"
                  f" {tv:.4f}{rel(tv, 'tv'):9}  {flat:.3f}{rel(flat, 'flat'):9} / {tex:.3f}{rel(tex, 'tex'):9}"
                  f" {tvs:.4f}{rel(tvs, 'tvs'):9}", flush=True)


if __name__ == "__main__":
    main()
