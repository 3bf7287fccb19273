"""Dask backend against the local backend on ../shared/datasets/seed/focus_stack.

    python benchmarks/bench_dask.py [--data DIR] [--workers 2]

Both with `workers` worker processes, plots off. The local backend runs each with
one Numba thread (``threads_per_worker: 1``). The Dask backend ignores that key: its
LocalCluster has `workers` single-threaded workers, and each task's Numba threads
follow the cluster's layout (a host's cores divided by the tasks it runs at once, here
1). Prints wall times, their ratio, and the scheduling overhead per job (the wall-time
difference divided by the number of jobs the run had).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT = os.path.join(os.path.dirname(ROOT), "shared", "datasets", "seed", "focus_stack")


def timed_run(cfg_path, *extra):
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "dffbatch", cfg_path, "--no-progress", "--force", *extra],
                       cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(r.stdout + r.stderr)
    return time.perf_counter() - t


def n_jobs(cfg_path):
    r = subprocess.run([sys.executable, "-m", "dffbatch", cfg_path, "--dry-run"], cwd=ROOT, capture_output=True,
                       text=True, check=True)
    return sum(line.startswith("job ") for line in r.stdout.splitlines())


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=DEFAULT)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    if not os.path.isdir(a.data):
        print(f"skipped: {a.data} is absent")
        return
    with tempfile.TemporaryDirectory() as tmp:
        cfg = {"run": {"name": "b", "output": tmp}, "datasets": [{"path": a.data}],
               "outputs": {"plots": False}, "execution": {"workers": a.workers, "threads_per_worker": 1}}
        p = os.path.join(tmp, "c.yaml")
        with open(p, "w") as fh:
            yaml.safe_dump(cfg, fh)
        timed_run(p)  # warm caches
        local = min(timed_run(p) for _ in range(2))
        dask = min(timed_run(p, "--set", "execution.backend=dask") for _ in range(2))
        n = n_jobs(p)
        print(f"{n} jobs")
        print(f"local backend, {a.workers} workers x 1 Numba thread: {local:6.2f} s")
        print(f"dask LocalCluster, {a.workers} single-threaded workers: {dask:6.2f} s (cluster start included)")
        print(f"ratio dask/local: {dask / local:.3f}; overhead per job: {(dask - local) / n * 1e3:+.1f} ms")


if __name__ == "__main__":
    main()
