"""The first run's compile: shared out over processes, only what the run needs, Ctrl-C in one line,
and one copy of the package (and of its kernel cache) whatever folder it runs from."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from test_reliability import _default_sigint
from test_runner import small_stack, write_cfg
import dffbatch.batch.warmup as W


def test_the_list_is_shared_longest_first_to_the_least_loaded():
    roots = [dict(seconds=s, group="plain") for s in (8, 1, 3, 3, 2, 1)] + [dict(seconds=5, group="aligned")]
    a, b = W._shares(roots, 2)
    assert sorted(a + b) == list(range(7))
    load = [sum(roots[i]["seconds"] for i in p) for p in (a, b)]
    assert sorted(load) == [11, 12]  # 8+3 | 5+3+2+1+1 (or the like): within one of the best split
    plain_only = W._shares(roots, 2, ("plain",))
    assert 6 not in plain_only[0] + plain_only[1]  # align: none compiles nothing of the aligned path


def test_a_run_that_never_aligns_warms_no_aligned_path():
    [(idx, groups)] = W._plan([{"align": "none"}], 1)
    assert groups == ["plain"] and all(W.listed()[i]["group"] == "plain" for i in idx)
    plan = W._plan([{}], 2)  # align: auto, the default, on 2 cores: one group each
    assert [g for _, g in plan] == [["plain"], ["aligned"]]


def test_every_listed_specialisation_names_a_kernel_and_a_signature():
    """A stale list costs time, not correctness; this keeps it from going stale unseen."""
    import importlib
    from numba.core import types
    ns = dict(vars(types), bool=types.boolean)
    roots = W.listed()
    assert len(roots) > 20
    for r in roots:
        module, name = r["kernel"].rsplit(".", 1)
        assert hasattr(getattr(importlib.import_module(module), name), "compile"), r["kernel"]
        assert isinstance(eval(r["sig"], ns), tuple), r["sig"]


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT), **extra)
    env.pop("NUMBA_DISABLE_JIT", None)
    return env


def test_ctrl_c_during_the_compile_exits_in_one_line(tmp_path):
    small_stack(tmp_path / "data" / "a")
    cfg = write_cfg(tmp_path, [str(tmp_path / "data")])
    p = subprocess.Popen([sys.executable, "-m", "dffbatch", str(cfg), "--no-progress"], cwd=ROOT,
                         env=_env(NUMBA_CACHE_DIR=str(tmp_path / "cold")),  # a first run
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=_default_sigint)  # Ctrl-C as a terminal delivers it
    seen = ""
    deadline = time.monotonic() + 60
    while "compiling kernels" not in seen and time.monotonic() < deadline:
        seen += p.stdout.readline()
    assert "compiling kernels" in seen, seen
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, (out, err)
    assert "Traceback" not in err and "Traceback" not in out, err
    assert "interrupted" in out and "run the same command again" in out
    man = json.loads((tmp_path / "out" / "t" / "manifest.json").read_text())
    assert man["status"] == "interrupted" and not any(r.get("status") == "ok" for r in man["jobs"].values())
    assert not list((tmp_path / "out" / "t").glob("**/allfocus*"))  # no job started: nothing half-written


def test_a_run_from_another_folder_uses_the_same_copy_and_compiles_nothing(tmp_path):
    """The quick start runs ``python -m dffbatch`` in the repository; ``dffbatch`` from any
    other folder must import that same copy (the README installs it editable) and load
    its kernels from the cache the quick start filled."""
    where = subprocess.run([sys.executable, "-c", "import dffbatch, os; print(os.path.dirname(dffbatch.__file__))"],
                           cwd=tmp_path, capture_output=True, text=True, env=dict(os.environ))
    here = str(ROOT / "dffbatch")
    if where.returncode != 0:
        pytest.skip("dffbatch is not installed (the README installs it with pip install -e)")
    assert os.path.realpath(where.stdout.strip()) == os.path.realpath(here), \
        "another folder imports another copy of dffbatch: install it editable (pip install -e .), as the README says"
    small_stack(tmp_path / "data" / "a")
    cfg = write_cfg(tmp_path, [str(tmp_path / "data")], execution={"workers": 1})
    subprocess.run([sys.executable, "-m", "dffbatch", str(cfg), "--no-progress", "--set", "run.name=first"],
                   cwd=ROOT, env=dict(os.environ), check=True, capture_output=True)  # the quick start's way
    cache = ROOT / "dffbatch" / "stages" / "__pycache__"
    if os.environ.get("NUMBA_CACHE_DIR"):
        pytest.skip("NUMBA_CACHE_DIR is set: the cache is not beside the package")
    assert list(cache.glob("*.nbi"))
    (tmp_path / "elsewhere").mkdir()
    # Numba says what it saves with NUMBA_DEBUG_CACHE, in this run's processes only (the
    # cache folder's times would also see other tests compiling beside this one)
    r = subprocess.run([sys.executable, "-m", "dffbatch", str(cfg), "--no-progress", "--set", "run.name=second"],
                       cwd=tmp_path / "elsewhere", env=dict(os.environ, NUMBA_DEBUG_CACHE="1"),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    assert "[cache] index loaded" in out or "[cache] data loaded" in out, out[-2000:]  # it did read the cache
    saved = [ln for ln in out.splitlines() if "saved to" in ln]
    assert not saved, saved[:5]
    assert "compiling kernels" not in r.stdout


def test_the_runner_waits_for_the_plain_path_only_and_stops_the_aligned_one_with_the_run(tmp_path, monkeypatch):
    """Issue 31: the aligned kernels compile beside the first jobs, which mostly align
    nothing (the quick start never does); with align: none they are not compiled at all."""
    calls, fakes = [], []

    class Fake:
        def __init__(self, *args):
            self.args, self.stopped = args, False
            fakes.append(self)

        def stop(self):
            self.stopped = True

    monkeypatch.setattr(W, "cache_is_cold", lambda: True)
    monkeypatch.setattr(W, "parallel_cached", lambda: True)  # no twins: nothing else in the background
    monkeypatch.setattr(W, "compile_kernels", lambda *a, **k: calls.append(k.get("groups")) or 0.0)
    monkeypatch.setattr(W, "Background", Fake)
    from dffbatch.cli import main
    small_stack(tmp_path / "data" / "a")
    assert main([str(write_cfg(tmp_path, [str(tmp_path / "data")])), "--no-progress"]) == 0
    assert calls == [["plain"]] and len(fakes) == 1 and fakes[0].stopped
    calls.clear()
    fakes.clear()
    assert main([str(write_cfg(tmp_path, [str(tmp_path / "data")], params={"align": "none"})), "--no-progress",
                 "--force"]) == 0
    assert calls == [["plain"]] and fakes == []


def test_a_background_compile_is_ended_by_stop(tmp_path):
    import numpy as np
    from dffbatch.stages.write import write_png
    f = tmp_path / "f.png"
    write_png(str(f), np.zeros((32, 32), np.uint8))
    bg = W.Background(str(f), False, [{}])
    bg.stop()
    assert bg.proc.poll() is not None


def test_after_a_cold_warm_up_the_jobs_compile_nothing(tmp_path):
    """The batch workers run one kernel thread each, so they call the kernels' serial twins
    (dffbatch.stages.kernels.Kernel): the warm-up must compile those, not the parallel
    kernels, or every first job compiles again behind a finished progress bar."""
    small_stack(tmp_path / "data" / "a")
    small_stack(tmp_path / "data" / "b")
    cfg = write_cfg(tmp_path, [str(tmp_path / "data")], params={"align": "none"}, execution={"workers": 2})
    r = subprocess.run([sys.executable, "-m", "dffbatch", str(cfg), "--no-progress"], cwd=ROOT,
                       env=_env(NUMBA_CACHE_DIR=str(tmp_path / "cold"), NUMBA_DEBUG_CACHE="1"),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "kernels compiled" in r.stdout or "compiling kernels" in r.stdout, r.stdout  # it was a first run
    out = r.stdout + r.stderr
    assert "[cache] data loaded" in out, out[-2000:]  # the jobs loaded the warm-up's kernels...
    saved = [ln for ln in out.splitlines() if "saved to" in ln]
    assert not saved, saved[:5]  # ...and compiled none themselves


def test_twins_until_every_parallel_kernel_of_the_plain_path_is_cached(tmp_path, monkeypatch):
    """A run's workers call the serial twins (faster to compile) until Numba's cache holds
    the parallel kernels (faster to run) of the whole unaligned path; a twin's cache file
    (``<kernel>_serial-...``) does not count for its parallel kernel."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    names = sorted({".".join(r["kernel"].split(".")[-2:]) for r in W.listed() if r["group"] == "plain"})
    for n in names:
        (tmp_path / f"{n}_serial-10.py311.nbi").write_text("")
    assert not W.parallel_cached()
    for n in names[:-1]:
        (tmp_path / f"{n}-10.py311.nbi").write_text("")
    assert not W.parallel_cached()
    (tmp_path / f"{names[-1]}-10.py311.nbi").write_text("")
    assert W.parallel_cached()
