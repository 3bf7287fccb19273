"""How much any all-in-focus fusion can gain over ``select`` on the occlusion step.

    python -m dffbatch synth --suite refine outputs/refine_scenes --size 256 256 --frames 12
    python benchmarks/fusion_bound.py [outputs/refine_scenes]

On the step scenes the all-in-focus error sits in a band a few pixels wide beside the
occluding edge, where every frame mixes the sharp background with the blurred near
surface. For each band of equal signed distance to the edge this fits the best
non-negative blend of the frames *against the ground truth* (scipy's NNLS): one set of
frame weights per band, shared by every pixel of the band. It bounds fusions that
weight frames the same way along the edge (one weight set per distance); a fusion
whose weights vary from pixel to pixel within a band (pyramid fusion does) is not
bounded by it. The per-pixel oracle (each pixel from the frame closest to the truth:
needs the truth, so it is a reference, not a method) is the figure that no frame-
selecting fusion can beat.
"""
import glob
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(root="outputs/refine_scenes"):
    import imageio.v3 as iio
    from scipy import ndimage as ndi
    from scipy.optimize import nnls

    from dffbatch import depth_from_focus
    from dffbatch.truth.metrics import psnr
    from dffbatch.truth.synth import surface_segments
    for scene in ("step-checker-clean", "step-checker-noisy", "step-lowtex-clean", "step-lowtex-noisy"):
        d = os.path.join(root, scene)
        files = sorted(glob.glob(os.path.join(d, "frame_*.png")))
        if not files:
            print(f"{scene}: absent (render the suite first)")
            continue
        frames = [iio.imread(f) for f in files]
        gt = iio.imread(os.path.join(d, "gt_allfocus.png"))
        F, G = np.stack(frames).astype(np.float64), gt.astype(np.float64)
        sel = depth_from_focus(frames, composite="select").allfocus
        pyr = depth_from_focus(frames, composite="pyramid").allfocus
        H, W = gt.shape[:2]
        seg = surface_segments("step", H, W)
        sd = np.round(ndi.distance_transform_edt(seg == 0) - ndi.distance_transform_edt(seg == 1)).astype(int)
        err = ((F - G) ** 2).sum(-1)
        oracle = np.take_along_axis(F, err.argmin(0)[None, ..., None].repeat(3, -1), 0)[0]
        blend = sel.astype(np.float64)
        for s in range(-12, 13):  # the band where the edge matters; elsewhere keep select
            m = sd == s
            if s == 0 or not m.any():
                continue
            A = F[:, m, :].reshape(len(frames), -1).T
            w, _ = nnls(A, G[m].ravel())
            blend[m] = (A @ w).reshape(-1, 3)
        q = lambda a: np.clip(np.rint(a), 0, 255).astype(np.uint8)  # noqa: E731
        s0 = psnr(sel, gt)
        print(f"{scene:20} select {s0:.2f}  pyramid {psnr(pyr, gt) - s0:+.2f}  best blend per band (one weight set a band) "
              f"{psnr(q(blend), gt) - s0:+.2f}  per-pixel oracle {psnr(q(oracle), gt) - s0:+.2f} dB")


if __name__ == "__main__":
    main(*sys.argv[1:])
