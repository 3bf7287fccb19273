"""The batch runner: config -> discover -> plan jobs -> fan out -> manifest, summary, report.

A thin layer over :func:`dffbatch.batch.jobs.run_job`; see ``configs/README.md``.
"""
from __future__ import annotations

import datetime as _dt
import errno
import json
import logging
import os
import platform
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import yaml

from .. import __version__
from .config import ConfigError, expand_sweep, load_config, sweep_id
from .discover import RUN_MARKER, discover
from .jobs import estimate_memory, make_job
from ..report.page import write_report, write_summary
from .schedule import make_backend
from .store import RunStore
from ..stages.write import atomic_chunks, sha256_file, write_json, write_text

__all__ = ["run", "RunLockedError"]

log = logging.getLogger("dffbatch")


class RunLockedError(Exception):
    pass


def _now():
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def _versions():
    from importlib.metadata import version  # the parent does not import Numba
    v = {"dffbatch": __version__, "python": platform.python_version(), "numpy": version("numpy"),
         "numba": version("numba")}
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        v["git"] = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True,
                                  timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        v["git"] = None
    return v


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """``.lock`` in the run folder holding the owner's PID and host; stale locks are taken over."""

    def __init__(self, run_dir):
        self.path = os.path.join(run_dir, ".lock")
        self.held = False

    def acquire(self):
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": _now()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    with open(self.path, encoding="utf-8") as fh:
                        other = json.load(fh)
                except (OSError, ValueError):
                    other = {}
                same_host = other.get("host") == me["host"]
                if same_host and isinstance(other.get("pid"), int) and not _pid_alive(other["pid"]):
                    os.unlink(self.path)  # stale: its process is gone
                    continue
                raise RunLockedError(f"{self.path}: run folder is in use by pid {other.get('pid')} on "
                                     f"{other.get('host')} since {other.get('since')}; wait for it or remove "
                                     "the lock if that process is gone") from None
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self.held = True
            return
        raise RunLockedError(f"{self.path}: cannot take the run lock")

    def release(self):
        if self.held:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            self.held = False


class _DiscoveryProgress:
    """A line on stderr, refreshed at most once a second, while discovery runs long."""

    def __init__(self, enabled):
        self.enabled, self.t0, self.last, self.shown = enabled, time.monotonic(), 0.0, False

    def __call__(self, n_before, n):
        now = time.monotonic()
        if self.enabled and now - self.t0 > 1.0 and now - self.last > 1.0:
            print(f"\rdffbatch: discovering stacks: {n_before + n} found so far", end="", file=sys.stderr, flush=True)
            self.last, self.shown = now, True

    def done(self, n):
        if self.shown:
            print(f"\rdffbatch: discovering stacks: {n} found in {time.monotonic() - self.t0:.1f} s", file=sys.stderr)


def plan(cfg, skipped=None, progress=False, source="config", allow_empty=False, visited=None):
    """Discover stacks and build the jobs (stack x sweep point) of a resolved config.

    ``skipped``, if a list, receives ``(path, reason)`` for each folder discovery passed over.
    ``allow_empty``: a dataset without a stack is no error (watch mode: not there yet);
    ``visited``, if a list, receives every folder discovery read.
    """
    stacks, decisions = [], []
    seen = set()
    out_root = cfg["run"]["output"]
    line = _DiscoveryProgress(progress)
    for i, entry in enumerate(cfg["datasets"]):
        n_before = len(stacks)
        try:
            found = discover(entry, skip_dirs=[out_root], skipped=skipped, progress=lambda n: line(n_before, n),
                             visited=visited)
        except ValueError as exc:  # a channel the file does not have
            raise ConfigError(f"{source}: datasets[{i}].channel: {exc}") from None
        if not found and not allow_empty:
            raise ConfigError(f"{source}: datasets[{i}].path: no focus stack (>= 2 images) found under "
                              f"{entry['path']}")
        for s in found:
            base, n = s.id, 2
            while s.id in seen:  # same id from two entries: keep both
                s.id = f"{base}-{n}"
                n += 1
            seen.add(s.id)
            decisions.append((s.id, s.layout, len(s.files) if not s.multipage else "pages", s.notes))
        stacks += found
    line.done(len(stacks))
    points = expand_sweep(cfg)
    outputs = {k: cfg["outputs"][k] for k in ("plots", "mesh", "plot_grid", "report", "formats", "tiff_compression",
                                                "depth_near")}
    run_dir = os.path.join(cfg["run"]["output"], cfg["run"]["name"])
    max_pixels = cfg["execution"]["max_pixels"]
    bad = cfg["execution"]["on_bad_frame"]
    jobs = [make_job(s, p, sweep_id(p), run_dir, outputs, max_pixels, bad) for p in points for s in stacks]
    return stacks, points, jobs, decisions, run_dir


def _is_done(job, rec, run_dir):
    """A finished job whose inputs, parameters and output files all still match.

    Outputs are checked by the size and modification time recorded when they were
    written (``output_stats``; one stat per file, so resuming 100 000 jobs takes
    seconds); records without them (older runs) by their SHA-256.
    """
    if not rec or rec.get("status") != "ok" or rec.get("key") != job["key"]:
        return False
    stats = rec.get("output_stats")
    for name, digest in rec.get("outputs", {}).items():
        p = os.path.join(job["out_dir"], name)
        try:
            if stats and name in stats:
                st = os.stat(p)
                if [st.st_size, st.st_mtime_ns] != stats[name]:
                    return False
            elif sha256_file(p) != digest:
                return False
        except OSError:
            return False
    return True


def _write_manifest(path, manifest, store, ids=None):
    """``manifest.json`` streamed from the store: the run's fields, then every job record."""
    head = json.dumps({k: v for k, v in manifest.items() if k != "jobs"}, indent=2, default=str)

    def chunks():
        yield head[:-2].encode() + b',\n  "jobs": {'
        first = True
        for rec in store.records(ids):
            item = json.dumps(rec["id"]) + ": " + json.dumps(rec, default=str)
            yield (("\n    " if first else ",\n    ") + item).encode()
            first = False
        yield b"\n  }\n}\n"
    atomic_chunks(path, chunks())


#: Seconds between refreshes of manifest.json and summary.csv while a run goes on.
REFRESH_SECONDS = 60.0


#: Exit status of a run stopped by a full output disk (EX_TEMPFAIL: free space, run again).
EXIT_DISK_FULL = 75
_FULL = (errno.ENOSPC, errno.EDQUOT)


def _disk_full(exc) -> bool:
    """An error that says the output disk (or the user's quota) is full."""
    return (isinstance(exc, OSError) and exc.errno in _FULL) or \
        (isinstance(exc, sqlite3.OperationalError) and "full" in str(exc))


def run(config_path, overrides=(), dry_run=False, force=False, progress=True, out=None, cfg=None) -> int:
    """Run a config; return the exit status (0 all ok, 1 some job failed, 2 bad config, 130 interrupted,
    75 the output disk is full: no new job was started after the first write that found it full).

    ``cfg``: a config already resolved (``dffbatch PATH...``: see
    :func:`dffbatch.batch.config.config_for_paths`); ``config_path`` then only names it.
    """
    out = out or sys.stdout
    cfg = cfg if cfg is not None else load_config(config_path, overrides)
    skipped = []
    stacks, points, jobs, decisions, run_dir = plan(cfg, skipped, progress, str(config_path))
    max_jobs = cfg["execution"]["max_jobs"]
    if dry_run:
        for path, why in skipped:
            print(f"skipped {path}: {why}", file=out)
        for sid, layout, n, notes in decisions:
            print(f"stack {sid}: layout {layout}, {n} frames" + "".join(f"; {x}" for x in notes), file=out)
        for j in jobs:
            print(f"job {j['id']}", file=out)
        print(f"{len(stacks)} stacks, {len(points)} sweep points, {len(jobs)} jobs -> {run_dir}", file=out)
        return 0
    stacks = decisions = None  # the jobs keep what they need (file lists): 0.6 KB per stack less
    if len(jobs) > max_jobs:
        raise ConfigError(f"{config_path}: execution.max_jobs: the run has {len(jobs)} jobs, more than "
                          f"{max_jobs}; raise execution.max_jobs (e.g. --set execution.max_jobs={len(jobs)}) "
                          "if that is intended")
    os.makedirs(run_dir, exist_ok=True)
    mark_run_folder(run_dir, cfg["run"]["name"])
    lock = RunLock(run_dir)
    lock.acquire()
    try:
        return _execute(cfg, config_path, jobs, run_dir, force, progress, out, skipped)
    finally:
        lock.release()


def _disk_full_line(manifest, unwritten=None) -> str:
    """The one line a run stopped by a full disk ends with: the write that found it full
    (``manifest["disk_full"]``, where a job or the store did), the run's own file that
    could not be written (``unwritten``), and what to do."""
    cause = f" ({manifest['disk_full']}): no job was started after it" if manifest.get("disk_full") else ""
    also = (", and" if cause else ":") + f" the manifest, summary and report could not be updated ({unwritten})" \
        if unwritten else ""
    return (f"dffbatch: disk full{cause}{also}; every file written is whole; free space, then run the same "
            "command again to resume")


def _source(config_path) -> str:
    """Where the run's config came from: the YAML file's full path, or the command line."""
    return os.path.abspath(str(config_path)) if os.path.isfile(str(config_path)) else str(config_path)


def mark_run_folder(run_dir, name):
    """Write the marker that keeps discovery out of this folder (see dffbatch.batch.discover)."""
    path = os.path.join(run_dir, RUN_MARKER)
    if not os.path.exists(path):
        write_text(path, json.dumps({"dffbatch_run": name, "created": _now()}) + "\n")


def _execute(cfg, config_path, jobs, run_dir, force, progress, out, skipped=()):
    handler = logging.FileHandler(os.path.join(run_dir, "run.log"), encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    mpath = os.path.join(run_dir, "manifest.json")
    store = RunStore(run_dir)
    try:
        return _execute_with(store, cfg, config_path, jobs, run_dir, force, progress, out, skipped, handler, mpath)
    finally:
        store.close()
        log.removeHandler(handler)
        handler.close()


def _execute_with(store, cfg, config_path, jobs, run_dir, force, progress, out, skipped, handler, mpath):
    write_text(os.path.join(run_dir, "config.yaml"),
               f"# resolved from {_source(config_path)} at {_now()}\n"
               + yaml.safe_dump(cfg, sort_keys=False))
    manifest = {"run": cfg["run"]["name"], "config": _source(config_path),
                "versions": _versions(), "host": socket.gethostname(), "started": _now(), "finished": None,
                "status": "running", "jobs_total": len(jobs), "jobs": {}}
    todo, resumed = [], []
    known = store.keys() if not force else {}
    for j in jobs:
        k = known.get(j["id"])
        rec = store.get(j["id"]) if k and k[0] == j["key"] and k[1] == "ok" else None
        if rec is not None and _is_done(j, rec, run_dir):
            if not rec.get("resumed"):
                rec["resumed"] = True
                resumed.append(rec)
                if len(resumed) >= 1000:  # written back in batches: memory stays small at any size
                    store.put_many(resumed)
                    resumed = []
        else:
            todo.append(j)
    store.put_many(resumed)
    n_done = len(jobs) - len(todo)
    known = resumed = None
    ids = [j["id"] for j in jobs]
    _write_manifest(mpath, manifest, store, ids)
    for path, why in skipped:
        log.info("skipped %s: %s", path, why)
    log.info("run %s: %d jobs, %d already done, %d to do", cfg["run"]["name"], len(jobs), n_done, len(todo))
    if not todo:  # a resume with nothing to do: one line, no workers started
        status, t0 = "finished", time.perf_counter()
    else:
        print(f"dffbatch: {len(jobs)} jobs ({len(jobs) - len(todo)} already done) -> {run_dir}", file=out)
        status, t0 = _run_todo(cfg, store, todo, manifest, mpath, ids, progress, out)
    wall = time.perf_counter() - t0
    manifest["finished"] = _now()
    manifest["status"] = status
    manifest["wall_seconds"] = round(wall, 3)
    try:
        _write_manifest(mpath, manifest, store, ids)
        write_summary(os.path.join(run_dir, "summary.csv"), store.records(ids))
        if cfg["outputs"]["report"]:
            write_report(run_dir, manifest, lambda: store.records(ids), n_jobs=len(ids))
    except (OSError, sqlite3.OperationalError) as exc:
        if not _disk_full(exc):
            raise
        log.error("disk full writing the manifest, summary or report: %s", exc)
        print(_disk_full_line(manifest, getattr(exc, "filename", None) or run_dir), file=out)
        return EXIT_DISK_FULL
    tally = store.tally(ids)
    n_ran = sum(tally.values())
    done = tally.get("ok", 0)
    n_failed = n_ran - done
    if not todo:
        print(f"dffbatch: nothing to do: all {len(jobs)} jobs already done; report "
              f"{os.path.join(run_dir, 'index.html')}", file=out)
    else:
        print(f"dffbatch: {status}: {done} ok, {n_failed} failed, {len(jobs) - n_ran} not run "
              f"in {wall:.1f}s; report {os.path.join(run_dir, 'index.html')}", file=out)
    for r in store.failures(ids):
        if r.get("errno") not in _FULL:
            print(f"  failed {r['id']}: {r['error']}", file=out)
    log.info("%s: %d ok, %d failed, %d not run", status, done, n_failed, len(jobs) - n_ran)
    if status == "disk full":
        print(_disk_full_line(manifest), file=out)
        return EXIT_DISK_FULL
    if status == "interrupted":
        print("dffbatch: interrupted; run the same command again to resume", file=out)
        return 130
    return 0 if not n_failed else 1


def _largest(todo, per_kind=8):
    """The jobs whose peak memory bounds the rest: for each kind of job (composite,
    refine, multipage), the ``per_kind`` with the largest first file and the
    ``per_kind`` with the most frames. One stat per job rather than one image header
    per job: 100 000 stacks cost a fraction of a second."""
    kinds = {}
    for j in todo:
        if j["files"]:
            kinds.setdefault((j["params"]["composite"], j["params"]["refine"], j["multipage"]), []).append(j)
    picked = {}
    for jobs in kinds.values():
        def size(j):
            try:
                return os.stat(j["files"][0]).st_size
            except OSError:
                return -1  # unreadable: estimate_memory counts it as 200 MB
        for key in (size, lambda j: len(j["files"])):
            for j in sorted(jobs, key=key, reverse=True)[:per_kind]:
                picked[j["id"]] = j
    return list(picked.values())


def _largest_first(todo):
    """The jobs in decreasing order of work (first file's bytes x number of files; one stat
    per job), ties in their given order: the longest start first, so the run does not end
    on one long stack while the other workers idle."""
    def work(j):
        try:
            return os.stat(j["files"][0]).st_size * len(j["files"]) if j["files"] else 0
        except OSError:
            return 0
    return sorted(todo, key=work, reverse=True)


def _run_todo(cfg, store, todo, manifest, mpath, ids, progress, out):
    """Fan the jobs out and record each as it ends; returns (status, start time)."""
    from tqdm import tqdm

    todo = _largest_first(todo)

    job_memory = max((estimate_memory(j["files"], j["params"], j["multipage"]) for j in _largest(todo)),
                     default=0)
    manifest["job_memory_estimate_mb"] = round(job_memory / 2 ** 20)
    from .jobs import kernel_threads
    from .warmup import Background, Interrupted
    backend = make_backend(cfg["execution"], max(1, len(todo)), job_memory)
    threads = kernel_threads(backend.threads)
    try:
        twins, background = _warm_up(todo, manifest, out, progress, threads)
    except Interrupted:  # Ctrl-C while compiling: no job has started, nothing is half-written
        log.info("interrupted while compiling the kernels")
        backend.close(cancel=True)
        return "interrupted", time.perf_counter()
    print(f"dffbatch: backend {backend.name}, {backend.workers} workers x {backend.threads} Numba threads",
          file=out)
    if getattr(backend, "dashboard", None):
        print(f"dffbatch: Dask dashboard {backend.dashboard}", file=out)
    log.info("backend %s: %d workers x %d threads; estimated peak memory per job %d MB",
             backend.name, backend.workers, backend.threads, job_memory >> 20)
    failures = 0
    status = "finished"
    t0 = time.perf_counter()

    def on_term(signum, frame):  # SIGTERM: stop like Ctrl-C
        raise KeyboardInterrupt

    prev_term = signal.signal(signal.SIGTERM, on_term) if _main_thread() else None
    if background is not None:
        background = Background(*background)
        log.info("kernels compile in the background while the jobs run: %s",
                 "the parallel ones, for later runs" if twins else "the aligned path")
    for job in todo:  # a first run's workers call the serial twins (dffbatch.stages.kernels)
        job["kernel_twins"] = twins
    bar = tqdm(total=len(todo), unit="job", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    next_refresh = time.monotonic() + REFRESH_SECONDS
    try:
        for rec in backend.run(todo):
            full = rec["error"] if rec.get("errno") in _FULL else None
            try:
                store.put(rec)
            except (OSError, sqlite3.OperationalError) as exc:
                if not _disk_full(exc):
                    raise
                full = full or f"{store.path}: {exc}"
            if full:  # every job after it would fail alike: stop starting them; a resume redoes this one
                status, manifest["disk_full"] = "disk full", full
                log.error("disk full: %s; no new job started", full)
                backend.close(cancel=True)
                break
            if time.monotonic() >= next_refresh:  # a look at a long run while it goes on
                _write_manifest(mpath, manifest, store, ids)
                next_refresh = time.monotonic() + REFRESH_SECONDS
            if rec["status"] == "ok":
                _log_ok(rec)
            else:
                failures += 1
                log.error("failed %s: %s", rec["id"], rec["error"])
                bar.write(f"failed {rec['id']}: {rec['error']}", file=sys.stderr)
            bar.set_postfix(failed=failures)
            bar.update(1)
    except KeyboardInterrupt:
        status = "interrupted"
        backend.close(cancel=True)
    finally:
        bar.close()
        backend.close()
        if background is not None:
            background.stop()
        if prev_term is not None:
            signal.signal(signal.SIGTERM, prev_term)
    return status, t0


def _warm_up(todo, manifest, out, progress, threads=1):
    """Kernels for a run whose jobs run them on ``threads`` Numba threads: ``(twins,
    background)``. ``twins``: the jobs call the kernels' serial twins, which compile in
    less than half the time, as long as the parallel kernels are not all cached (on one
    thread only; :mod:`dffbatch.stages.kernels`). On a first run (Numba's cache empty)
    the unaligned path is compiled before the jobs. ``background``: the arguments of a
    :class:`~dffbatch.batch.warmup.Background` compile beside the jobs (the aligned path
    on a first run that may align; the parallel kernels while the jobs call twins), or
    None. Raises ``Interrupted`` on Ctrl-C."""
    from .warmup import cache_is_cold, compile_kernels, may_align, parallel_cached
    twins = threads == 1 and not parallel_cached()
    if not todo[0]["files"]:
        return twins, None
    points = list({json.dumps(j["params"], sort_keys=True, default=str): j["params"] for j in todo}.values())
    first, multipage = todo[0]["files"][0], todo[0]["multipage"]
    cold = cache_is_cold()
    if cold:
        took = compile_kernels(first, multipage, points[:16], out, progress=progress, groups=["plain"],
                               threads=threads, twins=twins)
        manifest["compile_seconds"] = round(took, 1)
        log.info("kernels compiled before the jobs in %.1f s", took)
    aligned = cold and may_align(points)
    if not (aligned or twins):
        return twins, None
    return twins, (first, multipage, points[:16], threads, twins, aligned)


def _log_ok(rec):
    """run.log's lines of a finished job: frames and time, positions, alignment (what was
    decided and why first; the measured motion only where it was measured)."""
    log.info("ok %s (%d frames, %.2fs)", rec["id"], rec.get("n_frames", 0), rec["timings"].get("total", 0))
    if rec.get("positions_source"):
        log.info("positions %s: %s", rec["id"], rec["positions_source"])
    al = rec.get("alignment")
    if al:
        log.info("alignment %s: %s %s%s%s", rec["id"], al["mode"], "applied" if al["applied"] else "not applied",
                 f": {al['note']}" if al.get("note") else "",
                 f" (largest corner motion {al['max_motion_px']:.2f} px, crop {al['crop']})"
                 if al.get("model", "none") != "none" else "")


def _main_thread():
    import threading
    return threading.current_thread() is threading.main_thread()
