"""Resume reruns exactly the jobs an input change affects; derived outputs hold the values they claim."""
import json
import os
import time

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from dffbatch.cli import main
from test_runner import small_stack, write_cfg


def _run(cfg, *extra):
    assert main([str(cfg), "--no-progress", *extra]) == 0


def _rerun(run_dir):
    """Job ids the last run computed (not resumed)."""
    jobs = json.loads((run_dir / "manifest.json").read_text())["jobs"]
    return sorted(j.split("/", 1)[1] for j, r in jobs.items() if not r.get("resumed"))


def test_each_input_change_reruns_exactly_the_affected_jobs(tmp_path):
    for i, s in enumerate("abcd"):
        small_stack(tmp_path / "data" / s, seed=i)
    (tmp_path / "data" / "d" / "pos.csv").write_text("0\n1\n2\n3\n")
    cfg = write_cfg(tmp_path, [str(tmp_path / "data" / s) for s in "abc"]
                    + [{"path": str(tmp_path / "data" / "d"), "positions": "pos.csv"}])
    run = tmp_path / "out/t"
    _run(cfg)
    _run(cfg)
    assert _rerun(run) == []
    # a frame's content changed, size and mtime kept (the mtime restored after writing)
    f = tmp_path / "data" / "a" / "f01.png"
    st = os.stat(f)
    img = iio.imread(f)
    img[0, 0, 0] ^= 1
    data = iio.imwrite("<bytes>", img, extension=".png")
    if len(data) == st.st_size:
        f.write_bytes(data)
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
        _run(cfg)
        # name, size and mtime identify inputs (documented): a same-size, same-mtime edit is not seen
        assert _rerun(run) == []
    # a changed mtime alone
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    _run(cfg)
    assert _rerun(run) == ["a"]
    # a changed size (content)
    g = tmp_path / "data" / "b" / "f02.png"
    g.write_bytes(iio.imwrite("<bytes>", np.zeros_like(iio.imread(g)), extension=".png"))
    _run(cfg)
    assert _rerun(run) == ["b"]
    # the positions file
    time.sleep(0.01)
    (tmp_path / "data" / "d" / "pos.csv").write_text("0\n1\n2\n4\n")
    _run(cfg)
    assert _rerun(run) == ["d"]
    # a parameter: every job (a new sweep point)
    _run(cfg, "--set", "params.median=3")
    jobs = json.loads((run / "manifest.json").read_text())["jobs"]
    assert len(jobs) == 4 and not any(r.get("resumed") for r in jobs.values())
    # the outputs section: every job
    _run(cfg, "--set", "params.median=3")
    assert _rerun(run) == []
    _run(cfg, "--set", "params.median=3", "--set", "outputs.plots=true")
    assert len(_rerun(run)) == 4


def test_depth_png_confidence_and_uneven_positions_hold_their_values(tmp_path):
    small_stack(tmp_path / "data" / "a", n=5, size=(40, 48))
    (tmp_path / "data" / "a" / "pos.csv").write_text("10\n11\n13\n17\n25\n")  # uneven steps
    cfg = write_cfg(tmp_path, [{"path": str(tmp_path / "data" / "a"), "positions": "pos.csv"}],
                    outputs={"formats": {"depth": ["tiff", "png"], "confidence": ["tiff"]}})
    _run(cfg)
    run = tmp_path / "out/t"
    (job,) = json.loads((run / "manifest.json").read_text())["jobs"]
    d = tifffile.imread(run / job / "depth.tif")
    n = 5
    png = iio.imread(run / job / "depth.png")
    assert png.dtype == np.uint16
    np.testing.assert_array_equal(png, np.round(d * (65535.0 / (n - 1))).astype(np.uint16))
    assert d.max() > 0 and abs(png.max() / 65535 * (n - 1) - d.max()) < 1e-3  # 65535 is frame N-1
    conf = tifffile.imread(run / job / "confidence.tif")
    assert conf.dtype == np.float32 and conf.shape == d.shape
    assert 0 <= conf.min() and conf.max() <= 1 and conf.std() > 0
    units = tifffile.imread(run / job / "depth_units.tif")
    np.testing.assert_allclose(units, np.interp(d, np.arange(n), [10, 11, 13, 17, 25]), rtol=1e-6)
    lo = np.floor(d).astype(int)
    inside = (d > 2.05) & (d < 2.95)  # between frames 2 and 3: 4 um per frame there, not the mean 3.75
    if inside.any():
        np.testing.assert_allclose(units[inside], 13 + 4 * (d[inside] - 2), rtol=1e-5)
    assert (lo >= 0).all()


def test_outputs_follow_the_umask_and_confidence_png_holds_the_confidence(tmp_path):
    small_stack(tmp_path / "data" / "a")
    cfg = write_cfg(tmp_path, [str(tmp_path / "data")], outputs={"formats": {"confidence": ["png", "tiff"]}})
    old = os.umask(0o022)
    try:
        import importlib
        import dffbatch.stages.write as W
        importlib.reload(W)  # the mode is read from the umask at import, as a worker process does
        _run(cfg)
    finally:
        os.umask(old)
    run = tmp_path / "out/t"
    (job,) = json.loads((run / "manifest.json").read_text())["jobs"]
    files = [f for f in (run / job).rglob("*") if f.is_file()]
    assert {f.name for f in files} >= {"depth.tif", "confidence.tif", "confidence.png", "thumb.webp"}
    for f in files + [run / "manifest.json", run / "summary.csv"]:
        assert f.stat().st_mode & 0o777 == 0o644, (f.name, oct(f.stat().st_mode))
    conf = tifffile.imread(run / job / "confidence.tif")
    png = iio.imread(run / job / "confidence.png")
    assert png.dtype == np.uint8
    np.testing.assert_array_equal(png, np.floor(np.clip(conf.astype(np.float64), 0, 1) * 255 + 0.5).astype(np.uint8))


_MAPS = {"allfocus": {"png": "allfocus.png", "tiff": "allfocus.tif"}, "depth": {"png": "depth.png", "tiff": "depth.tif", "png8": "depth8.png"},
         "confidence": {"png": "confidence.png", "tiff": "confidence.tif"}}
_VIEWS = {"view/thumb.webp", "view/thumb_depth.jpg", "view/thumb_confidence.jpg", "view/allfocus.webp",
          "view/depth.jpg", "view/confidence.jpg"}


@pytest.mark.parametrize("formats, report", [
    ({}, True),  # the default set
    ({"allfocus": ["tiff"], "depth": ["png"], "confidence": ["tiff"]}, False),
    ({"allfocus": ["png", "tiff"], "depth": ["png", "tiff"], "confidence": ["png", "tiff"]}, True),
])
def test_each_formats_choice_writes_exactly_what_it_says(tmp_path, formats, report):
    small_stack(tmp_path / "data" / "a")
    cfg = write_cfg(tmp_path, [str(tmp_path / "data")], outputs={"formats": formats, "report": report})
    _run(cfg)
    run = tmp_path / "out/t"
    (job,) = json.loads((run / "manifest.json").read_text())["jobs"]
    want = {"allfocus": ["png"], "depth": ["png8", "tiff"], "confidence": ["png"], **formats}  # allfocus auto: uint8 -> png
    expect = {_MAPS[k][f] for k, fs in want.items() for f in fs} | (_VIEWS if report else set())
    got = {str(f.relative_to(run / job)) for f in (run / job).rglob("*") if f.is_file()}
    assert got == expect
    rec = json.loads((run / "manifest.json").read_text())["jobs"][job]
    assert set(rec["outputs"]) == expect
    if "depth.png" in expect and "depth.tif" in expect:  # 16-bit: 0..65535 = frame 0..N-1
        d = tifffile.imread(run / job / "depth.tif")
        np.testing.assert_allclose(iio.imread(run / job / "depth.png") / 65535 * 3, d, atol=1 / 65535 * 3)


def test_compressed_float_tiffs_hold_the_same_values(tmp_path):
    pytest.importorskip("imagecodecs", reason="tiff_compression needs imagecodecs (pip install imagecodecs)")
    small_stack(tmp_path / "data" / "a")
    runs = {}
    for comp in ("none", "deflate", "zstd"):
        cfg = write_cfg(tmp_path, [str(tmp_path / "data")], run={"name": comp},
                        outputs={"tiff_compression": comp, "formats": {"confidence": ["tiff"]}})
        _run(cfg)
        (job,) = json.loads((tmp_path / "out" / comp / "manifest.json").read_text())["jobs"]
        runs[comp] = [tifffile.TiffFile(tmp_path / "out" / comp / job / f) for f in ("depth.tif", "confidence.tif")]
    for comp in ("deflate", "zstd"):
        for a, b in zip(runs["none"], runs[comp]):
            np.testing.assert_array_equal(a.asarray(), b.asarray())
            assert b.pages[0].compression != 1 and a.pages[0].compression == 1


def test_version(capsys):
    from dffbatch import __version__
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"dffbatch {__version__}"


def test_depth_near_turns_the_8bit_depth_image_round(tmp_path):
    """``outputs.depth_near`` reaches the job: with ``last`` the 8-bit depth image is the
    negative of ``first``'s (near = white either way)."""
    from PIL import Image
    small_stack(tmp_path / "data" / "a")
    imgs = {}
    for near in ("first", "last"):
        _run(write_cfg(tmp_path, [str(tmp_path / "data")], run={"name": near}, outputs={"depth_near": near}))
        (f,) = list((tmp_path / "out").glob(f"{near}/*/*/depth8.png"))
        imgs[near] = np.asarray(Image.open(f)).astype(int)
    assert imgs["first"].std() > 10  # a depth image, not a blank
    assert np.abs(imgs["first"] + imgs["last"] - 255).max() <= 1
