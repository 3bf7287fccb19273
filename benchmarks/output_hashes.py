"""SHA-256 of every output of a checkout, for a restructuring that must not change a byte.

    python benchmarks/output_hashes.py [--root CHECKOUT] [--out hashes.json] [--quick]
    python benchmarks/output_hashes.py --diff before.json after.json

Two levels, both from the checkout named by ``--root`` (default: this one):

* the library call, ``depth_from_focus``, on the bundled ``dataset/`` stacks and ten
  focus_stack stacks (``../shared/datasets``, skipped with a message where absent), for
  every ``composite``, every ``refine`` and ``align: none / auto / similarity`` (each
  varied from the defaults, plus aligned ``select`` and ``pyramid`` and ``positions``):
  depth, index, confidence, all-in-focus and depth in units;
* the batch runner with the default config on the same stacks: every file it writes
  except the ones that hold times (manifest, run.log, summary.csv, index.html).

``--diff`` compares two such files and exits 1 on any difference.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOCUS_STACK = os.path.join(os.path.dirname(HERE), "shared", "datasets", "seed", "focus_stack")
#: occlusions (56, 1, 7, 27), flat regions (5, 4, 33), the largest mover (52), a gloss (80), and 100
IDS = (1, 4, 5, 7, 27, 33, 52, 56, 80, 100)
CASES = {  # name: overrides of the defaults
    "default": {},
    "composite=select": {"composite": "select"},
    "composite=pyramid": {"composite": "pyramid"},
    "refine=none": {"refine": "none"},
    "refine=median": {"refine": "median"},
    "refine=bilateral": {"refine": "bilateral"},
    "refine=sgm": {"refine": "sgm"},
    "align=none": {"align": "none"},
    "align=similarity": {"align": "similarity"},
    "align=similarity,select": {"align": "similarity", "composite": "select"},
    "align=similarity,pyramid": {"align": "similarity", "composite": "pyramid"},
    "positions": {"positions": True},
}
SKIP_FILES = ("manifest.json", "run.log", "summary.csv", "index.html", "config.yaml", "state.sqlite",
              "jobs.js", "jobs.sqlite")  # these hold times and dates


def _stacks(root, quick):
    out = {}
    for d in sorted(glob.glob(os.path.join(root, "dataset", "*"))):
        if os.path.isdir(d):
            out["dataset/" + os.path.basename(d)] = sorted(glob.glob(os.path.join(d, "*.png")))
    if os.path.isdir(FOCUS_STACK):
        key = lambda p: int(re.search(r"_(\d+)\.", p).group(1))  # noqa: E731
        for i in IDS[:3] if quick else IDS:
            out[f"focus_stack/{i}"] = sorted(glob.glob(os.path.join(FOCUS_STACK, f"{i}__refocus_*.jpg")), key=key)
    else:
        print(f"output_hashes: {FOCUS_STACK} is absent; the bundled dataset only", file=sys.stderr)
    return out


def _h(a):
    import numpy as np
    if a is None:
        return None
    a = np.ascontiguousarray(a)
    return f"{a.dtype}{a.shape}:" + hashlib.sha256(a.tobytes()).hexdigest()[:16]


def library_hashes(root, quick):
    sys.path.insert(0, root)
    import dffbatch
    from dffbatch import depth_from_focus
    assert os.path.dirname(os.path.dirname(os.path.abspath(dffbatch.__file__))) == os.path.abspath(root), \
        f"imported {dffbatch.__file__}, not the checkout {root}"
    try:
        from dffbatch.stages.read import read_frame
    except ImportError:  # a checkout from before the subpackages
        from dffbatch.read import read_frame
    out = {}
    for name, files in _stacks(root, quick).items():
        frames = [read_frame(f) for f in files]
        for case, kw in CASES.items():
            kw = dict(kw)
            if kw.pop("positions", False):
                kw["positions"] = [0.5 * k ** 1.1 for k in range(len(frames))]
            try:
                r = depth_from_focus(frames, **kw)
            except ValueError as e:  # an explicit mode that cannot register a still stack: the same error
                out[f"{name} {case}"] = f"ValueError: {e}"
                continue
            out[f"{name} {case}"] = {k: _h(getattr(r, k)) for k in
                                     ("depth", "index", "confidence", "allfocus", "depth_units")}
        print(f"  {name}: {len(CASES)} cases", file=sys.stderr, flush=True)
    return out


def runner_hashes(root, quick):
    import yaml
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        os.makedirs(data)
        for name, files in _stacks(root, quick).items():
            d = os.path.join(data, name.replace("/", "_"))
            os.makedirs(d)
            for f in files:
                os.symlink(f, os.path.join(d, os.path.basename(f)))
        cfg = {"run": {"name": "h", "output": os.path.join(tmp, "out")}, "datasets": [{"path": data}],
               "outputs": {"plots": True}, "execution": {"workers": 2}}
        p = os.path.join(tmp, "c.yaml")
        with open(p, "w") as fh:
            yaml.safe_dump(cfg, fh)
        r = subprocess.run([sys.executable, "-m", "dffbatch", p, "--no-progress"], cwd=root, capture_output=True,
                           text=True)
        if r.returncode != 0:
            raise SystemExit(f"runner failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        run = os.path.join(tmp, "out", "h")
        for f in sorted(glob.glob(os.path.join(run, "**", "*"), recursive=True)):
            if os.path.isfile(f) and os.path.basename(f) not in SKIP_FILES and "/." not in f:
                with open(f, "rb") as fh:
                    out["runner " + os.path.relpath(f, run)] = hashlib.sha256(fh.read()).hexdigest()[:16]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=HERE)
    ap.add_argument("--out")
    ap.add_argument("--quick", action="store_true", help="three focus_stack stacks instead of ten")
    ap.add_argument("--diff", nargs=2, metavar=("A", "B"))
    a = ap.parse_args()
    if a.diff:
        x, y = (json.load(open(p)) for p in a.diff)
        bad = sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))
        for k in bad:
            print(f"DIFFERS {k}: {x.get(k)} != {y.get(k)}")
        print(f"{len(set(x) | set(y)) - len(bad)} of {len(set(x) | set(y))} outputs identical")
        raise SystemExit(1 if bad else 0)
    root = os.path.abspath(a.root)
    res = {**library_hashes(root, a.quick), **runner_hashes(root, a.quick)}
    text = json.dumps(res, indent=1, sort_keys=True)
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(text)
    print(f"{len(res)} outputs hashed from {root}")


if __name__ == "__main__":
    main()
