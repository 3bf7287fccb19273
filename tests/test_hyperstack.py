"""Microscopy stacks read by their axes: ImageJ hyperstacks and OME-TIFF written as Fiji and acquisition software do."""
import json
import tracemalloc

import numpy as np
import pytest
import tifffile
import yaml

from dffbatch import depth_from_focus
from dffbatch.cli import main
from dffbatch.stages.hyperstack import iter_zplanes, tiff_layouts
from dffbatch.stages.measure import luminance
from dffbatch.truth.synth import render_stack

Z, H, W = 20, 80, 112


@pytest.fixture(scope="module")
def specimen():
    """A slanted specimen (known z per pixel) in channel 0, a flat channel 1 (no structure)."""
    frames, g, _, _ = render_stack("slant", "noise", (H, W), Z, seed=3, bit_depth=16)
    ch0 = np.stack([(luminance(f) * 65535).astype(np.uint16) for f in frames])
    ch1 = np.full_like(ch0, 1200)
    return np.stack([ch0, ch1], axis=1), g  # (Z, C, Y, X), truth in frames


def _imagej(path, zc, axes="ZCYX"):
    tifffile.imwrite(path, zc, imagej=True, resolution=(1 / 0.4, 1 / 0.4),
                     metadata={"axes": axes, "spacing": 2.5, "unit": "um",
                               "Labels": ["DAPI", "GFP"] * (zc.size // (H * W * 2))})


def _ome(path, zc):
    tifffile.imwrite(path, zc, ome=True, metadata={
        "axes": "ZCYX", "PhysicalSizeZ": 2.5, "PhysicalSizeZUnit": "µm", "PhysicalSizeX": 0.4,
        "PhysicalSizeY": 0.4, "PhysicalSizeXUnit": "µm", "Channel": {"Name": ["DAPI", "GFP"]}})


def _run(tmp_path, **dataset):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"run": {"name": "r", "output": str(tmp_path / "out")},
                                   "datasets": [{"path": str(tmp_path / "data"), **dataset}],
                                   "outputs": {"plots": False, "report": False,
                                               "formats": {"confidence": ["png", "tiff"]}},
                                   "execution": {"workers": 1}}))
    rc = main([str(cfg), "--no-progress"])
    if rc == 2:
        return rc, {}
    jobs = json.loads((tmp_path / "out/r/manifest.json").read_text())["jobs"]
    return rc, jobs


@pytest.mark.parametrize("kind", ["imagej", "ome"])
def test_zc_hyperstack_gives_z_frames_physical_depth_and_calibrated_outputs(tmp_path, specimen, kind):
    zc, g = specimen
    (tmp_path / "data").mkdir()
    (_imagej if kind == "imagej" else _ome)(tmp_path / "data" / "spec.tif", zc)
    rc, jobs = _run(tmp_path)
    assert rc == 0
    (job, rec), = jobs.items()
    assert rec["n_frames"] == Z                      # 20 focus frames, not 40
    out = tmp_path / "out/r" / job
    d = tifffile.imread(out / "depth.tif")
    err = np.abs(d - g)[8:-8, 8:-8]
    assert np.median(err) < 0.5 and np.percentile(err, 90) < 0.5, (np.median(err), np.percentile(err, 90))
    np.testing.assert_allclose(tifffile.imread(out / "depth_units.tif"), d * 2.5, rtol=1e-5, atol=1e-5)
    assert rec["positions_source"].startswith("ImageJ spacing" if kind == "imagej" else "OME PhysicalSizeZ")
    af = tifffile.imread(out / "allfocus.tif")
    assert af.shape == (2, H, W)                      # every channel kept
    for name in ("depth.tif", "depth_units.tif", "confidence.tif", "allfocus.tif"):
        with tifffile.TiffFile(out / name) as t:       # Fiji opens them at the input's scale
            assert t.imagej_metadata["unit"] == "um", name
            xr = t.pages[0].tags["XResolution"].value
            assert abs(xr[1] / xr[0] - 0.4) < 1e-6, (name, xr)
    # the channel key: by name or index; the flat channel alone carries no depth
    rc, jobs = _run(tmp_path, channel="GFP")
    d_gfp = tifffile.imread(tmp_path / "out/r" / next(iter(jobs)) / "depth.tif")
    assert np.median(np.abs(d_gfp - g)[8:-8, 8:-8]) > 2
    rc, jobs = _run(tmp_path, channel=0)
    d0 = tifffile.imread(tmp_path / "out/r" / next(iter(jobs)) / "depth.tif")
    assert np.median(np.abs(d0 - g)[8:-8, 8:-8]) < 0.5


@pytest.mark.parametrize("channel, needle", [("RFP", "no channel named 'RFP'; its channels: 'DAPI', 'GFP'"),
                                             (5, "channel 5 does not exist; the file has 2 channels")])
def test_a_wrong_channel_fails_with_a_clear_error(tmp_path, capsys, specimen, channel, needle):
    (tmp_path / "data").mkdir()
    _imagej(tmp_path / "data" / "spec.tif", specimen[0][:4])
    rc, _ = _run(tmp_path, channel=channel)
    err = capsys.readouterr().err
    assert rc == 2 and "datasets[0].channel" in err and "spec.tif" in err and needle in err, err


def test_time_lapse_makes_one_job_per_time_point(tmp_path, specimen):
    zc = specimen[0][:6]
    tzc = np.stack([zc, zc[::-1], zc])  # T, Z, C, Y, X
    (tmp_path / "data").mkdir()
    _imagej(tmp_path / "data" / "lapse.tif", tzc, axes="TZCYX")
    rc, jobs = _run(tmp_path)
    assert rc == 0
    assert sorted(j.split("/")[1] for j in jobs) == ["data__lapse__t000", "data__lapse__t001", "data__lapse__t002"]
    assert all(r["n_frames"] == 6 for r in jobs.values())
    d = {j.split("__")[-1]: tifffile.imread(tmp_path / "out/r" / j / "depth.tif") for j in jobs}
    np.testing.assert_array_equal(d["t000"], d["t002"])
    np.testing.assert_allclose(d["t001"], 5 - d["t000"], atol=0.6)  # z reversed at t1


def test_a_tiff_without_axes_keeps_pages_as_frames(tmp_path, specimen):
    (tmp_path / "data").mkdir()
    tifffile.imwrite(tmp_path / "data" / "plain.tif", specimen[0][:5, 0])  # 5 pages, no metadata
    rc, jobs = _run(tmp_path)
    (rec,) = jobs.values()
    assert rc == 0 and rec["n_frames"] == 5 and "positions_source" not in rec


def test_planes_stream_memory_flat_in_the_number_of_planes(tmp_path):
    rng = np.random.default_rng(0)
    peaks = {}
    for n in (20, 200):
        p = tmp_path / f"z{n}.tif"
        tifffile.imwrite(p, rng.integers(0, 65535, (n, 2, 96, 96), dtype=np.uint16), imagej=True,
                         metadata={"axes": "ZCYX"})
        lay = tiff_layouts(p)[0]
        depth_from_focus(lambda: iter_zplanes(lay), focus_channel="mean", prefetch=0)  # compile, caches
        tracemalloc.start()
        depth_from_focus(lambda: iter_zplanes(lay), focus_channel="mean", prefetch=0)
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks[200] <= 1.3 * peaks[20], peaks  # the file is 10x larger
