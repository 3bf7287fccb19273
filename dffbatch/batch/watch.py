"""Watch mode: ``dffbatch watch CONFIG``. Stacks are run as they arrive.

Microscopes, inspection lines and tethered cameras write stacks while the user waits.
Watch mode keeps the run folder's lock and, in a loop:

1. discovers the configured datasets (a dataset that is still empty is fine);
2. runs the jobs of every *complete* stack that has no up-to-date result, through the
   same :func:`dffbatch.batch.runner._execute` as a batch run (so the manifest,
   ``summary.csv`` and the report are rewritten after each batch, and resume rules hold:
   a stack that grew after it ran has another job key, and runs again);
3. sleeps until something changes under the datasets, or until the next stack in
   waiting has settled.

A stack is complete when none of its files is newer than ``watch.settle`` seconds (a
file being written, or a new one, is recent), or, with ``watch.marker`` (``DONE``,
``*.done``), when such a file is in its folder; then the marker alone decides.

Changes are seen through ``watchdog`` (inotify on Linux, FSEvents, ReadDirectoryChangesW)
where it works: an idle watch wakes for nothing. Network shares (NFS, SMB) do not
deliver such events for writes made by other machines: ``watch.events: poll`` rescans
every ``watch.poll`` seconds instead, and ``auto`` falls back to it where watchdog is
missing or its observer cannot start. Ctrl-C (or SIGTERM) stops cleanly, exit 130; the
same command resumes.
"""
from __future__ import annotations

import fnmatch
import os
import signal
import sys
import threading
import time

from .config import load_config
from .runner import EXIT_DISK_FULL, RunLock, _execute, log, mark_run_folder, plan

__all__ = ["watch", "complete"]

#: Seconds of quiet awaited after a file-system event before rescanning.
QUIET = 0.5
#: Polling looks at the modification times of the folders it has seen (a file added,
#: removed or renamed changes its folder's) and rescans the datasets where one changed,
#: or where a stack is still settling; and every FULL_SCAN seconds in any case (a frame
#: rewritten in place changes no folder). 10 000 files: 1 250 stats a poll, not a rescan.
FULL_SCAN = 60.0


def _mtimes(folders) -> dict:
    out = {}
    for d in folders:
        try:
            out[d] = os.stat(d).st_mtime_ns
        except OSError:
            out[d] = None
    return out


def _unchanged(folders: dict) -> bool:
    for d, t in folders.items():
        try:
            if os.stat(d).st_mtime_ns != t:
                return False
        except OSError:
            return False
    return True


def complete(stack, settle: float, marker, now: float) -> tuple:
    """``(complete?, seconds until it may be)`` for one stack: settled for ``settle``
    seconds since its newest file changed, or holding ``marker`` in its folder."""
    folder = stack.folder
    if marker:
        try:
            names = os.listdir(folder)
        except OSError:
            return False, None
        return any(fnmatch.fnmatch(n, marker) for n in names), None
    newest = 0.0
    for f in stack.files:
        try:
            newest = max(newest, os.stat(f).st_mtime)
        except OSError:  # a frame renamed or removed under us: wait for it to settle
            return False, settle
    left = newest + settle - now
    return left <= 0, max(left, 0.0)


class _Wakeup:
    """Set when something changes under the watched folders (watchdog), else by time."""

    def __init__(self, roots, ignore, mode, out):
        self.event = threading.Event()
        self.observer = None
        self.how = "polling"
        if mode == "poll":
            return
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:
            log.info("watch: watchdog is not installed; polling")
            return
        wake, skip = self.event, tuple(os.path.realpath(p) + os.sep for p in ignore)

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event):
                path = os.path.realpath(getattr(event, "src_path", "") or "")
                if event.event_type in ("opened", "closed_no_write") or path.startswith(skip):
                    return  # reads and the run's own writes are no news
                wake.set()

        try:
            self.observer = Observer()
            for r in roots:
                self.observer.schedule(Handler(), r, recursive=True)
            self.observer.start()
            self.how = f"file-system events ({type(self.observer).__name__})"
        except Exception as exc:  # noqa: BLE001 - no events here (a share, a limit): poll instead
            print(f"dffbatch: watch: no file-system events ({exc}); polling", file=out)
            self.observer = None

    def wait(self, timeout):
        fired = self.event.wait(timeout)
        self.event.clear()
        return fired

    def close(self):
        if self.observer is not None:
            self.observer.stop()
            self.observer.join(timeout=5)


def _roots(cfg):
    """The folders to watch: each dataset's path, or the folder of a file or glob."""
    roots = []
    for e in cfg["datasets"]:
        p = e["path"]
        if any(c in p for c in "*?["):
            p = os.path.dirname(p.split("*")[0].split("?")[0].split("[")[0]) or "."
        elif os.path.isfile(p):
            p = os.path.dirname(p)
        if os.path.isdir(p) and p not in roots:
            roots.append(p)
    return roots


def watch(config_path, overrides=(), progress=True, out=None, cfg=None, stop=None) -> int:
    """Watch a config's datasets and run each stack once it is complete; returns 130
    when stopped (Ctrl-C, SIGTERM, or ``stop``, a :class:`threading.Event`), 75 when the
    output disk is full."""
    out = out or sys.stdout
    cfg = cfg if cfg is not None else load_config(config_path, overrides)
    w = cfg["watch"]
    run_dir = os.path.join(cfg["run"]["output"], cfg["run"]["name"])
    os.makedirs(run_dir, exist_ok=True)
    mark_run_folder(run_dir, cfg["run"]["name"])
    lock = RunLock(run_dir)
    lock.acquire()
    roots = _roots(cfg)
    wake = _Wakeup(roots, [cfg["run"]["output"]], w["events"], out)
    main = threading.current_thread() is threading.main_thread()
    prev = signal.signal(signal.SIGTERM, _raise_interrupt) if main else None
    print(f"dffbatch: watching {', '.join(roots)} ({wake.how}; a stack runs once "
          + (f"{w['marker']} is in its folder" if w["marker"] else f"its files are {w['settle']:g} s old")
          + f") -> {run_dir}; Ctrl-C stops", file=out)
    ran = {}  # job id -> the key it ran with
    line = _StatusLine(progress)
    folders, last_full, deadline, dirty = {}, 0.0, None, True
    try:
        while stop is None or not stop.is_set():
            if dirty:
                folders, deadline = _cycle(cfg, config_path, run_dir, ran, line, progress, out)
                last_full = time.monotonic()
                if isinstance(folders, int):  # _execute's exit status: interrupted, disk full
                    return folders
            timeout = w["poll"] if wake.observer is None else None  # None: until something changes
            if deadline is not None:
                timeout = max(deadline - time.monotonic(), 0.0) + 0.05 if timeout is None else \
                    min(timeout, max(deadline - time.monotonic(), 0.0) + 0.05)
            if stop is not None:  # a caller's stop is looked at every half second
                timeout = 0.5 if timeout is None else min(timeout, 0.5)
            if wake.wait(timeout):
                time.sleep(QUIET)  # a frame being written fires many events: one rescan for them all
                wake.event.clear()
                dirty = True
                continue
            now = time.monotonic()
            dirty = (deadline is not None and now >= deadline) or (
                wake.observer is None and (now - last_full >= FULL_SCAN or not _unchanged(folders)))
        return 130
    except KeyboardInterrupt:
        line.clear()
        print("dffbatch: stopped watching; run the same command again to resume", file=out)
        log.info("watch stopped by the user")
        return 130
    finally:
        wake.close()
        lock.release()
        if prev is not None:
            signal.signal(signal.SIGTERM, prev)


def _cycle(cfg, config_path, run_dir, ran, line, progress, out):
    """One look at the datasets: run the jobs of complete stacks that have no result for
    their inputs as they are now. Returns ``(folders read: their mtimes, monotonic time
    when the next stack settles or None)``, or ``(exit status, None)`` where the run
    stopped (interrupted, disk full)."""
    w = cfg["watch"]
    skipped, visited = [], []
    stacks, _, jobs, _, _ = plan(cfg, skipped, False, str(config_path), allow_empty=True, visited=visited)
    folders = _mtimes(visited)
    now = time.time()
    ready, waiting, next_check = set(), 0, None
    for s in stacks:
        ok, left = complete(s, w["settle"], w["marker"], now)
        if ok:
            ready.add(s.id)
        else:
            waiting += 1
            if left is not None:
                next_check = left if next_check is None else min(next_check, left)
    todo = [j for j in jobs if j["stack"] in ready]
    if any(ran.get(j["id"]) != j["key"] for j in todo):
        line.clear()
        status = _execute(cfg, config_path, todo, run_dir, False, progress, out, skipped)
        ran.update((j["id"], j["key"]) for j in todo)
        if status in (130, EXIT_DISK_FULL):
            return status, None
    line.show(f"dffbatch: watching: {len(todo)} jobs finished, {waiting} stacks waiting, 0 in flight")
    return folders, (None if next_check is None else time.monotonic() + next_check)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


class _StatusLine:
    """One line on stderr, rewritten in place, while the watch waits."""

    def __init__(self, enabled):
        self.enabled, self.last = enabled and sys.stderr.isatty(), ""

    def show(self, text):
        if self.enabled and text != self.last:
            print("\r" + text.ljust(len(self.last)), end="", file=sys.stderr, flush=True)
            self.last = text
        elif not self.enabled and text != self.last:
            log.info(text.replace("dffbatch: ", ""))
            self.last = text

    def clear(self):
        if self.enabled and self.last:
            print("\r" + " " * len(self.last) + "\r", end="", file=sys.stderr, flush=True)
            self.last = ""
