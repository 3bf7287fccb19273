"""Soak test (not in CI): a large run under real faults, checked against a clean run.

    python benchmarks/soak.py --stacks 1000 [--corrupt 0.05] [--hostile 0.1] [--kill-every 3]
                              [--dask-kills 2] [--seed 0]
    python benchmarks/soak.py --data DIR [...]      # a real directory (e.g. focus_stack) instead

1. The dataset: ``--stacks`` small stacks rendered here (4 frames of 64 x 64, each its own
   texture and focus), ``--hostile`` of them in folders with hostile names (spaces,
   unicode, shell metacharacters, quotes, leading dashes, 180-character names); or the
   stacks of ``--data``. A clean run gives the reference output hashes.
2. A copy (healthy frames as symlinks) gets ``--corrupt`` of its stacks broken: one frame
   each replaced by truncated or garbage bytes.
3. Local backend: the run over the copy while a killer SIGKILLs a random worker process
   every ``--kill-every`` seconds; the same command is re-run (resume) until it exits
   without being killed, at most 5 times.
4. Dask: a real local cluster started here (``dask scheduler`` and two ``dask worker``
   processes, each with its nanny), the same run into a fresh run folder with
   ``--dask-address``; ``--dask-kills`` times, as the run passes 1/3 and 2/3 of its jobs,
   a worker process is SIGKILLed (its nanny starts another).
5. For each: every healthy stack is byte-identical to the clean run, every broken stack
   is recorded as failed naming its corrupted file, and the run store passes its
   integrity check (SQLite's, each ok job's files against their recorded hashes, the
   manifest against the store). Prints a table; exit 1 on any loss.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

import numpy as np
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
DEFAULT = os.path.join(os.path.dirname(ROOT), "shared", "datasets", "seed", "focus_stack")
HOSTILE = ["with space {i}", "ünïcødé-{i}", "$(touch pwned){i}", "semi;colon&{i}", "quote'\"{i}", "-dash{i}",
           "..dots{i}", "long_" + "x" * 175 + "{i}", "<script>{i}", "back\\slash{i}", "star*q?{i}", "%s%n{i}"]


def render(root, n, hostile, rng):
    """``n`` small stacks of 4 PNG frames; a share ``hostile`` under hostile folder names."""
    from dffbatch.stages.write import write_png
    names = []
    for i in range(n):
        name = rng.choice(HOSTILE).format(i=i) if rng.random() < hostile else f"s{i:05d}"
        folder = os.path.join(root, name)
        os.makedirs(folder)
        gen = np.random.default_rng(i)
        tex = gen.random((64, 64, 3)) * 255
        sharp = i % 4
        for k in range(4):
            w = 1.0 - 0.3 * abs(k - sharp)
            write_png(os.path.join(folder, f"f{k}.png"), np.clip(128 + (tex - 128) * w, 0, 255).astype(np.uint8))
        names.append(name)
    return names


def stacks_of(data):
    """{stack id: [files]} as a run of dffbatch names them (the runner's own plan)."""
    from dffbatch.batch.config import config_for_paths
    from dffbatch.batch.runner import plan
    stacks = plan(config_for_paths([data], os.path.join(os.path.dirname(data), "no-output")))[0]
    return {s.id: s.files for s in stacks}


def run(cmd, kill_every=None, rng=None):
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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
                except (ProcessLookupError, psutil.NoSuchProcess):
                    pass
    out, _ = p.communicate()
    return p.returncode, out, kills


def records(run_dir):
    with open(os.path.join(run_dir, "manifest.json"), encoding="utf-8") as fh:
        return json.load(fh)["jobs"]


def integrity(run_dir) -> list:
    """Problems with a run's record: SQLite's own check, each ok job's files against the
    hashes recorded for them, the manifest against the store."""
    problems = []
    db = sqlite3.connect(f"file:{os.path.join(run_dir, 'jobs.sqlite')}?mode=ro", uri=True)
    if db.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
        problems.append(f"{run_dir}: jobs.sqlite fails SQLite's integrity check")
    stored = {i: json.loads(r) for i, r in db.execute("SELECT id, record FROM jobs")}
    db.close()
    man = records(run_dir)
    if set(man) != set(stored):
        problems.append(f"{run_dir}: manifest.json lists {len(man)} jobs, the store {len(stored)}")
    for jid, rec in stored.items():
        if rec["status"] != "ok":
            continue
        for name, digest in rec["outputs"].items():
            path = os.path.join(run_dir, jid, name)
            try:
                with open(path, "rb") as fh:
                    ok = hashlib.sha256(fh.read()).hexdigest() == digest
            except OSError:
                ok = False
            if not ok:
                problems.append(f"{path}: missing or not the bytes recorded")
    return problems


def check(run_dir, ref, broken, stacks):
    """(healthy identical, healthy, broken named, broken, problems)."""
    problems = integrity(run_dir)
    jobs = records(run_dir)
    healthy = identical = named = 0
    for jid, rec in jobs.items():
        stack = jid.split("/", 1)[1]
        if stack in broken:
            if rec["status"] == "failed" and broken[stack] in (rec.get("error") or ""):
                named += 1
            else:
                problems.append(f"{jid}: expected a failure naming {broken[stack]}, got {rec['status']} "
                                f"{rec.get('error')}")
        else:
            healthy += 1
            if rec["status"] == "ok" and rec["outputs"] == ref.get(jid, {}).get("outputs"):
                identical += 1
            else:
                problems.append(f"{jid}: healthy stack differs from the clean run or failed: {rec.get('error')}")
    missing = set(stacks) - {j.split("/", 1)[1] for j in jobs}
    problems += [f"{s}: no record" for s in sorted(missing)]
    return identical, healthy, named, len(broken), problems


class DaskCluster:
    """``dask scheduler`` and two ``dask worker`` processes (each with its nanny), started here."""

    def __init__(self, tmp):
        self.file = os.path.join(tmp, "scheduler.json")
        env = {**os.environ, "PYTHONPATH": ROOT}
        common = dict(cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.scheduler = subprocess.Popen(["dask", "scheduler", "--scheduler-file", self.file, "--port", "0",
                                           "--dashboard-address", ":0"], **common)
        deadline = time.monotonic() + 60
        while not os.path.exists(self.file) and time.monotonic() < deadline:
            time.sleep(0.2)
        with open(self.file) as fh:
            self.address = json.load(fh)["address"]
        self.nannies = [subprocess.Popen(["dask", "worker", "--scheduler-file", self.file, "--nthreads", "1",
                                          "--memory-limit", "0", "--no-dashboard"], **common) for _ in range(2)]
        from distributed import Client
        with Client(self.address, timeout="60s") as c:
            c.wait_for_workers(2, timeout=120)

    def kill_a_worker(self, rng) -> bool:
        """SIGKILL one worker process (not its nanny, which then starts another)."""
        import psutil
        procs = [k for n in self.nannies for k in psutil.Process(n.pid).children(recursive=True)]
        if not procs:
            return False
        os.kill(rng.choice(procs).pid, signal.SIGKILL)
        return True

    def close(self):
        for p in [*self.nannies, self.scheduler]:
            p.terminate()
        for p in [*self.nannies, self.scheduler]:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def dask_run(cfg, cluster, run_dir, n_jobs, kills, rng):
    """The run on the cluster, a worker killed as it passes each 1/(kills+1) of its jobs."""
    p = subprocess.Popen([sys.executable, "-m", "dffbatch", cfg, "--no-progress", "--dask-address", cluster.address],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    done_kills, marks = 0, [n_jobs * (k + 1) // (kills + 1) for k in range(kills)]
    store = os.path.join(run_dir, "jobs.sqlite")
    while p.poll() is None and marks:
        time.sleep(0.2)
        try:
            db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1)
            n = db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
            db.close()
        except sqlite3.Error:
            continue
        if n >= marks[0]:
            marks.pop(0)
            done_kills += cluster.kill_a_worker(rng)
    out, _ = p.communicate()
    return p.returncode, out, done_kills


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stacks", type=int, default=1000, help="stacks to render (ignored with --data)")
    ap.add_argument("--data", help="a real directory of stacks instead (e.g. the 100-stack focus_stack)")
    ap.add_argument("--corrupt", type=float, default=0.05, help="share of stacks with one corrupted frame")
    ap.add_argument("--hostile", type=float, default=0.1, help="share of rendered stacks with hostile names")
    ap.add_argument("--kill-every", type=float, default=3.0, help="seconds between worker kills (local backend)")
    ap.add_argument("--dask-kills", type=int, default=2, help="Dask worker processes killed during that run")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.data and not os.path.isdir(a.data):
        print(f"skipped: {a.data} is absent")
        return 0
    rng = random.Random(a.seed)
    tmp = tempfile.mkdtemp(prefix="dffbatch-soak-")
    data = a.data or os.path.join(tmp, "stacks")
    if not a.data:
        render(data, a.stacks, a.hostile, rng)
    stacks = stacks_of(data)
    base = {"outputs": {"plots": False, "report": True}, "execution": {"workers": 2, "max_jobs": 100000}}
    runs = os.path.join(tmp, "runs")  # beside the data, not above it: discovery skips the output root

    def config(name, dataset):
        path = os.path.join(tmp, f"{name}.yaml")
        with open(path, "w", encoding="utf-8") as fh:
            yaml.safe_dump({**base, "run": {"name": name, "output": runs}, "datasets": [dataset]}, fh)
        return path

    t = time.perf_counter()
    rc, out, _ = run([sys.executable, "-m", "dffbatch", config("clean", data), "--no-progress"])
    assert rc == 0, out[-2000:]
    ref = records(os.path.join(runs, "clean"))
    print(f"clean run: {len(ref)} jobs in {time.perf_counter() - t:.1f} s")

    # the copy: every frame a symlink, except one frame of each broken stack
    copy = os.path.join(tmp, "copy", os.path.basename(data.rstrip(os.sep)))  # same name: same stack ids
    by_file = {}
    for sid, files in stacks.items():
        for f in files:
            by_file[f] = sid
    broken_ids = set(rng.sample(sorted(stacks), max(1, int(a.corrupt * len(stacks)))))
    bad = {}
    for sid in broken_ids:
        bad[sid] = rng.choice(stacks[sid])
    every = [os.path.join(d, f) for d, _, fs in os.walk(data) for f in fs]  # the whole tree, not only stacks
    for f in every:
        sid = by_file.get(f)
        dst = os.path.join(copy, os.path.relpath(f, data))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if sid is not None and bad.get(sid) == f:
            with open(f, "rb") as fh:
                raw = fh.read()
            with open(dst, "wb") as fh:
                fh.write(raw[: len(raw) // 3] if rng.random() < 0.5 else os.urandom(2048))
        else:
            os.symlink(f, dst)
    soak_stacks = stacks_of(copy)
    assert sorted(soak_stacks) == sorted(stacks), "the copy must discover as the original"
    broken = {sid: os.path.basename(bad[sid]) for sid in broken_ids}
    rows = []

    # local backend, workers killed every few seconds, resumed until done
    cfg = config("soak", copy)
    t = time.perf_counter()
    rc, out, kills = run([sys.executable, "-m", "dffbatch", cfg, "--no-progress"], a.kill_every, rng)
    jobs = records(os.path.join(runs, "soak"))
    retried = sum(1 for r in jobs.values() if (r.get("attempts") or 1) > 1)
    # a job whose worker died on each of its tries is recorded failed (it may be the one
    # killing its worker); under a random killer that is bad luck, and the resume redoes it
    unlucky = sum(1 for r in jobs.values() if "worker process died" in (r.get("error") or ""))
    reruns = 0
    for _ in range(5):  # the same command again, without the killer, until it ends by itself
        rc, out, _ = run([sys.executable, "-m", "dffbatch", cfg, "--no-progress"])
        reruns += 1
        if rc in (0, 1) and "interrupted" not in out:
            break
    took = time.perf_counter() - t
    rows.append(("local", kills, 0, f"{retried} ({unlucky} failed twice)", reruns, took,
                 check(os.path.join(runs, "soak"), ref, broken, stacks)))

    # a real Dask cluster, a worker process killed twice
    cluster = DaskCluster(tmp)
    try:
        cfg = config("soak-dask", copy)
        t = time.perf_counter()
        rc, out, dkills = dask_run(cfg, cluster, os.path.join(runs, "soak-dask"), len(stacks), a.dask_kills, rng)
        took = time.perf_counter() - t
    finally:
        cluster.close()
    if rc not in (0, 1):
        print(out[-3000:])
    rows.append(("dask", 0, dkills, 0, 0, took, check(os.path.join(runs, "soak-dask"), ref, broken, stacks)))

    n_bad = len(broken)
    hostile = sum(1 for s in stacks if not s.startswith("stacks__s") and not a.data)
    print(f"\n{len(stacks)} stacks ({hostile} with hostile names), {n_bad} with a corrupted frame; seed {a.seed}\n")
    print("| backend | worker kills | Dask worker losses | jobs retried | resumes | seconds | "
          "healthy byte-identical | broken naming the file | lost |")
    print("|---|---|---|---|---|---|---|---|---|")
    problems = []
    for name, k, dk, retried, reruns, took, (ident, healthy, named, nbroken, probs) in rows:
        print(f"| {name} | {k} | {dk} | {retried} | {reruns} | {took:.0f} | {ident}/{healthy} | {named}/{nbroken} | "
              f"{len(probs)} |")
        problems += [f"{name}: {p}" for p in probs]
    if rows[0][1] == 0:
        problems.append("local: no worker was killed: the fault path was not exercised (lower --kill-every)")
    if a.dask_kills and rows[1][2] == 0:
        problems.append("dask: no worker was killed")
    for p in problems[:50]:
        print("PROBLEM", p)
    print("soak: PASS" if not problems else f"soak: FAIL ({len(problems)} problems)")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
