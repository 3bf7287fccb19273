"""``dffbatch synth OUT [options]``: render one synthetic stack with ground truth."""
from __future__ import annotations

import argparse
import sys

from .synth import SHAPES, render_stack, write_stack


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
    p.add_argument("--layers", type=int, default=8, help="depth layers per frame")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    try:
        frames, g, af, meta = render_stack(a.shape, a.texture, tuple(a.size), a.frames, a.blur, a.max_blur,
                                           a.noise, a.bits, a.breathing, a.shift, a.layers, a.seed)
    except (ValueError, OSError) as exc:
        print(f"dffbatch synth: {exc}", file=sys.stderr)
        return 2
    write_stack(a.out, frames, g, af, meta)
    print(f"wrote {len(frames)} frames + ground truth to {a.out}")
    return 0
