"""How close can an aligned all-in-focus image get to its unmoved twin? (issue 15)

    python benchmarks/aif_bound.py [--shape slant] [--size 256] [--frames 20]

Renders a breathing stack (0.3% magnification per frame) and its unmoved twin, then prints
the all-in-focus PSNR against the true sharp image for: the twin (never resampled), our
aligned result (align=similarity, compared on the region every frame covers), and an oracle
that takes the *true* in-focus frame of every pixel and samples it, registered, with our
Lanczos-3 kernel, a cubic and a quintic B-spline (scipy.ndimage.map_coordinates) and
OpenCV's Lanczos-4. The oracle's PSNR bounds what any method that resamples frames reaches.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="slant")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=20)
    a = ap.parse_args()
    import cv2
    from scipy import ndimage
    from dffbatch import depth_from_focus
    from dffbatch.stages.align import Warper
    from dffbatch.stages.composite import settle_warped
    from dffbatch.truth.metrics import psnr
    from dffbatch.truth.synth import render_stack
    S, N = a.size, a.frames
    fr, g, af, _ = render_stack(a.shape, "noise", (S, S), N, breathing=0.003, seed=6)
    ft, gt, aft, _ = render_stack(a.shape, "noise", (S, S), N, seed=6)
    r = depth_from_focus(fr, align="similarity", align_crop=True)
    y0, y1, x0, x1 = r.alignment.crop
    twin = depth_from_focus(ft)
    truth = af[y0:y1, x0:x1]
    print(f"{a.shape} {S}x{S}, {N} frames, breathing 0.3%/frame; PSNR of the all-in-focus image, dB")
    print(f"  twin (unmoved, never resampled)    {psnr(twin.allfocus[y0:y1, x0:x1], aft[y0:y1, x0:x1]):6.2f}")
    print(f"  ours (aligned, Lanczos-3)          {psnr(r.allfocus, truth):6.2f}")
    best = np.ascontiguousarray(np.clip(np.round(gt), 0, N - 1).astype(np.int32)[y0:y1, x0:x1])
    wp = Warper(r.alignment)
    ys, xs = np.mgrid[0:y1 - y0, 0:x1 - x0].astype(np.float64)
    out = np.zeros(truth.shape, np.uint8)
    stamp = np.full(best.shape, -1, np.int32)
    for k in range(N):
        M = np.ascontiguousarray(wp.matrix(k))
        z = np.zeros((1, 1), np.float32)
        settle_warped(fr[k], M, fr[k], M, fr[k], M, best, k, stamp, out, out, out, 0, True, 255.0, z, z, z, 0)
    print(f"  oracle, true frame, Lanczos-3      {psnr(out, truth):6.2f}")
    for order in (3, 5):
        acc = np.zeros(truth.shape)
        for k in range(N):
            m = best == k
            if m.any():
                M = wp.matrix(k)
                fx, fy = M[0, 0] * xs + M[0, 1] * ys + M[0, 2], M[1, 0] * xs + M[1, 1] * ys + M[1, 2]
                for c in range(3):
                    acc[..., c][m] = ndimage.map_coordinates(fr[k][..., c].astype(np.float64), [fy[m], fx[m]],
                                                             order=order, mode="mirror")
        print(f"  oracle, true frame, B-spline {order}     {psnr(np.clip(np.round(acc), 0, 255).astype(np.uint8), truth):6.2f}")
    for name, flag in (("Lanczos-4", cv2.INTER_LANCZOS4), ("bicubic", cv2.INTER_CUBIC), ("bilinear", cv2.INTER_LINEAR)):
        out2 = np.zeros(truth.shape, np.uint8)
        for k in range(N):
            w = cv2.warpAffine(fr[k], wp.matrix(k), (x1 - x0, y1 - y0), flags=flag | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REPLICATE)
            out2[best == k] = w[best == k]
        print(f"  oracle, true frame, cv2 {name:10} {psnr(out2, truth):6.2f}")

if __name__ == "__main__":
    main()
