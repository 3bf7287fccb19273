"""``dffbatch eval --gt DIR --pred DIR``: score any tool's outputs against ground truth.

``--gt`` holds ``gt_depth.tif`` (and optionally ``gt_allfocus.png``/``.tif``); ``--pred``
holds ``depth.tif`` (or ``--depth FILE``) and optionally ``allfocus.png``/``.tif``.
Prints one JSON object of metrics (see :mod:`dffbatch.truth.metrics`).
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def _plain(text):
    """The module docstring for a terminal: reST markup (``x``, :mod:`y`) as plain text."""
    import re
    text = re.sub(r":\w+:`([^`]+)`", r"\1", text)
    return text.replace("``", "")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="dffbatch eval", description=_plain(__doc__),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gt", required=True, metavar="DIR", help="folder with gt_depth.tif (and gt_allfocus)")
    p.add_argument("--pred", required=True, metavar="DIR", help="folder with the tool's depth.tif (and allfocus)")
    p.add_argument("--depth", help="depth file inside --pred (default depth.tif)", default="depth.tif")
    p.add_argument("--border", type=int, default=8, help="pixels left out at the image border (default 8)")
    a = p.parse_args(argv)
    import tifffile

    from .metrics import depth_metrics, image_metrics
    from ..stages.read import FrameError, read_frame
    out = {}
    try:
        gt = tifffile.imread(os.path.join(a.gt, "gt_depth.tif"))
        pred = read_frame(os.path.join(a.pred, a.depth))
        if pred.ndim == 3:
            pred = pred[:, :, 0]
        if pred.shape != gt.shape:
            raise ValueError(f"{os.path.join(a.pred, a.depth)}: shape {pred.shape} differs from ground truth {gt.shape}")
        out.update(depth_metrics(pred, gt, a.border))
        for g in ("gt_allfocus.png", "gt_allfocus.tif"):
            for f in ("allfocus.tif", "allfocus.png"):
                if os.path.exists(os.path.join(a.gt, g)) and os.path.exists(os.path.join(a.pred, f)):
                    out.update(image_metrics(read_frame(os.path.join(a.pred, f)), read_frame(os.path.join(a.gt, g)), gt))
                    break
            if "aif_psnr" in out:
                break
    except (OSError, ValueError, FrameError) as exc:
        print(f"dffbatch eval: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=2))
    return 0
