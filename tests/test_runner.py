"""The batch runner end to end: configs, discovery, sweeps, faults, resume, reproducibility."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import yaml

from conftest import ROOT, seed_path, wait_for_recorded
from dffbatch.cli import main
from dffbatch.batch.config import ConfigError, load_config
from dffbatch.batch.discover import discover


def write_cfg(tmp_path, datasets, **sections):
    cfg = {"run": {"name": "t", "output": str(tmp_path / "out")}, "datasets": datasets,
           "outputs": {"plots": False}, "execution": {"workers": 2}}
    for k, v in sections.items():
        cfg.setdefault(k, {}).update(v) if isinstance(v, dict) else cfg.__setitem__(k, v)
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def small_stack(folder, n=4, seed=0, size=(24, 32)):
    import imageio.v3 as iio
    from dffbatch.truth.synth import render_stack
    frames, *_ = render_stack("slant", "noise", size=size, n_frames=n, layers_per_frame=2, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    for k, f in enumerate(frames):
        iio.imwrite(folder / f"f{k:02d}.png", f)
    return folder


def test_main_job_on_bundled_dataset(tmp_path):
    rc = main(["configs/run.yaml" if Path("configs/run.yaml").exists() else str(ROOT / "configs/run.yaml"),
               "--set", f"run.output={tmp_path}", "--no-progress"])
    assert rc == 0
    run = tmp_path / "demo"
    for f in ("config.yaml", "manifest.json", "summary.csv", "index.html", "run.log"):
        assert (run / f).is_file(), f
    man = json.loads((run / "manifest.json").read_text())
    assert man["status"] == "finished" and len(man["jobs"]) == 3
    for rec in man["jobs"].values():
        assert rec["status"] == "ok"
        assert rec["metrics"]["rmse"] < 1.0  # ground truth is scored automatically
        job = run / rec["id"]
        for f in ("depth.tif", "confidence.png", "allfocus.png", "depth_2d.png", "depth_3d.png",
                  "view/thumb.webp", "view/thumb_depth.jpg", "view/thumb_confidence.jpg", "view/allfocus.webp",
                  "view/depth.jpg", "view/confidence.jpg",
                  "view/truth.jpg", "view/error.jpg"):
            assert (job / f).is_file(), f
    assert "dataset__step" in (run / "jobs.js").read_text()


def test_discovers_the_three_real_layouts():
    root = seed_path()
    cotton = discover({"path": str(root / "cotton")})
    assert [(s.id, s.layout, len(s.files)) for s in cotton] == [("cotton", "folder", 30)]
    balls = discover({"path": str(root / "balls")})
    assert [(s.id, s.layout, len(s.files)) for s in balls] == [("balls__25", "folder", 25)]
    assert [os.path.basename(f) for f in balls[0].files[:3]] == ["01.jpg", "02.jpg", "03.jpg"]
    fs = discover({"path": str(root / "focus_stack"), "include": ["1__*", "2__*", "10__*", "17__*", "100__*"]})
    assert [s.id for s in fs] == ["focus_stack__1", "focus_stack__2", "focus_stack__10", "focus_stack__17",
                                  "focus_stack__100"]
    assert all(s.layout == "prefix" for s in fs)
    names = [os.path.basename(f) for f in fs[0].files]
    assert names == sorted(names, key=lambda n: int(n.split("_")[-1].split(".")[0]))


def test_dry_run_over_real_layouts_counts_jobs(tmp_path, capsys):
    root = seed_path()
    cfg = write_cfg(tmp_path, [{"path": str(root / "cotton")}, {"path": str(root / "balls")},
                               {"path": str(root / "focus_stack"), "layout": "prefix",
                                "include": ["1__*", "2__*", "3__*", "4__*", "5__*"]}])
    assert main([str(cfg), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "7 stacks, 1 sweep points, 7 jobs" in out
    assert "stack focus_stack__5: layout prefix" in out and "stack balls__25: layout folder, 25 frames" in out
    assert not (tmp_path / "out").exists()


def test_natural_order_and_prefix_layout(tmp_path):
    d = tmp_path / "flat"
    d.mkdir()
    for s in ("a", "b"):
        for k in (1, 2, 10):
            (d / f"{s}_{k}.png").write_bytes(b"x")
    st = discover({"path": str(d)})
    assert [(s.id, [os.path.basename(f) for f in s.files]) for s in st] == [
        ("flat__a", ["a_1.png", "a_2.png", "a_10.png"]), ("flat__b", ["b_1.png", "b_2.png", "b_10.png"])]


def test_multipage_tiff_stack(tmp_path):
    import tifffile
    from dffbatch.truth.synth import render_stack
    frames, *_ = render_stack("slant", "noise", size=(20, 20), n_frames=4, layers_per_frame=2)
    tifffile.imwrite(tmp_path / "s.tif", np.stack(frames), photometric="rgb")
    st = discover({"path": str(tmp_path)})
    assert [(s.layout, s.multipage) for s in st] == [("tiff", True)]
    cfg = write_cfg(tmp_path, [{"path": str(tmp_path / "s.tif"), "layout": "tiff"}])
    assert main([str(cfg), "--no-progress"]) == 0
    (job, rec), = json.loads((tmp_path / "out/t/manifest.json").read_text())["jobs"].items()
    assert rec["n_frames"] == 4  # 4 pages, 4 frames
    from dffbatch import depth_from_focus
    ref = depth_from_focus(frames)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out/t" / job / "depth.tif"), ref.depth)
    np.testing.assert_array_equal(iio.imread(tmp_path / "out/t" / job / "allfocus.png"), ref.allfocus)


def test_sweep_gives_distinct_stable_ids(tmp_path, capsys):
    small_stack(tmp_path / "data" / "a")
    small_stack(tmp_path / "data" / "b", seed=1)
    cfg = write_cfg(tmp_path, [str(tmp_path / "data")], params={"measure": ["sml", "lapv"], "window": [3, 5]})
    assert main([str(cfg), "--no-progress"]) == 0
    man = json.loads((tmp_path / "out/t/manifest.json").read_text())
    assert len(man["jobs"]) == 8 and all(r["status"] == "ok" for r in man["jobs"].values())
    sweeps = {j.split("/")[0] for j in man["jobs"]}
    assert len(sweeps) == 4
    main([str(cfg), "--dry-run"])
    again = {line.split()[1].split("/")[0] for line in capsys.readouterr().out.splitlines() if line.startswith("job ")}
    assert again == sweeps


def test_bad_frames_fail_only_their_job_and_name_the_file(tmp_path):
    good = small_stack(tmp_path / "data" / "good")
    jpg = small_stack(tmp_path / "data" / "badjpg")
    png = small_stack(tmp_path / "data" / "badpng", seed=2)
    (jpg / "f01.png").unlink()
    (jpg / "f01.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    data = (png / "f02.png").read_bytes()
    (png / "f02.png").write_bytes(data[: len(data) // 2])
    cfg = write_cfg(tmp_path, [str(tmp_path / "data")])
    assert main([str(cfg), "--no-progress"]) == 1
    jobs = json.loads((tmp_path / "out/t/manifest.json").read_text())["jobs"]
    st = {k.split("/")[1]: v for k, v in jobs.items()}
    assert st["data__good"]["status"] == "ok"
    assert st["data__badjpg"]["status"] == "failed" and "f01.jpg" in st["data__badjpg"]["error"]
    assert st["data__badpng"]["status"] == "failed" and "f02.png" in st["data__badpng"]["error"]
    assert good.exists()
    summary = (tmp_path / "out/t/summary.csv").read_text()
    assert "f02.png" in summary


@pytest.mark.parametrize("cfg_text,needle", [
    ("run: {nme: x}\ndatasets: [DATA]\n", "run.nme: unknown key (did you mean 'name'?)"),
    ("datasets: [DATA]\nparams: {window: four}\n", "params.window: must be an odd integer"),
    ("datasets: [DATA]\nparams: {window: 4}\n", "params.window"),
    ("datasets: [/no/such/dir]\n", "datasets[0].path: /no/such/dir does not exist"),
    ("run: {name: ../x}\ndatasets: [DATA]\n", "run.name: '../x' is not a safe folder name"),
    ("run: {name: /abs}\ndatasets: [DATA]\n", "run.name"),
    ("datasets: [DATA]\nexecution: {workers: 0}\n", "execution.workers"),
    ("datasets: [DATA]\nparams: {measure: [sml, foo]}\n", "params.measure: 'foo' is not a focus measure"),
    ("- just\n- a list\n", "top level must be a mapping"),
    ("datasets: [DATA\n", "invalid YAML"),
    ("datasets: [DATA]\nextra: 1\n", "extra: unknown key"),
    ("datasets: [DATA]\nparams: {refine: wlss}\n", "params.refine: 'wlss' is not one of"),
    ("datasets: []\n", "datasets: empty: give at least one entry with a path"),
    ("datasets: [DATA/empty]\n", "datasets[0].path: no focus stack (>= 2 images) found under"),
    ("datasets: [DATA]\nparams: {refine: wls, refine_strength: -1}\n", "params.refine_strength: must be a number >= 0"),
    ("datasets: [DATA]\nparams: {refine_strength: .inf}\n", "params.refine_strength"),
])
def test_invalid_configs_exit_2_and_write_nothing(tmp_path, capsys, cfg_text, needle):
    small_stack(tmp_path / "data" / "a")
    (tmp_path / "data" / "empty").mkdir()
    text = cfg_text.replace("DATA", str(tmp_path / "data"))
    if text.startswith("run:"):
        text = text.replace("run: {", f"run: {{output: {tmp_path / 'out'}, ")
    elif not text.startswith("-"):
        text = f"run: {{output: {tmp_path / 'out'}}}\n" + text
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    assert main([str(p)]) == 2
    err = capsys.readouterr().err
    assert str(p) in err and needle in err, err
    assert not (tmp_path / "out").exists()


def test_non_utf8_config(tmp_path, capsys):
    p = tmp_path / "bad.yaml"
    p.write_bytes(b"run: {name: \xff\xfe}\n")
    assert main([str(p)]) == 2
    assert "not valid UTF-8" in capsys.readouterr().err


def test_resume_skips_finished_and_reproduces_bytes(tmp_path):
    small_stack(tmp_path / "data" / "a")
    small_stack(tmp_path / "data" / "b", seed=1)
    cfg = write_cfg(tmp_path, [str(tmp_path / "data")])
    assert main([str(cfg), "--no-progress"]) == 0
    run = tmp_path / "out/t"
    first = json.loads((run / "manifest.json").read_text())["jobs"]
    outs = {j: dict(r["outputs"]) for j, r in first.items()}
    assert main([str(cfg), "--no-progress"]) == 0
    second = json.loads((run / "manifest.json").read_text())["jobs"]
    assert all(r.get("resumed") for r in second.values())
    # a damaged output is redone; a changed parameter is a different job
    victim = next(iter(first))
    (run / victim / "depth.tif").write_bytes(b"garbage")
    assert main([str(cfg), "--no-progress"]) == 0
    third = json.loads((run / "manifest.json").read_text())["jobs"]
    assert not third[victim].get("resumed") and third[victim]["outputs"] == outs[victim]
    assert main([str(cfg), "--no-progress", "--force"]) == 0
    forced = json.loads((run / "manifest.json").read_text())["jobs"]
    assert {j: r["outputs"] for j, r in forced.items()} == outs  # byte-identical outputs


def test_sigkill_mid_run_then_rerun_completes_without_recomputing(tmp_path):
    for i in range(6):
        small_stack(tmp_path / "data" / f"s{i}", n=6, seed=i, size=(160, 200))
    cfg = write_cfg(tmp_path, [str(tmp_path / "data")], execution={"workers": 1})
    man = tmp_path / "out/t/manifest.json"
    release = tmp_path / "release"  # job s4 waits for it: the kill lands mid-run, whatever the load
    proc = subprocess.Popen([sys.executable, "-m", "dffbatch", str(cfg), "--no-progress"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env=dict(os.environ, DFFBATCH_HOLD=f"data__s4::{release}"))
    deadline = time.time() + 120
    while not (tmp_path / "release.held").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    done_before = wait_for_recorded(tmp_path / "out/t", 2, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    release.write_text("go")
    assert done_before, "the run never got going"
    assert len(done_before) < 6
    # no temporary or truncated file under a final name
    import tifffile
    for rec in done_before.values():
        tifffile.imread(man.parent / rec["id"] / "depth.tif")
    assert main([str(cfg), "--no-progress"]) == 0  # the stale lock of the killed run is taken over
    jobs = json.loads(man.read_text())["jobs"]
    assert len(jobs) == 6 and all(r["status"] == "ok" for r in jobs.values())
    for j, rec in done_before.items():
        assert jobs[j].get("resumed"), j
    for rec in jobs.values():
        assert tifffile.imread(man.parent / rec["id"] / "depth.tif").shape == (160, 200)
    from dffbatch.batch.store import RunStore
    st = RunStore(str(man.parent))
    try:
        assert st.integrity() == "ok" and st.count() == 6 == st.count("ok")  # each job recorded once
    finally:
        st.close()


def test_second_run_into_a_locked_folder_refuses(tmp_path, capsys):
    small_stack(tmp_path / "data" / "a")
    cfg = write_cfg(tmp_path, [str(tmp_path / "data")])
    run = tmp_path / "out/t"
    run.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        import socket
        (run / ".lock").write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "since": "now"}))
        assert main([str(cfg), "--no-progress"]) == 2
        assert f"in use by pid {holder.pid}" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert main([str(cfg), "--no-progress"]) == 0  # stale now


def test_positions_give_physical_depth(tmp_path):
    import tifffile
    small_stack(tmp_path / "data" / "a", n=4)
    (tmp_path / "data" / "a" / "positions.csv").write_text("z_um\n10\n20\n30\n40\n")
    cfg = write_cfg(tmp_path, [{"path": str(tmp_path / "data"), "positions": "positions.csv"}])
    assert main([str(cfg), "--no-progress"]) == 0
    job = next((tmp_path / "out/t").glob("*/data__a"))
    d = tifffile.imread(job / "depth.tif")
    u = tifffile.imread(job / "depth_units.tif")
    np.testing.assert_allclose(u, 10 + 10 * d, rtol=1e-5)


def test_html_report_escapes_names(tmp_path):
    small_stack(tmp_path / "data" / "<script>x")
    cfg = write_cfg(tmp_path, [str(tmp_path / "data")])
    assert main([str(cfg), "--no-progress"]) == 0
    html = (tmp_path / "out/t/index.html").read_text()
    assert "<script>x" not in html
    assert "data___script_x" in (tmp_path / "out/t/jobs.js").read_text()  # the stack is there, under its safe id


def test_mesh_and_plots_are_written(tmp_path):
    small_stack(tmp_path / "data" / "a")
    cfg = write_cfg(tmp_path, [str(tmp_path / "data")], outputs={"plots": True, "mesh": True, "plot_grid": 16})
    assert main([str(cfg), "--no-progress"]) == 0
    job = next((tmp_path / "out/t").glob("*/data__a"))
    ply = (job / "mesh.ply").read_bytes()
    header, _, body = ply.partition(b"end_header\n")
    assert b"element vertex 768" in header and b"element face 1426" in header  # 24x32 grid
    assert len(body) == 768 * 15 + 1426 * 13
    v = np.frombuffer(body[:768 * 15], dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                              ("r", "u1"), ("g", "u1"), ("b", "u1")]).reshape(24, 32)
    f = np.frombuffer(body[768 * 15:], dtype=[("n", "u1"), ("v", "<i4", (3,))])
    depth = tifffile.imread(job / "depth.tif")
    af = iio.imread(job / "allfocus.png")
    yy, xx = np.mgrid[0:24, 0:32]
    np.testing.assert_array_equal(v["x"], xx)
    np.testing.assert_array_equal(v["y"], -yy)
    zs = 0.1 * 32 / float(depth.max() - depth.min())  # the depth range spans a tenth of the width
    np.testing.assert_allclose(v["z"], depth * zs, rtol=1e-5)
    np.testing.assert_array_equal(np.stack([v["r"], v["g"], v["b"]], -1), af)
    assert (f["n"] == 3).all() and f["v"].min() == 0 and f["v"].max() == 767
    for f in ("depth_2d.png", "depth_3d.png"):
        assert (job / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_first_run_compiles_once_and_says_so(tmp_path, capsys, monkeypatch):
    import dffbatch.batch.warmup as W
    small_stack(tmp_path / "data" / "a")
    cfg = write_cfg(tmp_path, [str(tmp_path / "data")])
    monkeypatch.setattr(W, "cache_is_cold", lambda: True)  # as on a fresh install
    real = W.compile_kernels
    monkeypatch.setattr(W, "compile_kernels", lambda *a, **k: real(*a, **{**k, "after": 0.0}))
    assert main([str(cfg), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "compiling kernels (first run" in out and "kernels compiled in" in out
    assert out.index("compiling kernels") < out.index("backend local")  # before any worker starts
    man = json.loads((tmp_path / "out/t/manifest.json").read_text())
    assert man["compile_seconds"] >= 0 and all(r["status"] == "ok" for r in man["jobs"].values())


def test_every_config_error_is_reported_at_once(tmp_path, capsys):
    small_stack(tmp_path / "data" / "a")
    p = tmp_path / "bad.yaml"
    p.write_text(f"run: {{output: {tmp_path / 'out'}, nme: x}}\ndatasets: [{tmp_path / 'data'}, /no/such]\n"
                 "params: {window: 4, measure: foo}\nexecution: {workers: 0}\n")
    assert main([str(p)]) == 2
    err = capsys.readouterr().err
    for needle in ("5 problems", "run.nme: unknown key", "datasets[1].path: /no/such does not exist",
                   "params.window", "params.measure: 'foo' is not a focus measure", "execution.workers"):
        assert needle in err, (needle, err)
    assert err.count(str(p)) == 5 and not (tmp_path / "out").exists()


def test_jobs_start_largest_first(tmp_path):
    """The runner hands out the jobs with the most input first (bytes of the first file x files),
    ties in their given order, so that a run does not end on one long stack."""
    from dffbatch.batch.runner import _largest_first
    sizes = {"a": (3, 100), "b": (30, 100), "c": (3, 5000), "d": (3, 100), "e": (0, 0)}
    jobs = []
    for name, (n, size) in sizes.items():
        files = []
        for i in range(n):
            f = tmp_path / f"{name}{i}.png"
            f.write_bytes(b"x" * size)
            files.append(str(f))
        jobs.append({"id": name, "files": files})
    assert [j["id"] for j in _largest_first(jobs)] == ["c", "b", "a", "d", "e"]


def test_a_warm_cache_is_seen_where_the_kernels_cache_lives():
    """After kernels ran, the runner must not take the cache for cold: it looked in the
    wrong folder once (batch/ after the subpackages) and warmed up before every run."""
    import dffbatch.batch.warmup as W
    from dffbatch import depth_from_focus
    depth_from_focus([np.zeros((16, 16), np.uint8), np.eye(16, dtype=np.uint8)], align="none")
    assert not W.cache_is_cold()
