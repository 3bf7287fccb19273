"""The renderer, the metrics and the eval command."""
import json

import numpy as np
import pytest

from dffbatch import focus_measure
from dffbatch.truth.evaluate import main as eval_main
from dffbatch.truth.metrics import depth_metrics, psnr, ssim
from dffbatch.truth.synth import render_stack, write_stack


def test_plane_is_sharpest_at_its_frame():
    frames, g, _, _ = render_stack("plane", "noise", size=(64, 64), n_frames=9, blur_per_frame=1.5)
    assert np.allclose(g, 4.0)
    sharp = [focus_measure(f, "sml", 5)[8:-8, 8:-8].mean() for f in frames]
    assert int(np.argmax(sharp)) == 4
    assert sharp[4] > 2 * max(sharp[2], sharp[6])


def test_zero_blur_reproduces_the_texture():
    frames, _, af, _ = render_stack("cone", "checker", size=(40, 48), n_frames=3, blur_per_frame=0.0)
    for f in frames:
        assert np.abs(f.astype(int) - af.astype(int)).max() <= 1


def test_foreground_edge_stays_sharp_over_blurred_background():
    # step: a near rectangle in focus at frame 4 (g = 4) in front of a far plane (g = 1)
    frames, g, af, _ = render_stack("step", "checker", size=(64, 64), n_frames=6, blur_per_frame=2.0)
    assert g.max() == 4.0 and g.min() == 1.0
    last = frames[4].astype(float)
    inside_edge = (g[:, 16:48] > 3).argmax(axis=0)[0]  # first foreground row
    # the foreground just inside its edge equals the sharp texture (no bleeding of the blurred background)
    assert np.abs(last[inside_edge + 1, 20:44] - af[inside_edge + 1, 20:44].astype(float)).mean() < 3
    # and the background just outside is blurred: it differs from the texture
    assert np.abs(last[inside_edge - 6, 20:44] - af[inside_edge - 6, 20:44].astype(float)).mean() > 5


def test_deterministic_bytes(tmp_path):
    a = write_stack(tmp_path / "a", *render_stack("terrain", "noise", (32, 32), 4, noise=0.02, seed=7))
    b = write_stack(tmp_path / "b", *render_stack("terrain", "noise", (32, 32), 4, noise=0.02, seed=7))
    for f in sorted(a.iterdir()):
        assert f.read_bytes() == (b / f.name).read_bytes(), f.name


def test_breathing_magnifies_frames():
    frames, _, _, meta = render_stack("plane", "checker", (64, 64), 4, blur_per_frame=0.0, breathing=0.01)
    assert [t["scale"] for t in meta["transforms"]] == pytest.approx([0.99, 1.0, 1.01, 1.02])  # middle frame 1 fixed

    def edges(img):  # sub-pixel positions of the checker's vertical edges along the rows, from the centre
        g = img.astype(np.float64).mean(axis=2)[18:30].mean(axis=0)  # inside one row of squares
        mid = 0.5 * (g.max() + g.min())
        i = np.nonzero(np.diff(np.sign(g - mid)))[0]
        return i + (mid - g[i]) / (g[i + 1] - g[i]) - (64 - 1) / 2.0
    e1 = edges(frames[1])
    for k, s_ in ((0, 0.99), (3, 1.02)):  # measured on the pixels, not taken from the metadata
        ek = edges(frames[k])
        far = e1[np.abs(e1) > 12]
        match = np.array([ek[np.argmin(np.abs(ek - e))] for e in far])  # the same edges, moved
        # the span between the outer edges scales with the magnification, whatever the centre
        assert (match.max() - match.min()) / (far.max() - far.min()) == pytest.approx(s_, abs=0.005)


def test_metrics_against_known_values():
    gt = np.zeros((20, 20), np.float32)
    m = depth_metrics(gt + 2.0, gt, border=2)
    assert m["rmse"] == pytest.approx(2.0) and m["bad1"] == 1.0 and m["rmse_affine"] == pytest.approx(0.0)
    ramp = np.tile(np.arange(20, dtype=np.float32), (20, 1))
    assert depth_metrics(3 * ramp + 1, ramp, border=0)["rmse_affine"] == pytest.approx(0.0, abs=1e-6)
    img = np.full((16, 16, 3), 100, np.uint8)
    noisy = img.copy()
    noisy[0, 0, 0] = 110
    assert psnr(noisy, img) == pytest.approx(10 * np.log10(255 ** 2 / (100 / 768)))
    assert ssim(img, img) == pytest.approx(1.0)
    assert ssim(np.zeros_like(img), img) < 0.1


def test_eval_command(tmp_path, capsys):
    import tifffile
    frames, g, af, meta = render_stack("slant", "noise", (32, 32), 4)
    write_stack(tmp_path / "gt", frames, g, af, meta)
    (tmp_path / "pred").mkdir()
    tifffile.imwrite(tmp_path / "pred" / "depth.tif", g + 0.5)
    assert eval_main(["--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred"), "--border", "0"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rmse"] == pytest.approx(0.5, abs=1e-6) and out["mae"] == pytest.approx(0.5, abs=1e-6)
    assert eval_main(["--gt", str(tmp_path / "nope"), "--pred", str(tmp_path / "pred")]) == 2
