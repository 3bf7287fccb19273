"""The whole-directory workload: ../shared/datasets/seed/focus_stack (100 stacks).

    python benchmarks/bench_dataset.py [--data DIR] [--workers 2] [--compare KEY=VALUE] [--plots-repeat N] [--against CHECKOUT]

Runs the batch runner with default parameters, plots off and then on, and reports
wall time, MP-frames/s and peak memory per worker, next to the decode-only time of
the same files with the same decoder in the same worker layout (spawned processes).
Also times enfuse / focusweave on five stacks where they are installed.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
import multiprocessing as mp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT = os.path.join(os.path.dirname(ROOT), "shared", "datasets", "seed", "focus_stack")


def _warm(seconds):
    """A task that holds its worker a moment: one per worker starts every worker."""
    time.sleep(seconds)
    return os.getpid()


def _decode_stack(files):
    from dffbatch.stages.read import read_frame
    t = time.perf_counter()
    mpx = 0.0
    for f in files:
        a = read_frame(f)
        mpx += a.shape[0] * a.shape[1] / 1e6
    return mpx, time.perf_counter() - t


def decode_only(stacks, workers):
    t = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as ex:
        # start every worker outside the timing: tasks submitted together, each holding
        # its worker, so that no worker takes two while another has not started
        pids = {f.result() for f in [ex.submit(_warm, 0.5) for _ in range(workers)]}
        assert len(pids) == workers, f"only {len(pids)} of {workers} workers started"
        t = time.perf_counter()
        res = list(ex.map(_decode_stack, [s.files for s in stacks]))
    return time.perf_counter() - t, sum(r[0] for r in res)


def run_once(data, workers, plots, tmp, name, sets=(), root=ROOT):
    import yaml
    cfg = {"run": {"name": name, "output": tmp}, "datasets": [{"path": data}],
           "outputs": {"plots": plots, "report": True}, "execution": {"workers": workers}}
    p = os.path.join(tmp, f"{name}.yaml")
    with open(p, "w") as fh:
        yaml.safe_dump(cfg, fh)
    t = time.perf_counter()
    extra = [a for kv in sets for a in ("--set", kv)]
    r = subprocess.run([sys.executable, "-m", "dffbatch", p, "--no-progress", *extra], cwd=root,
                       capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        raise SystemExit(f"run failed with status {r.returncode}")
    man = json.load(open(os.path.join(tmp, name, "manifest.json")))
    jobs = list(man["jobs"].values())
    return wall, man.get("wall_seconds"), jobs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DEFAULT)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--compare", action="append", default=[], metavar="KEY=VALUE",
                    help="also time a plots-off run with this --set override, alternated with the default "
                         "(3 runs each, median), and print the ratio; e.g. params.refine=median")
    ap.add_argument("--plots-repeat", type=int, default=1, metavar="N",
                    help="with N > 1, also time N more runs with plots off and N with plots on, alternated, "
                         "and print the ratio of the medians (single runs of either spread by several percent)")
    ap.add_argument("--against", metavar="CHECKOUT",
                    help="also time another checkout of dffbatch (e.g. a git worktree of main before a change) "
                         "with the default config, plots off, alternated with this one (3 runs each, median)")
    a = ap.parse_args()
    if not os.path.isdir(a.data):
        print(f"skipped: {a.data} is absent (../shared/datasets is not next to the project)")
        return
    sys.path.insert(0, ROOT)
    from dffbatch.batch.discover import discover
    stacks = discover({"path": a.data})
    n_frames = sum(len(s.files) for s in stacks)
    print(f"{len(stacks)} stacks, {n_frames} frames from {a.data}; {a.workers} workers, {os.cpu_count()} cores")
    dec, mpx = decode_only(stacks, a.workers)
    print(f"decode only (imageio/Pillow, {a.workers} spawned workers): {dec:6.2f} s  {mpx / dec:7.1f} MP-frames/s")
    with tempfile.TemporaryDirectory() as tmp:
        run_once(a.data, a.workers, False, tmp, "warm")  # Numba cache warm, files in page cache
        shutil.rmtree(os.path.join(tmp, "warm"))
        for plots in (False, True):
            wall, inner, jobs = run_once(a.data, a.workers, plots, tmp, f"plots_{plots}")
            ok = sum(j["status"] == "ok" for j in jobs)
            rss = max(j.get("peak_rss_mb", 0) for j in jobs)
            stage = {k: sum(j["timings"].get(k, 0) for j in jobs) for k in
                     ("read", "measure", "depth", "composite", "refine", "write", "plots")}
            print(f"plots {'on ' if plots else 'off'}: {wall:6.2f} s end to end (process start included; "
                  f"jobs {inner:.2f} s)  {mpx / wall:7.1f} MP-frames/s  {wall / dec:4.2f}x decode-only  "
                  f"{ok}/{len(jobs)} ok  peak RSS/worker {rss:.0f} MB")
            print("    summed stage seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in stage.items()))
        if a.plots_repeat > 1:
            walls = {False: [], True: []}
            for i in range(a.plots_repeat):
                for plots in (False, True):
                    w, _, _ = run_once(a.data, a.workers, plots, tmp, f"alt_{plots}{i}")
                    walls[plots].append(w)
                    shutil.rmtree(os.path.join(tmp, f"alt_{plots}{i}"))
            off, on = statistics.median(walls[False]), statistics.median(walls[True])
            print(f"plots on {on:.2f} s vs off {off:.2f} s (median of {a.plots_repeat}, alternated): "
                  f"{on / off - 1:+.1%}   runs: {walls}")
        if a.compare:
            walls = {"default": [], "compare": []}
            for i in range(3):
                for tag, sets in (("default", ()), ("compare", a.compare)):
                    w, _, _ = run_once(a.data, a.workers, False, tmp, f"{tag}{i}", sets)
                    walls[tag].append(w)
                    shutil.rmtree(os.path.join(tmp, f"{tag}{i}"))
            md, mc = sorted(walls["default"])[1], sorted(walls["compare"])[1]
            print(f"default {md:.2f} s vs {' '.join(a.compare)} {mc:.2f} s (median of 3, alternated, plots off): "
                  f"{md / mc:.2f}x   runs: {walls}")
        if a.against:
            against(a, tmp)
    for tool in ("enfuse", "focusweave"):
        print(f"{tool}: {'found at ' + shutil.which(tool) if shutil.which(tool) else 'not installed, not compared'}")


def against(a, tmp):
    other = os.path.abspath(a.against)
    run_once(a.data, a.workers, False, tmp, "warm_other", root=other)  # its own Numba cache, warm
    shutil.rmtree(os.path.join(tmp, "warm_other"))
    walls = {"this": [], "other": []}
    for i in range(3):
        for tag, root in (("other", other), ("this", ROOT)):
            w, _, _ = run_once(a.data, a.workers, False, tmp, f"{tag}{i}", root=root)
            walls[tag].append(w)
            shutil.rmtree(os.path.join(tmp, f"{tag}{i}"))
    mt, mo = sorted(walls["this"])[1], sorted(walls["other"])[1]
    print(f"this checkout {mt:.2f} s vs {other} {mo:.2f} s (median of 3, alternated, plots off): "
          f"{mt / mo:.3f}x   runs: {walls}")


if __name__ == "__main__":
    main()
