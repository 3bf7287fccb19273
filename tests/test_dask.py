"""Backend dask on loopback: same outputs as the local backend, worker loss survived."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT, seed_path
from test_runner import small_stack, write_cfg
from dffbatch.cli import main

pytest.importorskip("distributed", reason="the distributed extra is not installed")


def _hashes(run_dir):
    jobs = json.loads((run_dir / "manifest.json").read_text())["jobs"]
    return {j: r["outputs"] for j, r in jobs.items()}, jobs


def test_localcluster_gives_the_same_outputs_as_local(tmp_path):
    datasets = [str(ROOT / "dataset")]
    try:
        fs = seed_path("focus_stack")
        datasets.append({"path": str(fs), "include": ["1__*", "2__*", "3__*", "4__*", "5__*"]})
    except pytest.skip.Exception:
        pass
    cfg = write_cfg(tmp_path, datasets)
    assert main([str(cfg), "--no-progress", "--set", "run.name=local"]) == 0
    assert main([str(cfg), "--no-progress", "--set", "run.name=dask", "--set", "execution.backend=dask"]) == 0
    local, _ = _hashes(tmp_path / "out/local")
    dask_, jobs = _hashes(tmp_path / "out/dask")
    assert local == dask_ and len(local) >= 3
    assert all(r["backend"] == "dask" for r in jobs.values())


def test_resume_across_backends(tmp_path):
    small_stack(tmp_path / "data" / "a")
    small_stack(tmp_path / "data" / "b", seed=1)
    cfg = write_cfg(tmp_path, [str(tmp_path / "data")])
    assert main([str(cfg), "--no-progress"]) == 0
    assert main([str(cfg), "--no-progress", "--set", "execution.backend=dask"]) == 0
    _, jobs = _hashes(tmp_path / "out/t")
    assert all(r.get("resumed") for r in jobs.values())


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_worker_killed_mid_job_is_retried(tmp_path):
    for i in range(8):
        small_stack(tmp_path / "data" / f"s{i}", n=8, seed=i, size=(240, 320))
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="2")
    sched = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                              "--port", str(port), "--dashboard-address", ":0"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = tmp_path / "started"  # each job leaves <pid>.started here as it begins
    started.mkdir()
    wenv = dict(os.environ, DFFBATCH_STARTED_DIR=str(started))
    workers = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", addr, "--nthreads", "1",
                                 "--no-nanny", "--host", "127.0.0.1", "--no-dashboard"], env=wenv,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        from distributed import Client
        with Client(addr, timeout="30s") as c:
            c.wait_for_workers(2, timeout=60)
            pids = c.run(os.getpid)
        victim = workers[0].pid
        assert victim in pids.values()
        cfg = write_cfg(tmp_path, [str(tmp_path / "data")], execution={"backend": "dask", "address": addr})
        run = subprocess.Popen([sys.executable, "-m", "dffbatch", str(cfg), "--no-progress"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + 120  # kill the victim while it runs a job: the job's own signal
        while not (started / f"{victim}.started").exists() and time.time() < deadline and run.poll() is None:
            time.sleep(0.005)
        assert (started / f"{victim}.started").exists(), "the victim never started a job"
        os.kill(victim, signal.SIGKILL)
        out, _ = run.communicate(timeout=180)
        assert run.returncode == 0, out
        _, jobs = _hashes(tmp_path / "out/t")
        assert len(jobs) == 8 and all(r["status"] == "ok" for r in jobs.values()), out
        assert any((r.get("attempts") or 1) >= 2 for r in jobs.values()), [r.get("attempts") for r in jobs.values()]
        import tifffile
        for r in jobs.values():
            assert tifffile.imread(tmp_path / "out/t" / r["id"] / "depth.tif").shape == (240, 320)
    finally:
        for p in workers + [sched]:
            p.kill()
            p.wait()


def test_dask_without_the_extra_names_it(tmp_path, capsys, monkeypatch):
    small_stack(tmp_path / "data" / "a")
    cfg = write_cfg(tmp_path, [str(tmp_path / "data")], execution={"backend": "dask"})
    monkeypatch.setitem(sys.modules, "distributed", None)
    monkeypatch.setitem(sys.modules, "dffbatch.batch.distributed", None)
    assert main([str(cfg), "--no-progress"]) == 2
    assert "pip install 'dffbatch[distributed]'" in capsys.readouterr().err
