"""``dffbatch synth OUT [options]``: render one synthetic stack with ground truth."""
from __future__ import annotations

import argparse
import sys

from .synth import SHAPES, render_stack, write_stack

#: The scene set of configs/sweep.yaml: shapes x textures, clean and noisy.
#: name: (shape, texture, noise, seed)
SWEEP_SUITE = {
    "slant-noise-clean": ("slant", "noise", 0.0, 11),
    "cone-noise-clean": ("cone", "noise", 0.0, 12),
    "step-checker-clean": ("step", "checker", 0.0, 13),
    "sphere-lowtex-clean": ("sphere", "lowtex", 0.0, 14),
    "sinusoid-noise-noisy": ("sinusoid", "noise", 0.02, 15),
    "terrain-noise-noisy": ("terrain", "noise", 0.02, 16),
    "step-lowtex-noisy": ("step", "lowtex", 0.02, 17),
    "plane-checker-noisy": ("plane", "checker", 0.02, 18),
}

#: The scene set of configs/sweep_refine.yaml: occlusion, low-texture and smooth scenes,
#: each clean and noisy.
REFINE_SUITE = {f"{shape}-{tex}-{tag}": (shape, tex, noise, 30 + i)
                for i, (shape, tex) in enumerate([("step", "checker"), ("step", "lowtex"), ("sphere", "lowtex"),
                                                  ("slant", "noise"), ("terrain", "noise"), ("sinusoid", "noise")])
                for tag, noise in (("clean", 0.0), ("noisy", 0.02))}
#: Scenes whose large regions carry no texture at all (flat colour or smooth gradient
#: blobs, see dffbatch.truth.synth.texture_regions) on surfaces at several depths.
FLAT_SUITE = {f"{shape}-{tex}-{tag}": (shape, tex, noise, 50 + i)
              for i, (shape, tex) in enumerate([("step", "flatpatch"), ("sphere", "gradpatch"),
                                                ("slant", "flatpatch"), ("terrain", "gradpatch")])
              for tag, noise in (("clean", 0.0), ("noisy", 0.02))}
#: Occlusion halos: a bright, weakly textured leaf and a thin stem far in front of a dark,
#: textured background, blurred by 12 px and more at the far end (as focus_stack 56),
#: beside the step's lighter case. Rendered with :data:`SUITE_RENDER`'s wider blur.
HALO_SUITE = {
    "leaf-ivy-clean": ("leaf", "ivy", 0.0, 71),
    "leaf-ivy-noisy": ("leaf", "ivy", 0.02, 72),
    "step-checker-wide": ("step", "checker", 0.0, 73),
}
#: An object over a bare backdrop (``bare``: texture on the step's near rectangle only):
#: wide regions with no evidence, whose depth nothing around them tells. For the
#: calibrated confidence (benchmarks/fit_confidence.py fits on ``bare``, checks on ``bare2``).
BARE_SUITE = {"step-bare-clean": ("step", "bare", 0.0, 91), "slant-bare-noisy": ("slant", "bare", 0.02, 92)}
BARE2_SUITE = {"step-bare-noisy": ("step", "bare", 0.02, 93), "sphere-bare-clean": ("sphere", "bare", 0.0, 94)}
SUITES = {"sweep": SWEEP_SUITE, "refine": REFINE_SUITE, "flat": FLAT_SUITE, "halo": HALO_SUITE,
          "bare": BARE_SUITE, "bare2": BARE2_SUITE}
#: Render options of a suite that differ from render_stack's defaults.
SUITE_RENDER = {"halo": dict(blur_per_frame=1.6, max_blur=16.0)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="dffbatch synth", description="Render a synthetic focal stack with exact "
                                "ground truth (frames, gt_depth.tif, gt_allfocus.png, meta.json).")
    p.add_argument("out", help="output folder")
    p.add_argument("--shape", default="slant", choices=SHAPES)
    p.add_argument("--texture", default="noise", help="noise, checker, lowtex or an image file")
    p.add_argument("--size", type=int, nargs=2, default=[256, 256], metavar=("H", "W"))
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--blur", type=float, default=1.0, help="blur radius per frame of defocus (pixels)")
    p.add_argument("--max-blur", type=float, default=12.0)
    p.add_argument("--noise", type=float, default=0.0, help="sensor noise std at full scale (linear)")
    p.add_argument("--bits", type=int, default=8, choices=[8, 16])
    p.add_argument("--breathing", type=float, default=0.0, help="magnification step per frame")
    p.add_argument("--shift", type=float, default=0.0, help="random shift std per frame (pixels)")
    p.add_argument("--distort", type=float, default=0.0,
                   help="random per-frame shear and vertical stretch std (hand-held rolling shutter)")
    p.add_argument("--layers", type=int, default=8, help="depth layers per frame")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--suite", choices=sorted(SUITES), help="render the named scene set into OUT/<scene>/ "
                   "(shape/texture/noise/seed per scene; the other options apply to all)")
    a = p.parse_args(argv)
    if a.suite:
        from pathlib import Path
        for name, (shape, tex, noise, seed) in SUITES[a.suite].items():
            opts = {"blur_per_frame": a.blur, "max_blur": a.max_blur, **SUITE_RENDER.get(a.suite, {})}
            frames, g, af, meta = render_stack(shape, tex, tuple(a.size), a.frames, noise=noise, bit_depth=a.bits,
                                               breathing=a.breathing, shift=a.shift, layers_per_frame=a.layers,
                                               seed=seed, distort=a.distort, **opts)
            write_stack(Path(a.out) / name, frames, g, af, meta)
            print(f"wrote {name}: {shape}, {tex}, noise {noise}")
        return 0
    try:
        frames, g, af, meta = render_stack(a.shape, a.texture, tuple(a.size), a.frames, a.blur, a.max_blur,
                                           a.noise, a.bits, a.breathing, a.shift, a.layers, a.seed,
                                           distort=a.distort)
    except (ValueError, OSError) as exc:
        print(f"dffbatch synth: {exc}", file=sys.stderr)
        return 2
    write_stack(a.out, frames, g, af, meta)
    print(f"wrote {len(frames)} frames + ground truth to {a.out}")
    return 0
