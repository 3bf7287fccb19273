"""Watch mode (issue 32, item 1): stacks run as they arrive, once each; a stack that grows
runs again; Ctrl-C stops cleanly and the same command resumes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from dffbatch.batch.discover import Stack
from dffbatch.batch.watch import complete
from dffbatch.stages.write import write_png


def _frame(path, k, sharp=2, side=64):
    rng = np.random.default_rng(7)
    tex = rng.random((side, side, 3)) * 255
    w = 1.0 - 0.25 * abs(k - sharp)
    write_png(str(path), np.clip(128 + (tex - 128) * w, 0, 255).astype(np.uint8))


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a background shell's children inherit it ignored


def _start(tmp_path, settle=1.0):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("run: {name: r, output: out}\ndatasets: [data]\nparams: {align: none}\n"
                   f"outputs: {{plots: false}}\nwatch: {{settle: {settle}}}\nexecution: {{workers: 1}}\n")
    started = tmp_path / "started"
    started.mkdir(exist_ok=True)
    env = {**os.environ, "DFFBATCH_STARTED_DIR": str(started)}
    return subprocess.Popen([sys.executable, "-m", "dffbatch", "watch", str(cfg), "--no-progress"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=_default_sigint)


def _starts(tmp_path):
    """Job ids as each job started (DFFBATCH_STARTED_DIR, written by every job)."""
    return [ln for f in sorted((tmp_path / "started").glob("*.started")) for ln in f.read_text().split()]


def _records(tmp_path):
    p = tmp_path / "out" / "r" / "manifest.json"
    try:
        return {r["id"].split("/", 1)[1]: r for r in json.loads(p.read_text())["jobs"].values()}
    except (OSError, ValueError):
        return {}


def _until(cond, timeout=90):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return False


def _stop(proc):
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    return proc.returncode, out


def test_a_stack_is_complete_when_settled_or_marked(tmp_path):
    f = tmp_path / "f0.png"
    _frame(f, 0)
    s = Stack("s", [str(f)], "folder", str(tmp_path))
    now = os.stat(f).st_mtime
    assert complete(s, 5.0, None, now + 1.0) == (False, pytest.approx(4.0))
    assert complete(s, 5.0, None, now + 6.0) == (True, 0.0)
    assert complete(s, 5.0, "*.done", now + 60)[0] is False  # with a marker, age alone is not enough
    (tmp_path / "s.done").write_text("")
    assert complete(s, 5.0, "*.done", now)[0] is True


def test_watch_runs_a_stack_once_reruns_it_when_it_grows_and_resumes_after_ctrl_c(tmp_path):
    (tmp_path / "data").mkdir()
    proc = _start(tmp_path)
    try:
        s1 = tmp_path / "data" / "s1"
        s1.mkdir()

        def writer():  # a camera writing a stack, a frame every 0.3 s (faster than the settle time)
            for k in range(4):
                _frame(s1 / f"f{k}.png", k)
                time.sleep(0.3)
        t = threading.Thread(target=writer)
        t.start()
        t.join()
        assert _until(lambda: _records(tmp_path).get("data__s1", {}).get("status") == "ok"), proc.stdout
        time.sleep(2.5)  # settled long ago: nothing more may happen
        assert _starts(tmp_path) == [next(iter(_records(tmp_path).values()))["id"]]  # exactly once
        assert _records(tmp_path)["data__s1"]["n_frames"] == 4

        _frame(s1 / "f4.png", 4)  # the stack grows after it ran: its job key changes
        assert _until(lambda: _records(tmp_path)["data__s1"].get("n_frames") == 5)
        assert len(_starts(tmp_path)) == 2
        rc, out = _stop(proc)
        assert rc == 130 and "stopped watching; run the same command again to resume" in out, out
        assert "Traceback" not in out
    finally:
        if proc.poll() is None:
            proc.kill()

    s2 = tmp_path / "data" / "s2"  # arrives while nobody watches
    s2.mkdir()
    for k in range(3):
        _frame(s2 / f"f{k}.png", k, sharp=1)
    proc = _start(tmp_path, settle=0.5)
    try:
        assert _until(lambda: _records(tmp_path).get("data__s2", {}).get("status") == "ok")
        time.sleep(1.5)
        starts = _starts(tmp_path)
        assert len(starts) == 3 and starts[-1].endswith("/data__s2")  # s1 was not run again
        assert (tmp_path / "out" / "r" / "index.html").is_file()
        assert "data__s2" in (tmp_path / "out" / "r" / "summary.csv").read_text()
    finally:
        rc, out = _stop(proc)
    assert rc == 130, out
