"""Soak test (not in CI): corrupted frames and killed workers, run to completion.

    python benchmarks/soak.py [--data DIR] [--corrupt 0.05] [--kill-every 2.0] [--seed 0]

1. A clean run of the focus_stack directory gives the reference output hashes.
2. A copy of the directory (healthy frames as symlinks) gets ``--corrupt`` of its
   frames replaced by truncated or garbage bytes.
3. The run over the copy is started while a killer SIGKILLs a random worker process
   every ``--kill-every`` seconds; then the same command is re-run (resume) until it
   exits without killing, at most 5 times.
4. Asserts: every healthy stack's outputs are byte-identical to the clean run, every
   broken stack is recorded as failed with the corrupted file named.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT = os.path.join(os.path.dirname(ROOT), "shared", "datasets", "seed", "focus_stack")


def run(cfg, kill_every=None, rng=None):
    p = subprocess.Popen([sys.executable, "-m", "dffbatch", cfg, "--no-progress"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    kills = 0
    if kill_every:
        import psutil
        while p.poll() is None:
            time.sleep(kill_every * (0.5 + rng.random()))
            try:
                kids = psutil.Process(p.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                break
            workers = [k for k in kids if "spawn_main" in " ".join(k.cmdline() or [])]
            if workers:
                try:
                    os.kill(rng.choice(workers).pid, signal.SIGKILL)
                    kills += 1
                except ProcessLookupError:
                    pass
    out, _ = p.communicate()
    return p.returncode, out, kills


def manifest(run_dir):
    with open(os.path.join(run_dir, "manifest.json")) as fh:
        return json.load(fh)["jobs"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DEFAULT)
    ap.add_argument("--corrupt", type=float, default=0.05)
    ap.add_argument("--kill-every", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if not os.path.isdir(a.data):
        print(f"skipped: {a.data} is absent")
        return 0
    rng = random.Random(a.seed)
    tmp = tempfile.mkdtemp(prefix="dffbatch-soak-")
    base = {"outputs": {"plots": False, "report": True}, "execution": {"workers": 2}}
    clean_cfg = os.path.join(tmp, "clean.yaml")
    yaml.safe_dump({**base, "run": {"name": "clean", "output": tmp}, "datasets": [a.data]}, open(clean_cfg, "w"))
    t = time.perf_counter()
    rc, out, _ = run(clean_cfg)
    assert rc == 0, out
    print(f"clean run: {time.perf_counter() - t:.1f} s")
    ref = manifest(os.path.join(tmp, "clean"))

    copy = os.path.join(tmp, os.path.basename(a.data.rstrip("/")))
    os.makedirs(copy)
    files = sorted(os.listdir(a.data))
    bad = set(rng.sample(files, max(1, int(a.corrupt * len(files)))))
    for f in files:
        dst = os.path.join(copy, f)
        if f in bad:
            data = open(os.path.join(a.data, f), "rb").read()
            open(dst, "wb").write(data[: len(data) // 3] if rng.random() < 0.5 else os.urandom(2048))
        else:
            os.symlink(os.path.join(a.data, f), dst)
    soak_cfg = os.path.join(tmp, "soak.yaml")
    yaml.safe_dump({**base, "run": {"name": "soak", "output": tmp}, "datasets": [copy]}, open(soak_cfg, "w"))
    t = time.perf_counter()
    rc, out, kills = run(soak_cfg, a.kill_every, rng)
    print(f"soak run with {len(bad)} corrupted frames, {kills} workers killed: exit {rc}, "
          f"{time.perf_counter() - t:.1f} s")
    for i in range(5):
        rc, out, _ = run(soak_cfg)
        if rc in (0, 1) and "interrupted" not in out:
            break
    problems = []
    want = 1 if bad else 0  # corrupted frames must fail their jobs (exit 1); without any, all succeed
    if rc != want:
        problems.append(f"the final run exited {rc}, not {want}: {out[-500:]}")
    if kills == 0:
        problems.append("no worker was killed during the soak run: the fault path was not exercised "
                        "(lower --kill-every)")
    jobs = manifest(os.path.join(tmp, "soak"))
    broken_stacks = {f.split("__")[0] for f in bad}
    healthy = identical = failed_ok = 0
    for jid, rec in jobs.items():
        stack = jid.split("/")[1].split("__")[-1]
        if stack in broken_stacks:
            names = [f for f in bad if f.split("__")[0] == stack]
            if rec["status"] == "failed" and any(n in rec["error"] for n in names):
                failed_ok += 1
            else:
                problems.append(f"{jid}: expected a failure naming {names}, got {rec['status']} {rec.get('error')}")
        else:
            healthy += 1
            if rec["status"] == "ok" and rec["outputs"] == ref[jid]["outputs"]:
                identical += 1
            else:
                problems.append(f"{jid}: healthy stack differs or failed: {rec.get('error')}")
    retried = sum(1 for r in jobs.values() if (r.get("attempts") or 1) > 1)
    print(f"healthy stacks byte-identical to the clean run: {identical}/{healthy}; broken stacks failed with "
          f"the file named: {failed_ok}/{len(jobs) - healthy}; jobs retried after a kill: {retried}")
    for p in problems:
        print("PROBLEM", p)
    print("soak: PASS" if not problems else "soak: FAIL")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
