"""How far two checkouts' outputs are apart, and which is nearer the truth: for a change
that is allowed to move values within a tolerance (output_hashes.py is for changes that
must not move a byte).

    python benchmarks/compare_outputs.py --before CHECKOUT [--after CHECKOUT] [--cases default,refine=median]

Each checkout runs in a process of its own (its ``dffbatch`` imported from it) the library
call, ``depth_from_focus``, for each case (overrides of the defaults, as in
output_hashes.py) on

* the rendered scenes of the ``refine`` and ``halo`` suites (256 x 256, 12 frames), which
  have ground truth; and
* the real stacks of output_hashes.py (the bundled ``dataset/`` and ten focus_stack
  stacks, where ``../shared/datasets`` is present).

Printed per case: the largest difference of the depth (frames), the confidence and the
all-in-focus image (levels) over all stacks, and the share of pixels that differ at all;
on the rendered scenes, each checkout's mean depth RMSE (frames), share of pixels within
one frame, all-in-focus PSNR (dB) and the confidence's calibration error (10 bins: the
mean gap between the confidence and how often the depth is within one frame).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from output_hashes import CASES, _stacks  # noqa: E402

SUITES = ("refine", "halo")
SIZE, FRAMES = 256, 12


def _scenes():
    from dffbatch.truth.synth_cli import SUITE_RENDER, SUITES as ALL
    for suite in SUITES:
        for name, (shape, tex, noise, seed) in ALL[suite].items():
            yield f"{suite}/{name}", (shape, tex, noise, seed, SUITE_RENDER.get(suite, {}))


def child(root, out, cases):
    """Run every case on every stack with the checkout ``root``; arrays into ``out``."""
    sys.path.insert(0, root)
    import dffbatch
    from dffbatch import depth_from_focus
    from dffbatch.stages.read import read_frame
    from dffbatch.truth.synth import render_stack
    assert os.path.dirname(os.path.dirname(os.path.abspath(dffbatch.__file__))) == os.path.abspath(root), \
        f"imported {dffbatch.__file__}, not the checkout {root}"
    stacks = {}
    for name, (shape, tex, noise, seed, opts) in _scenes():
        stacks[name] = lambda a=(shape, tex, noise, seed, opts): render_stack(
            a[0], a[1], (SIZE, SIZE), FRAMES, noise=a[2], seed=a[3], **a[4])
    for name, files in _stacks(root, False).items():
        stacks[name] = lambda files=files: ([read_frame(f) for f in files], None, None, None)
    for i, (name, make) in enumerate(stacks.items()):
        frames, g, aif, _ = make()
        for case in cases:
            try:
                r = depth_from_focus(frames, **CASES[case])
            except ValueError as e:  # an explicit mode that cannot register a still stack
                np.savez(os.path.join(out, f"{i}-{case}.npz"), error=str(e))
                continue
            np.savez(os.path.join(out, f"{i}-{case}.npz"), depth=r.depth, confidence=r.confidence,
                     allfocus=r.allfocus, **({} if g is None else {"truth": g, "truth_aif": aif}))
    with open(os.path.join(out, "names.json"), "w") as f:
        json.dump(list(stacks), f)


def _ece(conf, ok, bins=10):
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    gap = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            gap += m.sum() * abs(conf[m].mean() - ok[m].mean())
    return gap / conf.size


def _truth_metrics(z):
    from dffbatch.truth.metrics import psnr
    b = 8
    d, g = z["depth"].astype(np.float64)[b:-b, b:-b], z["truth"][b:-b, b:-b]
    ok = np.abs(d - g) <= 1
    return dict(rmse=float(np.sqrt(np.mean((d - g) ** 2))), within=float(ok.mean()),
                psnr=psnr(z["allfocus"], z["truth_aif"]), ece=_ece(z["confidence"][b:-b, b:-b].astype(np.float64), ok))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="checkout to compare against (e.g. a git worktree)")
    ap.add_argument("--after", default=os.path.dirname(HERE))
    ap.add_argument("--cases", default="default", help="comma-separated names of output_hashes.CASES")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    cases = a.cases.split(",")
    if a.child:
        return child(a.child[0], a.child[1], cases)
    roots = [os.path.abspath(a.before), os.path.abspath(a.after)]
    with tempfile.TemporaryDirectory() as tmp:
        dirs = []
        for k, root in enumerate(roots):
            d = os.path.join(tmp, str(k))
            os.makedirs(d)
            subprocess.run([sys.executable, __file__, "--child", root, d, "--before", root, "--cases", a.cases],
                           check=True)
            dirs.append(d)
        with open(os.path.join(dirs[0], "names.json")) as f:
            names = json.load(f)
        print(f"before: {roots[0]}\nafter:  {roots[1]}\n{len(names)} stacks "
              f"({sum(n.split('/')[0] in SUITES for n in names)} rendered with truth)")
        for case in cases:
            big = {"depth": 0.0, "confidence": 0.0, "allfocus": 0.0}
            moved = {k: 0 for k in big}
            total = 0
            truth = [[], []]
            errors = 0
            for i, name in enumerate(names):
                z = [np.load(os.path.join(d, f"{i}-{case}.npz")) for d in dirs]
                if "error" in z[0] or "error" in z[1]:
                    e = [str(v["error"]) if "error" in v else "outputs" for v in z]
                    if e[0] != e[1]:
                        print(f"{case} {name}: before {e[0]!r}, after {e[1]!r}")
                    errors += 1
                    continue
                total += z[0]["depth"].size
                for key in big:
                    x, y = (v[key].astype(np.float64) for v in z)
                    big[key] = max(big[key], float(np.abs(x - y).max()))
                    moved[key] += int((x != y).reshape(x.shape[0], x.shape[1], -1).any(axis=2).sum())
                if "truth" in z[0]:
                    for k in (0, 1):
                        truth[k].append(_truth_metrics(z[k]))
            print(f"\n{case}: largest difference (share of pixels that differ)"
                  + (f"; {errors} stacks raised ValueError (not compared)" if errors else ""))
            for key in big:
                print(f"  {key:<11} {big[key]:.3g}  ({moved[key] / total:.2%})")
            if truth[0]:
                print(f"  on {len(truth[0])} rendered scenes, before -> after (mean):")
                for m, unit in (("rmse", "frames"), ("within", "share within 1 frame"), ("psnr", "dB"),
                                ("ece", "calibration error")):
                    b, c = (np.mean([t[m] for t in truth[k]]) for k in (0, 1))
                    print(f"    {m:<7} {b:.6f} -> {c:.6f}  ({unit})")


if __name__ == "__main__":
    main()
