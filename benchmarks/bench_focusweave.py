"""Our default batch against focusweave's, on the same directory, in one run (issue 33).

    python benchmarks/bench_focusweave.py [--data DIR] [--workers 2] [--repeat 3]

focusweave (``pip install focusweave``; Laplacian-pyramid fusion, all-in-focus only)
batches one stack per sub-folder, so the script lays the directory's stacks out as
sub-folders of symbolic links (as dffbatch discovers them) in a temporary folder. Then,
alternated ``--repeat`` times, it times:

* ``dffbatch``: the default config (``align: auto``), plots off, as bench_dataset.py runs it;
* ``focusweave --batch`` with its defaults (it aligns every stack);
* ``focusweave --batch --no-align`` (fusion alone: the comparison issue 33 was filed with).

focusweave writes each result as a JPEG beside nothing else; dffbatch writes its depth,
confidence, all-in-focus, report and records. Prints the medians and the ratios. Skips
with a message where focusweave or the dataset is absent.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from bench_dataset import DEFAULT, run_once  # noqa: E402


def layout(stacks, folder):
    """One sub-folder of symbolic links per stack, for ``focusweave --batch``."""
    for i, s in enumerate(stacks):
        d = os.path.join(folder, f"{i:05d}")
        os.makedirs(d)
        for f in s.files:
            os.symlink(os.path.abspath(f), os.path.join(d, os.path.basename(f)))


def focusweave(src, out, extra):
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    t = time.perf_counter()
    r = subprocess.run(["focusweave", "--batch", src, "--output", out, *extra], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"focusweave failed ({r.returncode}): {r.stderr[-2000:]}")
    return wall, len(os.listdir(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DEFAULT)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    if not shutil.which("focusweave"):
        print("skipped: focusweave is not installed (pip install focusweave)")
        return
    if not os.path.isdir(a.data):
        print(f"skipped: {a.data} is absent (../shared/datasets is not next to the project)")
        return
    sys.path.insert(0, ROOT)
    from dffbatch.batch.discover import discover
    stacks = discover({"path": a.data})
    version = subprocess.run(["focusweave", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"{len(stacks)} stacks, {sum(len(s.files) for s in stacks)} frames from {a.data}; "
          f"{a.workers} dffbatch workers; {version}; {os.cpu_count()} cores")
    walls = {"dffbatch default (align auto, plots off)": [], "focusweave --batch (aligns)": [],
             "focusweave --batch --no-align": []}
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "stacks")
        layout(stacks, src)
        run_once(a.data, a.workers, False, tmp, "warm")  # Numba cache warm, files in the page cache
        shutil.rmtree(os.path.join(tmp, "warm"))
        for i in range(a.repeat):
            w, _, jobs = run_once(a.data, a.workers, False, tmp, f"dff{i}")
            assert all(j["status"] == "ok" for j in jobs)
            shutil.rmtree(os.path.join(tmp, f"dff{i}"))
            walls["dffbatch default (align auto, plots off)"].append(w)
            for key, extra in (("focusweave --batch (aligns)", []), ("focusweave --batch --no-align", ["--no-align"])):
                w, n = focusweave(src, os.path.join(tmp, "fw"), extra)
                assert n == len(stacks), (n, len(stacks))
                walls[key].append(w)
    med = {k: sorted(v)[len(v) // 2] for k, v in walls.items()}
    ours = med["dffbatch default (align auto, plots off)"]
    print(f"median of {a.repeat}, alternated:")
    for k, v in med.items():
        print(f"  {k:42} {v:7.2f} s   {v / ours:5.2f}x dffbatch's time   runs: {[round(x, 2) for x in walls[k]]}")


if __name__ == "__main__":
    main()
