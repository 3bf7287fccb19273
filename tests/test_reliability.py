"""Reliability: every case of docs/reliability.md, one test each (or a parameter of one)."""
import json
import os
import signal
import subprocess
import sys
import time

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import ROOT, wait_for_recorded
from test_runner import small_stack, write_cfg
from dffbatch.cli import main
from dffbatch.batch.config import ConfigError, load_config
from dffbatch.batch.discover import discover
from dffbatch.stages.read import FrameError, read_frame


def run_jobs(tmp_path, capsys=None, **sections):
    cfg = write_cfg(tmp_path, [str(tmp_path / "data")], **sections)
    rc = main([str(cfg), "--no-progress"])
    jobs = json.loads((tmp_path / "out/t/manifest.json").read_text())["jobs"]
    return rc, {k.split("/", 1)[1]: v for k, v in jobs.items()}


# ----------------------------------------------------------------------- bad input
@pytest.mark.parametrize("case,needle", [
    ("zero", "empty file (0 bytes)"),
    ("text", "not a readable image"),
    ("size", "shape (20, 32, 3) differs from frame 0's (24, 32, 3)"),
    ("grey", "shape (24, 32) differs from frame 0's (24, 32, 3)"),
    ("nan", "contains NaN or infinite pixels"),
])
def test_bad_frame_fails_its_job_naming_the_file(tmp_path, case, needle):
    good = small_stack(tmp_path / "data" / "good")
    bad = small_stack(tmp_path / "data" / "bad", seed=3)
    victim = bad / "f02.png"
    if case == "zero":
        victim.write_bytes(b"")
    elif case == "text":
        victim.write_text("this is not an image\n")
    elif case == "size":
        iio.imwrite(victim, iio.imread(victim)[:20])
    elif case == "grey":
        iio.imwrite(victim, iio.imread(victim)[:, :, 0])
    elif case == "nan":
        for f in sorted(bad.glob("*.png")):
            tifffile.imwrite(f.with_suffix(".tif"), iio.imread(f).astype(np.float32), photometric="rgb")
            f.unlink()
        a = tifffile.imread(bad / "f02.tif")
        a[3, 3, 0] = np.nan
        tifffile.imwrite(bad / "f02.tif", a, photometric="rgb")
        victim = bad / "f02.tif"
    rc, jobs = run_jobs(tmp_path)
    assert rc == 1 and jobs["data__good"]["status"] == "ok"
    err = jobs["data__bad"]["error"]
    assert str(victim) in err and needle in err, err
    assert "\n" not in err
    assert good.exists()


def test_stack_of_one_frame_is_reported(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    frames = [iio.imread(f) for f in sorted(small_stack(tmp_path / "src").glob("*.png"))]
    for k, f in enumerate(frames):
        iio.imwrite(d / f"a_{k}.png", f)
    iio.imwrite(d / "b_0.png", frames[0])
    rc, jobs = run_jobs(tmp_path)
    assert rc == 1 and jobs["data__a"]["status"] == "ok"
    assert "needs at least 2 frames, got 1" in jobs["data__b"]["error"]


def test_rgba_alpha_is_dropped_with_a_note(tmp_path):
    d = small_stack(tmp_path / "data" / "a")
    for f in d.glob("*.png"):
        a = iio.imread(f)
        iio.imwrite(f, np.dstack([a, np.full(a.shape[:2], 200, np.uint8)]))
    rc, jobs = run_jobs(tmp_path)
    assert rc == 0 and "alpha channel dropped" in jobs["data__a"]["notes"]
    assert jobs["data__a"]["shape"] == [24, 32, 3]


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_16bit_and_float_tiffs(tmp_path, dtype):
    d = small_stack(tmp_path / "data" / "a")
    for f in sorted(d.glob("*.png")):
        a = iio.imread(f).astype(dtype) * (257 if dtype == np.uint16 else 1 / 255)
        tifffile.imwrite(f.with_suffix(".tif"), a.astype(dtype), photometric="rgb")
        f.unlink()
    # float data: auto writes the TIFF (and a PNG preview); 16 bits: the PNG alone holds it, the TIFF asked for
    rc, jobs = run_jobs(tmp_path, outputs={"formats": {"allfocus": "auto" if dtype == np.float32 else ["png", "tiff"]}})
    assert rc == 0
    out = tmp_path / "out/t" / next(iter(jobs.values()))["id"]
    af = tifffile.imread(out / "allfocus.tif")
    assert af.dtype == dtype
    # the same values as the library on the same frames: nothing rescaled on the way
    from dffbatch import depth_from_focus
    frames = [tifffile.imread(f) for f in sorted(d.glob("*.tif"))]
    ref = depth_from_focus(frames)
    np.testing.assert_array_equal(af, ref.allfocus)
    np.testing.assert_array_equal(tifffile.imread(out / "depth.tif"), ref.depth)
    if dtype == np.uint16:  # Pillow reads 16-bit colour PNG as 8-bit: OpenCV keeps the 16 bits
        cv2 = pytest.importorskip("cv2")
        png = cv2.imread(str(out / "allfocus.png"), cv2.IMREAD_UNCHANGED)[:, :, ::-1]
    else:
        png = iio.imread(out / "allfocus.png")
    if dtype == np.float32:  # an 8-bit preview of float data, scaled by its maximum
        want = np.clip(ref.allfocus / max(float(ref.allfocus.max()), 1e-12) * 255, 0, 255).astype(np.uint8)
        assert png.dtype == np.uint8 and any("8-bit preview" in n for n in jobs["data__a"]["notes"])
    else:
        want = ref.allfocus
    np.testing.assert_array_equal(png, want)


def test_exif_orientation_is_applied(tmp_path):
    """Issue 30: a portrait shot comes out upright (every orientation: test_camera_folders)."""
    from PIL import Image
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20] = 255
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    im.save(tmp_path / "x.jpg", exif=exif)
    b = read_frame(str(tmp_path / "x.jpg"))
    assert b.shape == (40, 20, 3) and b[:10].mean() > 200  # turned: the white half on top


def test_pixel_limit_guards_against_decompression_bombs(tmp_path):
    iio.imwrite(tmp_path / "big.png", np.zeros((300, 400), np.uint8))
    with pytest.raises(FrameError, match=r"big.png: 400x300 pixels exceeds the limit of 100000"):
        read_frame(str(tmp_path / "big.png"), max_pixels=100_000)
    small_stack(tmp_path / "data" / "a")
    rc, jobs = run_jobs(tmp_path, execution={"max_pixels": 500})
    assert rc == 1 and "exceeds the limit of 500 (execution.max_pixels)" in jobs["data__a"]["error"]


# ----------------------------------------------------------------------- configs
yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["run", "datasets", "params", "outputs", "execution", "sweep", "name", "path",
                         "measure", "window", "workers", "x"]) | st.text(max_size=6), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=yaml_values)
def test_fuzzed_configs_never_raise_anything_but_config_errors(tmp_path, doc):
    p = tmp_path / "fuzz.yaml"
    p.write_text(yaml.safe_dump(doc))
    try:
        load_config(p, base_dir=tmp_path)
    except ConfigError as exc:
        assert str(p) in str(exc)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=64))
def test_fuzzed_bytes_never_raise_anything_but_config_errors(tmp_path, raw):
    p = tmp_path / "fuzz.yaml"
    p.write_bytes(raw)
    try:
        cfg = load_config(p, base_dir=tmp_path)
    except ConfigError as exc:
        assert str(p) in str(exc)  # every refusal names the file
    else:  # what is accepted is a complete, resolved config with at least one dataset that exists
        assert set(cfg) >= {"run", "datasets", "params", "outputs", "execution"}
        assert cfg["datasets"] and all(os.path.exists(e["path"]) or any(c in e["path"] for c in "*?[")
                                       for e in cfg["datasets"])


@pytest.mark.parametrize("text,needle", [
    ("!!python/object/apply:os.system ['touch PWNED']\n", "invalid YAML"),
    ("base: &b {measure: sml}\nparams: *b\ndatasets: [DATA]\n", "base: unknown key"),
    ("params: {window: [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21]}\nexecution: {max_jobs: 10}\ndatasets: [DATA]\n",
     "the run has 11 jobs, more than 10"),
])
def test_tags_anchors_and_huge_sweeps(tmp_path, capsys, text, needle):
    small_stack(tmp_path / "data" / "a")
    p = tmp_path / "c.yaml"
    p.write_text(f"run: {{output: {tmp_path / 'out'}}}\n" + text.replace("DATA", str(tmp_path / "data")))
    assert main([str(p)]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "PWNED").exists() and not (ROOT / "PWNED").exists()
    assert not (tmp_path / "out").exists()


def test_anchors_are_fine_when_keys_are_valid(tmp_path):
    small_stack(tmp_path / "data" / "a")
    p = tmp_path / "c.yaml"
    p.write_text(f"run: {{output: {tmp_path / 'out'}}}\ndatasets: [&d {tmp_path / 'data'}]\n"
                 "params: {measure: &m sml}\n")
    assert load_config(p)["params"]["measure"] == "sml"


# ----------------------------------------------------------------------- faults
def _default_sigint():
    # a shell's background job inherits SIGINT ignored (and Python then keeps it so): the
    # run under test must see Ctrl-C as a user's terminal run does, however pytest was started
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _spawn_run(cfg, env=None):
    return subprocess.Popen([sys.executable, "-m", "dffbatch", str(cfg), "--no-progress"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, **(env or {})), start_new_session=True,
                            preexec_fn=_default_sigint)


def test_a_job_submitted_to_a_pool_broken_meanwhile_is_not_lost(monkeypatch):
    """A worker that dies between two submissions breaks the pool: the job whose submit
    raised never ran and must run later (the soak at 40 stacks lost 4 of them)."""
    from concurrent.futures import ThreadPoolExecutor
    from concurrent.futures.process import BrokenProcessPool
    from dffbatch.batch import schedule

    class Pool(ThreadPoolExecutor):
        broken_once = [True]

        def submit(self, fn, *args):
            if self.broken_once[0]:
                self.broken_once[0] = False
                raise BrokenProcessPool("a worker died")
            return super().submit(fn, *args)

    monkeypatch.setattr(schedule, "run_job", lambda job: {"id": job["id"], "status": "ok"})
    backend = schedule.LocalBackend(1, 1)
    monkeypatch.setattr(backend, "_new_pool", lambda workers: setattr(backend, "_pool", Pool(1)) or backend._pool)
    got = [r["id"] for r in backend.run([{"id": "a"}, {"id": "b"}])]
    assert sorted(got) == ["a", "b"]


def test_worker_killed_once_is_retried(tmp_path):
    for i in range(3):
        small_stack(tmp_path / "data" / f"s{i}", seed=i)
    cfg = write_cfg(tmp_path, [str(tmp_path / "data")])
    p = _spawn_run(cfg, {"DFFBATCH_FAULT_KILL": "data__s1", "DFFBATCH_FAULT_ONCE": str(tmp_path / "once")})
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 0, out
    jobs = json.loads((tmp_path / "out/t/manifest.json").read_text())["jobs"]
    by = {k.split("/")[1]: v for k, v in jobs.items()}
    assert all(r["status"] == "ok" for r in by.values())
    assert by["data__s1"]["attempts"] == 2


def test_worker_killed_every_time_fails_that_job_only(tmp_path):
    for i in range(3):
        small_stack(tmp_path / "data" / f"s{i}", seed=i)
    cfg = write_cfg(tmp_path, [str(tmp_path / "data")])
    p = _spawn_run(cfg, {"DFFBATCH_FAULT_KILL": "data__s1"})
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 1, out
    by = {k.split("/")[1]: v for k, v in json.loads((tmp_path / "out/t/manifest.json").read_text())["jobs"].items()}
    assert by["data__s0"]["status"] == by["data__s2"]["status"] == "ok"
    assert by["data__s1"]["status"] == "failed" and "worker process died" in by["data__s1"]["error"]
    assert by["data__s1"]["attempts"] == 2 and "after 2 attempts" in by["data__s1"]["error"]  # retried once


@pytest.mark.parametrize("sig,group", [(signal.SIGTERM, False), (signal.SIGINT, True)])
def test_signals_stop_cleanly_and_resume(tmp_path, sig, group):
    for i in range(6):
        small_stack(tmp_path / "data" / f"s{i}", n=6, seed=i, size=(200, 240))
    cfg = write_cfg(tmp_path, [str(tmp_path / "data")], execution={"workers": 1})
    release = tmp_path / "release"
    p = _spawn_run(cfg, {"DFFBATCH_HOLD": f"data__s3::{release}"})  # s3 waits for us: the run is mid-way
    man = tmp_path / "out/t/manifest.json"
    held = tmp_path / "release.held"
    deadline = time.time() + 120
    while not held.exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.01)
    assert held.exists(), "the run never reached the held job"
    assert wait_for_recorded(tmp_path / "out/t", 1, p), "no job recorded"  # s0..s2 end before s3 starts
    (os.killpg if group else os.kill)(p.pid, sig)
    release.write_text("go")  # let the held job end, so that no worker outlives the test
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 130, out
    m = json.loads(man.read_text())
    assert m["status"] == "interrupted" and "run the same command again to resume" in out
    done = {k for k, r in m["jobs"].items() if r["status"] == "ok"}
    assert 1 <= len(done) < 6
    assert not (man.parent / ".lock").exists()
    assert main([str(cfg), "--no-progress"]) == 0
    jobs = json.loads(man.read_text())["jobs"]
    assert all(jobs[k].get("resumed") for k in done) and len(jobs) == 6


@pytest.mark.parametrize("err,text", [("ENOSPC", "No space left on device"), ("EROFS", "Read-only file system")])
def test_write_failure_fails_the_job_and_keeps_previous_files(tmp_path, monkeypatch, err, text):
    """Disk full, or a folder that turned read-only (simulated: root ignores permissions)."""
    import errno
    from dffbatch import write as W
    from dffbatch.batch.jobs import make_job, run_job
    from dffbatch.batch.discover import discover as disc
    small_stack(tmp_path / "data" / "a")
    stack = disc({"path": str(tmp_path / "data")})[0]
    job = make_job(stack, dict(measure="sml", window=3, step=1, threshold=0.0, interpolation="gaussian",
                               median=3, composite="select"), "p", str(tmp_path / "run"),
                   {"plots": False, "mesh": False})
    assert run_job(job)["status"] == "ok"
    before = {f.name: f.read_bytes() for f in (tmp_path / "run/p/data__a").rglob("*") if f.is_file()}
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.fh.close()

        def write(self, data):
            self.fh.write(data[: len(data) // 2])  # half lands, then the disk is full
            raise OSError(getattr(errno, err), text)

    monkeypatch.setattr(W.os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))
    rec = run_job(job)
    assert rec["status"] == "failed" and text in rec["error"]
    after = {f.name: f.read_bytes() for f in (tmp_path / "run/p/data__a").rglob("*") if f.is_file()}
    assert after == before  # nothing truncated, no temporary left behind


def test_memory_estimate_caps_auto_workers(tmp_path):
    from dffbatch.batch.jobs import estimate_memory
    from dffbatch.batch.schedule import plan_workers
    small_stack(tmp_path / "a", size=(1080, 1080), n=2)
    est = estimate_memory([str(tmp_path / "a" / "f00.png")], {"composite": "select"})
    # the estimate against a real job's peak in a fresh process (what a worker is)
    code = ("import resource, sys; from dffbatch.batch.discover import discover; from dffbatch.batch.jobs import make_job, run_job;"
            "from dffbatch.batch.config import load_config; s = discover({'path': sys.argv[1]})[0];"
            "p = dict(measure='lapd', window=9, step=1, threshold=0.0, interpolation='gaussian', median=5,"
            " composite='select', refine='wls', refine_radius=7, refine_strength=None, align='none',"
            " align_reference='middle');"
            "r = run_job(make_job(s, p, 'p', sys.argv[2], {'plots': False, 'mesh': False}));"
            "assert r['status'] == 'ok', r; from dffbatch.batch.jobs import peak_rss; print(peak_rss())")
    peak = int(subprocess.run([sys.executable, "-c", code, str(tmp_path / "a"), str(tmp_path / "run")], check=True,
                              capture_output=True, text=True).stdout.split()[-1])
    assert peak <= est <= 2.5 * peak, (peak >> 20, est >> 20)  # covers the job, without idling the cores
    assert plan_workers(10, "auto", "auto", cores=8, job_memory=est, memory=4 * est) == (3, 2)
    assert plan_workers(10, "auto", "auto", cores=8, job_memory=est, memory=est // 2) == (1, 8)
    assert plan_workers(10, 4, "auto", cores=8, job_memory=est, memory=est) == (4, 2)  # explicit wins


# ----------------------------------------------------------------------- names and paths
def test_hostile_names_stay_inside_the_output_root(tmp_path):
    names = ["...", "a b", "ünï €", "$(touch PWNED); `x`", "x" * 250, "-rf", "<script>alert(1)</script>"]
    for i, n in enumerate(names):
        small_stack(tmp_path / "data" / n, seed=i)
    (tmp_path / "data" / names[-1] / "f01.png").write_bytes(b"corrupt")  # its error names the file
    # "..." starts with a dot, so it is hidden and skipped by default: ask for it
    cfg = write_cfg(tmp_path, [{"path": str(tmp_path / "data"), "include_hidden": True}])
    rc = main([str(cfg), "--no-progress"])
    jobs = {k.split("/", 1)[1]: v for k, v in
            json.loads((tmp_path / "out/t/manifest.json").read_text())["jobs"].items()}
    assert rc == 1 and len(jobs) == len(names)
    root = (tmp_path / "out/t").resolve()
    for r in jobs.values():
        d = (tmp_path / "out/t" / r["id"]).resolve()
        assert root in d.parents and len(d.name) <= 120
    assert not (tmp_path / "PWNED").exists() and not (ROOT / "PWNED").exists()
    html = (tmp_path / "out/t/index.html").read_text()
    assert "<script>alert" not in html and "&lt;script&gt;" in html


def test_long_names_keep_ids_of_their_own():
    """Cut at 120 characters, names sharing their start got ids by order (-2, -3): a stack's
    id then depended on its neighbours (the 1000-stack soak mixed up 7 of them)."""
    from dffbatch.batch.discover import _safe_id
    a, b = "x" * 200 + "1", "x" * 200 + "2"
    assert _safe_id(a) != _safe_id(b) and len(_safe_id(a)) == len(_safe_id(b)) == 120
    assert _safe_id(a) == _safe_id("x" * 200 + "1")  # stable
    assert _safe_id("short name") == "short_name"  # short ones as before


def test_symlink_loops_are_detected(tmp_path):
    small_stack(tmp_path / "data" / "a")
    os.symlink(tmp_path / "data", tmp_path / "data" / "a" / "loop")
    os.symlink(tmp_path / "data" / "a", tmp_path / "data" / "again")
    st = discover({"path": str(tmp_path / "data")})
    assert [s.id for s in st] == ["data__a"]


@pytest.mark.parametrize("decoder", ["simplejpeg", "pillow"])
def test_jpeg_frames_equal_pillow_and_broken_ones_are_named(tmp_path, decoder, monkeypatch):
    """JPEGs decode through simplejpeg (libjpeg-turbo) to Pillow's exact values, grey as (H, W),
    progressive and CMYK (Pillow takes those) included; truncated, corrupt or oversized files are a
    FrameError naming the file; without simplejpeg, Pillow decodes them all the same."""
    from PIL import Image
    from dffbatch import read
    if decoder == "pillow":
        monkeypatch.setattr(read, "_SJ", None)
    else:
        assert read._simplejpeg() is not None, "simplejpeg is a dependency: it should be installed"
    rng = np.random.default_rng(0)
    rgb = (rng.random((37, 53, 3)) * 255).astype(np.uint8)
    cases = {"rgb.jpg": (Image.fromarray(rgb), {}), "grey.jpg": (Image.fromarray(rgb[:, :, 0]), {}),
             "prog.jpg": (Image.fromarray(rgb), {"progressive": True}),
             "cmyk.jpg": (Image.fromarray(rgb).convert("CMYK"), {})}
    for name, (im, kw) in cases.items():
        im.save(tmp_path / name, quality=80, **kw)
        with Image.open(tmp_path / name) as ref:
            ref.load()
            want = np.asarray(ref)
        got = read_frame(str(tmp_path / name))
        if name == "cmyk.jpg":
            want = want[:, :, :3]  # Pillow and imageio decode it, as before (the fourth channel dropped)
        np.testing.assert_array_equal(got, want, err_msg=name)
        assert got.ndim == (2 if name == "grey.jpg" else 3)
    data = (tmp_path / "rgb.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.jpg").write_bytes(data[:20] + b"\x00" * 200)
    for bad in ("cut.jpg", "junk.jpg"):
        with pytest.raises(FrameError, match=bad):
            read_frame(str(tmp_path / bad))
    with pytest.raises(FrameError, match=r"rgb.jpg: 53x37 pixels exceeds the limit of 100"):
        read_frame(str(tmp_path / "rgb.jpg"), max_pixels=100)
