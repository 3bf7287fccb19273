"""Where the first run's compile time goes: every kernel and every specialisation.

    python benchmarks/compile_profile.py [--params '{"measure": "lapd"}'] [--threads 1] [--top 40] [--json out.json] [--record]

Runs the runner's warm-up (:func:`dffbatch.batch.warmup._warm`: the unaligned and the
aligned path on a small crop) in a fresh process with an empty Numba cache (a temporary
``NUMBA_CACHE_DIR``), and records Numba's ``numba:compile`` events. Prints the wall time,
the compile time of each kernel (exclusive of the kernels it compiled inside it), the
number of its specialisations and their signatures, and the totals per module.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CHILD = r"""
import json, sys, time
from numba.core import event
records, stack = [], []

class L(event.Listener):
    def on_start(self, ev):
        stack.append([ev.data["dispatcher"], ev.data["args"], time.perf_counter(), 0.0])
    def on_end(self, ev):
        disp, args, t0, inner = stack.pop()
        took = time.perf_counter() - t0
        if stack:
            stack[-1][3] += took
        py = disp.py_func
        records.append(dict(kernel=py.__module__ + "." + py.__qualname__, sig=str(args), total=took,
                            own=took - inner, root=not stack))

event.register("numba:compile", L())
t0 = time.perf_counter()
from dffbatch.batch.warmup import _threads, _warm
t_import = time.perf_counter() - t0
_threads(sys.argv[5], sys.argv[6] == "twins")
_warm(sys.argv[1], False, [json.loads(sys.argv[2])], groups=sys.argv[3].split(","))
json.dump(dict(wall=time.perf_counter() - t0, imports=t_import, records=records), open(sys.argv[4], "w"))
"""


def profile(params: dict, groups=("plain", "aligned"), threads=1, twins=True) -> dict:
    """Run the warm-up cold in a child process; its compile records."""
    import numpy as np
    import tifffile
    with tempfile.TemporaryDirectory() as tmp:
        frame = os.path.join(tmp, "f.tif")
        tifffile.imwrite(frame, (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8))
        out = os.path.join(tmp, "out.json")
        env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(tmp, "cache"), PYTHONPATH=ROOT)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", _CHILD, frame, json.dumps(params), ",".join(groups), out, str(threads),
                        "twins" if twins and threads == 1 else "parallel"],
                       env=env, check=True)
        res = json.load(open(out))
        res["process"] = time.perf_counter() - t
        return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="{}", help="depth_from_focus parameters of the run (JSON)")
    ap.add_argument("--groups", default="plain,aligned", help="warm-up groups to run (dffbatch.batch.warmup.GROUPS)")
    ap.add_argument("--threads", type=int, default=1, help="Numba threads of the kernels")
    ap.add_argument("--parallel", action="store_true", help="on one thread, the parallel kernels, not the twins")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--json", help="write the records here")
    ap.add_argument("--record", action="store_true",
                    help="write the top-level specialisations (their seconds, and the group that needs them: "
                         "a second, plain-only profile tells) to dffbatch/batch/warm_signatures.json, which the "
                         "runner's warm-up compiles in parallel")
    a = ap.parse_args()
    res = profile(json.loads(a.params), a.groups.split(","), a.threads, not a.parallel)
    rec = res["records"]
    per = {}
    for r in rec:
        k = per.setdefault(r["kernel"], dict(own=0.0, n=0, sigs=[]))
        k["own"] += r["own"]
        k["n"] += 1
        k["sigs"].append((r["own"], r["sig"]))
    total = sum(r["own"] for r in rec)
    kind = "serial twins" if a.threads == 1 and not a.parallel else "parallel kernels"
    print(f"cold warm-up ({a.groups}, {a.threads} thread{'s' if a.threads > 1 else ''}, {kind}): {res['process']:.1f} s in all (process start to exit), "
          f"{res['imports']:.1f} s importing, {total:.1f} s compiling {len(rec)} specialisations "
          f"of {len(per)} kernels")
    mods = {}
    for name, k in per.items():
        m = name.rsplit(".", 1)[0]
        mods[m] = mods.get(m, 0.0) + k["own"]
    print("\nper module (s):")
    for m, s in sorted(mods.items(), key=lambda x: -x[1]):
        print(f"  {m:40} {s:6.2f}")
    print(f"\nkernels by compile time (own s, specialisations):")
    for name, k in sorted(per.items(), key=lambda x: -x[1]["own"])[:a.top]:
        print(f"  {name:56} {k['own']:6.2f}  x{k['n']}")
        if k["n"] > 1:
            for own, sig in sorted(k["sigs"], reverse=True):
                print(f"      {own:6.2f}  {sig[:150]}")
    if a.json:
        json.dump(res, open(a.json, "w"), indent=1)
    if a.record:
        plain = {(r["kernel"], r["sig"])
                 for r in profile(json.loads(a.params), ["plain"], a.threads, not a.parallel)["records"]}
        # a twin is listed under its kernel's name: Kernel.compile compiles the variant of the helper's threads
        roots = [dict(kernel=r["kernel"].removesuffix("_serial"), sig=r["sig"], seconds=round(r["total"], 2),
                      group="plain" if (r["kernel"], r["sig"]) in plain else "aligned") for r in rec
                 if r["root"] and r["kernel"].startswith("dffbatch.")]
        path = os.path.join(ROOT, "dffbatch", "batch", "warm_signatures.json")
        with open(path, "w") as f:
            json.dump(dict(params=json.loads(a.params), groups=a.groups.split(","), threads=a.threads, roots=roots), f,
                      indent=1)
            f.write("\n")
        print(f"\n{len(roots)} top-level specialisations ({sum(r['seconds'] for r in roots):.1f} s) -> {path}")


if __name__ == "__main__":
    main()
