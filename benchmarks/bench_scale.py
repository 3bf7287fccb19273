"""Cost per job as the number of stacks grows, resume of a finished run, one deep stack.

    python benchmarks/bench_scale.py [--n 500 2000 10000] [--workers 2] [--keep DIR]
    python benchmarks/bench_scale.py --deep [--frames 300] [--root OTHER_CHECKOUT]

``--deep``: one stack of 300 frames of 1024 x 1024 16-bit PNG (a microscope z-series),
default config, plots off, workers auto (one job: one worker with every core); prints
the wall time and the SHA-256 of every output, so that two checkouts (``--root``: run
the runner of another checkout, e.g. a ``git worktree`` of an older commit) can be
compared for speed and for identical bytes.

Generates N tiny stacks (8 frames of 128 x 128 PNG, hard links to one set of frames,
one folder per stack), runs the batch runner on them (plots and report off), then runs
the same config again (a resume with nothing to do). Prints wall time, time per job,
the parent's peak RSS and the resume time for each N.
"""
import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def make_stacks(folder, n, frames=8, size=128, links_per_copy=50_000):
    """N stack folders of hard links to one set of frames (a fresh copy of the set every
    ``links_per_copy`` stacks: ext4 allows 65 000 links to one file)."""
    import imageio.v3 as iio
    from dffbatch.truth.synth import render_stack
    fr, *_ = render_stack("slant", "noise", (size, size), frames, layers_per_frame=2, seed=0)
    data = os.path.join(folder, "data")
    names = []
    for i in range(n):
        if i % links_per_copy == 0:
            src = os.path.join(folder, f"_frames{i // links_per_copy}")
            os.makedirs(src, exist_ok=True)
            names = []
            for k, f in enumerate(fr):
                p = os.path.join(src, f"f{k:02d}.png")
                iio.imwrite(p, f)
                names.append(p)
        d = os.path.join(data, f"s{i:06d}")
        os.makedirs(d)
        for p in names:
            os.link(p, os.path.join(d, os.path.basename(p)))
    return data


def make_deep(folder, n, size=1024):
    """n frames of a smooth 16-bit scene whose fine texture comes into focus at a slant."""
    import imageio.v3 as iio
    import numpy as np
    rng = np.random.default_rng(0)
    data = os.path.join(folder, "deep")
    os.makedirs(data, exist_ok=True)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    base = 20000 + 8000 * np.sin(x / 97.0) * np.cos(y / 131.0)
    tex = rng.standard_normal((size, size)).astype(np.float32)
    focus = (x / size) * (n - 1)  # the frame where each column is sharp
    for k in range(n):
        a = np.exp(-0.5 * ((k - focus) / 8.0) ** 2)  # texture contrast: high in focus
        img = base + 3000 * a * tex + 200 * rng.standard_normal((size, size)).astype(np.float32)
        iio.imwrite(os.path.join(data, f"z{k:03d}.png"), np.clip(img, 0, 65535).astype(np.uint16))
    return data


def deep(a):
    import json
    import yaml
    folder = a.keep or tempfile.mkdtemp(prefix="bench_deep_")
    try:
        data = os.path.join(folder, "deep")
        if not os.path.isdir(data) or len(os.listdir(data)) != a.frames:
            t = time.perf_counter()
            make_deep(folder, a.frames)
            print(f"generated {a.frames} frames of 1024x1024 16-bit PNG in {time.perf_counter() - t:.0f} s")
        root = os.path.abspath(a.root or ROOT)
        cfg = os.path.join(folder, "deep.yaml")
        walls = []
        for i in range(a.repeat):
            out = os.path.join(folder, f"out{i}")
            shutil.rmtree(out, ignore_errors=True)
            with open(cfg, "w") as fh:
                yaml.safe_dump({"run": {"name": "deep", "output": out}, "datasets": [{"path": data}],
                                "outputs": {"plots": False, "report": False}}, fh)
            env = dict(os.environ, PYTHONPATH=root)
            t = time.perf_counter()
            sets = [x for kv in a.set for x in ("--set", kv)]
            r = subprocess.run([sys.executable, "-m", "dffbatch", cfg, "--no-progress", *sets], cwd=root, env=env,
                               capture_output=True, text=True)
            walls.append(time.perf_counter() - t)
            if r.returncode != 0:
                raise SystemExit(r.stdout + r.stderr)
        rec = next(iter(json.load(open(os.path.join(out, "deep", "manifest.json")))["jobs"].values()))
        print(f"{root}: one stack of {a.frames} frames: {min(walls):.2f} s (best of {a.repeat}; runs "
              f"{', '.join(f'{w:.2f}' for w in walls)}); job timings {rec['timings']}")
        for name, digest in sorted(rec["outputs"].items()):
            print(f"  {name} {digest}")
    finally:
        if not a.keep:
            shutil.rmtree(folder, ignore_errors=True)


def run(cfg_path, extra=()):
    t = time.perf_counter()
    # the runner in a child process: its peak RSS is the parent's (workers are its children)
    code = ("import resource, sys; from dffbatch.cli import main; rc = main(sys.argv[1:]); "
            "u = resource.getrusage(resource.RUSAGE_SELF); from dffbatch.batch.jobs import peak_rss; "
            "print('PEAK_RSS_MB', peak_rss() / 2**20, u.ru_utime + u.ru_stime); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, cfg_path, "--no-progress", *extra], cwd=ROOT,
                       capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        print(r.stdout[-2000:], r.stderr[-2000:])
        raise SystemExit(f"run failed with status {r.returncode}")
    line = next(l.split() for l in r.stdout.splitlines() if l.startswith("PEAK_RSS_MB"))
    return wall, float(line[1]), float(line[2]), r.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[500, 2000, 10000])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", help="work in this folder and keep it (default: a temporary one)")
    ap.add_argument("--report", action="store_true", help="write the HTML report too (off by default)")
    ap.add_argument("--deep", action="store_true", help="time one deep stack instead")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--root", help="with --deep: run the runner of this checkout")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="with --deep: passed to the runner, e.g. params.refine=median to compare "
                         "with a checkout whose default differs (same bytes need the same parameters)")
    a = ap.parse_args()
    if a.deep:
        return deep(a)
    import yaml
    base = a.keep or tempfile.mkdtemp(prefix="bench_scale_")
    print(f"{os.cpu_count()} cores, {a.workers} workers; tiny stacks: 8 frames of 128x128 PNG")
    print(f"{'N':>7} {'run s':>8} {'ms/job':>8} {'resume s':>9} {'parent peak RSS MB':>19} {'parent CPU ms/job':>18}")
    try:
        for n in a.n:
            folder = os.path.join(base, f"n{n}")
            shutil.rmtree(folder, ignore_errors=True)
            data = make_stacks(folder, n)
            cfg = os.path.join(folder, "cfg.yaml")
            with open(cfg, "w") as fh:
                yaml.safe_dump({"run": {"name": "r", "output": os.path.join(folder, "out")},
                                "datasets": [{"path": data}], "outputs": {"plots": False, "report": a.report},
                                "execution": {"workers": a.workers, "max_jobs": max(100000, n)}}, fh)
            wall, rss, cpu, _ = run(cfg)
            resume, _, _, out = run(cfg)
            assert f"nothing to do: all {n} jobs already done" in out, out[-500:]
            print(f"{n:7d} {wall:8.1f} {wall / n * 1e3:8.2f} {resume:9.2f} {rss:19.0f} {cpu / n * 1e3:18.2f}",
                  flush=True)
            if not a.keep:
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        if not a.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
