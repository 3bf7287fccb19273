"""The write stage: time and bytes per stack of the output sets, and of the TIFF compressions.

    python benchmarks/bench_write.py [--stacks 10] [--repeat 3] [--dir /dev/shm]

On the first ``--stacks`` focus_stack stacks (1080 x 1080 JPEG) each stack's maps are
computed once with the default parameters, then written again and again to a scratch
folder (tmpfs by default, so that the disk does not decide). Printed per set, the
median over repeats of the summed write time and the mean bytes per stack:

* ``previous default``: every map as TIFF and PNG, by version 2's code;
* ``default``: ``outputs.formats`` as shipped, plus the report's ``view/`` images;
* each float-TIFF compression on the depth map alone.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SEED = os.path.join(os.path.dirname(ROOT), "shared", "datasets", "seed", "focus_stack")

from dffbatch import depth_from_focus  # noqa: E402
from dffbatch.batch.config import FORMATS_DEFAULT  # noqa: E402
from dffbatch.batch.jobs import write_maps  # noqa: E402
from dffbatch.report.views import write_views  # noqa: E402
from dffbatch.stages.write import write_tiff  # noqa: E402

def _v2_write(out, res):
    """What version 2 (the previous release) wrote per stack, as its code wrote it."""
    from dffbatch.stages.write import write_png
    j = os.path.join
    write_tiff(j(out, "depth.tif"), res.depth)
    write_png(j(out, "depth.png"), np.round(res.depth * (65535.0 / max(res.n_frames - 1, 1))).astype(np.uint16))
    write_tiff(j(out, "confidence.tif"), res.confidence)
    write_png(j(out, "confidence.png"), np.round(np.clip(res.confidence, 0, 1) * 255).astype(np.uint8))
    write_tiff(j(out, "allfocus.tif"), res.allfocus)
    write_png(j(out, "allfocus.png"), res.allfocus)


SETS = {
    "previous default (version 2's code)": dict(v2=True),
    "every map as TIFF and PNG": dict(formats={"allfocus": ["png", "tiff"], "depth": ["png", "tiff"],
                                               "confidence": ["png", "tiff"]}, views=False),
    "default (outputs.formats) + view/ images": dict(formats=FORMATS_DEFAULT, views=True),
    "default without view/ (report: false)": dict(formats=FORMATS_DEFAULT, views=False),
}


def _size(folder):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(folder) for f in fs)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stacks", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    a = ap.parse_args()
    if not os.path.isdir(SEED):
        print(f"skipped: {SEED} is absent (../shared/datasets is not next to the project)")
        return
    from dffbatch.batch.discover import discover
    stacks = discover({"path": SEED})[: a.stacks]
    from dffbatch.stages.read import read_frame
    results = [depth_from_focus(read_frame(f) for f in s.files) for s in stacks]
    print(f"{len(results)} stacks of {results[0].allfocus.shape}; writing to {a.dir or 'the default temp dir'}")
    tmp = tempfile.mkdtemp(dir=a.dir)
    try:
        for name, spec in SETS.items():
            times, size = [], 0
            for rep in range(a.repeat):
                t = time.perf_counter()
                for i, res in enumerate(results):
                    out = os.path.join(tmp, f"{rep}", str(i))
                    if spec.get("v2"):
                        _v2_write(out, res)
                        continue
                    write_maps(out, res, {"formats": spec["formats"], "tiff_compression": "none"}, None, [])
                    if spec["views"]:
                        write_views(out, res.allfocus, res.depth, res.confidence, res.n_frames)
                times.append(time.perf_counter() - t)
                size = _size(os.path.join(tmp, f"{rep}")) / len(results)
                shutil.rmtree(os.path.join(tmp, f"{rep}"))
            per = sorted(times)[len(times) // 2] / len(results)
            print(f"  {name:45} {per * 1e3:6.1f} ms/stack  {size / 1e6:6.2f} MB/stack")
        try:
            import imagecodecs  # noqa: F401
            comps = ("none", "deflate", "zstd")
        except ImportError:
            comps = ("none",)
            print("  (imagecodecs not installed: deflate and zstd not measured)")
        for comp in comps:
            times, size = [], 0
            for rep in range(a.repeat):
                t = time.perf_counter()
                for i, res in enumerate(results):
                    p = os.path.join(tmp, f"d{i}.tif")
                    write_tiff(p, res.depth, compression=comp)
                    size += os.path.getsize(p)
                times.append(time.perf_counter() - t)
            per = sorted(times)[len(times) // 2] / len(results)
            print(f"  depth.tif, tiff_compression {comp:8} {per * 1e3:6.1f} ms/stack  "
                  f"{size / a.repeat / len(results) / 1e6:6.2f} MB/stack")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
