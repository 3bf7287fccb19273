"""Issue 32, item 2: a real full disk in the middle of a run (a tmpfs the test mounts).

The run must stop starting jobs after the first ENOSPC and say so in one line, leave no
truncated file, and, once space is freed, resume with the same command to outputs
byte-identical to a clean run's.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dffbatch.stages.write import write_png


def _stacks(root, n=8, frames=4, side=64):
    rng = np.random.default_rng(1)
    for s in range(n):
        folder = root / f"s{s:02d}"
        folder.mkdir(parents=True)
        tex = (rng.random((side, side, 3)) * 255).astype(np.float32)
        for k in range(frames):
            w = 1.0 - 0.25 * abs(k - (s % frames))  # each stack sharpest in another frame
            write_png(str(folder / f"f{k}.png"), np.clip(128 + (tex - 128) * w, 0, 255).astype(np.uint8))


def _config(path, data, out):
    path.write_text(f"run: {{name: r, output: {out}}}\ndatasets: [{data}]\n"
                    "params: {align: none}\noutputs: {plots: false}\nexecution: {workers: 1}\n")
    return path


def _run(cfg):
    return subprocess.run([sys.executable, "-m", "dffbatch", str(cfg), "--no-progress"], capture_output=True,
                          text=True, timeout=600)


def _outputs(run_dir):
    """{job/file: sha256} of every job output (the run's own files, with times, left out)."""
    man = json.loads((run_dir / "manifest.json").read_text())
    out = {}
    for rec in man["jobs"].values():
        assert rec["status"] == "ok", rec
        for name in rec["outputs"]:
            out[f"{rec['id']}/{name}"] = hashlib.sha256((run_dir / rec["id"] / name).read_bytes()).hexdigest()
    return out


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({(r.stderr or r.stdout).strip() or 'mount refused'}; "
                    "needs root or CAP_SYS_ADMIN)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_full_disk_stops_the_run_and_the_same_command_resumes_it(tmp_path, small_disk):
    data = tmp_path / "data"
    _stacks(data)
    clean = _run(_config(tmp_path / "clean.yaml", data, tmp_path / "clean"))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    want = _outputs(tmp_path / "clean" / "r")
    size = sum(f.stat().st_size for f in (tmp_path / "clean" / "r").rglob("*") if f.is_file())

    # leave room for about a third of the run
    filler = small_disk / "filler"
    st = os.statvfs(small_disk)
    free = st.f_bavail * st.f_frsize
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(0, free - size // 3))
    cfg = _config(tmp_path / "full.yaml", data, small_disk / "out")
    first = _run(cfg)
    assert first.returncode == 75, first.stdout + first.stderr
    lines = [ln for ln in first.stdout.splitlines() if "disk full" in ln]
    assert len(lines) == 1 and "no job was started after it" in lines[0], first.stdout
    assert "free space, then run the same command again to resume" in lines[0]
    assert "Traceback" not in first.stderr
    run_dir = small_disk / "out" / "r"
    assert not list(run_dir.rglob(".tmp-*"))  # no half-written file left behind
    from dffbatch.batch.store import RunStore
    store = RunStore(str(run_dir))  # the run's record, whatever the manifest could still be written
    recs = list(store.records())
    store.close()
    for rec in recs:  # the jobs recorded ok are whole
        if rec["status"] == "ok":
            for name, digest in rec["outputs"].items():
                assert hashlib.sha256((run_dir / rec["id"] / name).read_bytes()).hexdigest() == digest
    assert sum(r["status"] == "failed" for r in recs) <= 1  # stopped: not every remaining job failed
    assert len(recs) < 8

    filler.unlink()
    second = _run(cfg)
    assert second.returncode == 0, second.stdout + second.stderr
    assert _outputs(run_dir) == want  # byte-identical to the clean run
