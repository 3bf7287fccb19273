"""Alignment: accuracy on rendered breathing, no harm on aligned stacks, real phone stacks."""
import glob
import json

import numpy as np
import tifffile
import pytest

from conftest import ROOT, seed_path
from dffbatch import depth_from_focus
from dffbatch.truth.metrics import depth_metrics, psnr
from dffbatch.stages.align import ESTIMATE_SIDE, residual_motion
from dffbatch.stages.read import iter_previews, read_frame
from dffbatch.truth.synth import render_stack

pytest.importorskip("cv2", reason="alignment needs the align extra (opencv-python-headless)")


@pytest.fixture(scope="module")
def breathing_pair():
    clean = render_stack("sinusoid", "noise", (256, 256), 12, seed=5)
    moved = render_stack("sinusoid", "noise", (256, 256), 12, breathing=0.004, shift=0.5, seed=5)
    return clean, moved


def test_recovers_breathing_and_shift(breathing_pair):
    _, (frames, g, _, meta) = breathing_pair
    r = depth_from_focus(frames, align="similarity")
    al = r.alignment
    truth = meta["transforms"]
    assert al.reference == 5 and al.applied
    scale_err = max(abs(p["scale"] - t["scale"]) for p, t in zip(al.per_frame, truth))
    shift_err = max(max(abs(p["shift_x"] - t["tx"]), abs(p["shift_y"] - t["ty"]))
                    for p, t in zip(al.per_frame, truth))
    assert shift_err < 0.2, shift_err
    assert scale_err < 2e-4, scale_err


def test_depth_after_alignment_matches_the_unmoved_scene(breathing_pair):
    (f0, g0, _, _), (frames, g, _, _) = breathing_pair
    base = depth_metrics(depth_from_focus(f0).depth, g0)["rmse"]
    r = depth_from_focus(frames, align="similarity")
    y0, y1, x0, x1 = r.alignment.crop
    aligned = depth_metrics(r.depth, g[y0:y1, x0:x1])["rmse"]
    assert aligned <= 1.15 * base, (aligned, base)
    assert r.depth.shape == (y1 - y0, x1 - x0) == r.confidence.shape == r.allfocus.shape[:2]


@pytest.mark.parametrize("stack", ["slant", "step", "sinusoid"])
@pytest.mark.parametrize("mode", ["auto", "translation"])
def test_alignment_does_no_harm_on_aligned_stacks(stack, mode):
    frames = [read_frame(f) for f in sorted(glob.glob(str(ROOT / "dataset" / stack / "frame_*.png")))]
    a = depth_from_focus(frames, refine="median")
    b = depth_from_focus(frames, align=mode, refine="median")
    y0, y1, x0, x1 = b.alignment.crop
    if mode == "auto":  # nothing moves: auto must leave the frames alone, to the byte
        assert not b.alignment.applied and b.alignment.mode == "auto"
        np.testing.assert_array_equal(a.depth, b.depth)
        np.testing.assert_array_equal(a.allfocus, b.allfocus)
    else:  # translation is applied; on registered frames it barely moves anything
        assert b.alignment.applied
    assert np.sqrt(np.mean((a.depth[y0:y1, x0:x1] - b.depth) ** 2)) < 0.05
    # the default global solve sees the crop as a different image: judged on ground truth
    g = tifffile.imread(ROOT / "dataset" / stack / "gt_depth.tif")[y0:y1, x0:x1]
    a, b = depth_from_focus(frames), depth_from_focus(frames, align=mode)
    assert depth_metrics(b.depth, g)["rmse"] <= depth_metrics(a.depth[y0:y1, x0:x1], g)["rmse"] + 0.02


@pytest.mark.parametrize("kw, model", [(dict(breathing=0.002, shift=0.5, distort=0.003), "affine"),
                                       (dict(breathing=0.003), "similarity"), ({}, "none")])
def test_auto_chooses_the_motion_model(kw, model):
    """auto: hand-held (shear, stretch) -> affine, a breathing lens -> similarity, still -> nothing."""
    fr, *_ = render_stack("slant", "noise", (256, 256), 8, seed=3, **kw)  # auto: 256 px or more
    al = depth_from_focus(fr, align="auto").alignment
    assert al.model == model and al.applied == (model != "none"), al.note
    assert (model in al.note) if model != "none" else "not applied" in al.note
    assert al.to_json()["model"] == model


@pytest.mark.parametrize("shape", ["slant", "terrain"])
def test_aligned_allfocus_close_to_the_unmoved_twin(shape):
    """Ground truth judges the all-in-focus sampling of aligned frames (Lanczos-3): on a rendered
    breathing stack its PSNR is within 3 dB of the unmoved twin's (192^2: slant 39.4 vs 42.2,
    terrain 37.3 vs 37.6 dB; nearest-pixel sampling lost about 6 dB more), and the identity
    matrix reproduces the unaligned composite exactly (test_kernels)."""
    fr, g, af, _ = render_stack(shape, "noise", (192, 192), 12, breathing=0.003, seed=6)
    ft, gt, aft, _ = render_stack(shape, "noise", (192, 192), 12, seed=6)
    r = depth_from_focus(fr, align="similarity")
    y0, y1, x0, x1 = r.alignment.common  # judged where every frame sees the scene
    twin = depth_from_focus(ft)
    p_al = psnr(r.allfocus[y0:y1, x0:x1], af[y0:y1, x0:x1])
    p_twin = psnr(twin.allfocus[y0:y1, x0:x1], aft[y0:y1, x0:x1])
    assert p_al > p_twin - 3.0, (p_al, p_twin)
    assert depth_metrics(r.depth[y0:y1, x0:x1], g[y0:y1, x0:x1])["rmse"] <= 1.15 * depth_metrics(
        twin.depth[y0:y1, x0:x1], gt[y0:y1, x0:x1])["rmse"]


@pytest.fixture(scope="module")
def distorted():
    """Breathing, shift and a rolling-shutter-like shear / vertical stretch per frame."""
    return render_stack("sinusoid", "noise", (256, 256), 12, breathing=0.002, shift=0.5, seed=5, distort=0.003)


def _corner_error(al, truth, size):
    C = np.array([[0, 0, 1], [size - 1, 0, 1], [0, size - 1, 1], [size - 1, size - 1, 1]], float).T
    return max(float(np.abs(np.array(p["matrix"]) @ C - np.array(t["matrix"]) @ C).max())
               for p, t in zip(al.per_frame, truth))


def test_affine_follows_shear_that_similarity_cannot(distorted):
    frames, g, _, meta = distorted
    aff = depth_from_focus(frames, align="affine")
    sim = depth_from_focus(frames, align="similarity")
    # where each frame's corners land: affine within 0.3 px of the truth (measured 0.15),
    # the best similarity is off by the shear it cannot represent (measured 0.89)
    assert _corner_error(aff.alignment, meta["transforms"], 256) < 0.3
    assert _corner_error(sim.alignment, meta["transforms"], 256) > 0.5
    # similarity says what it leaves out, and which model follows it; affine says nothing
    assert sim.alignment.beyond_similarity > 0.3 and "align: affine does" in sim.alignment.note
    assert aff.alignment.note == ""
    # the manifest's per-frame stretch of each axis follows the truth's (0.26 px over 256 px)
    for p, t in zip(aff.alignment.per_frame, meta["transforms"]):
        L = np.array(t["matrix"])[:, :2]
        assert abs(p["scale_x"] - np.hypot(*L[:, 0])) < 1e-3 and abs(p["scale_y"] - np.hypot(*L[:, 1])) < 1e-3
    # what is left between neighbouring frames, tile by tile: none 0.73, similarity 0.25, affine 0.02 px
    none_r = residual_motion(iter(frames)).mean()
    sim_r = residual_motion(iter(frames), sim.alignment).mean()
    aff_r = residual_motion(iter(frames), aff.alignment).mean()
    assert aff_r < 0.08 < 0.15 < sim_r < none_r, (aff_r, sim_r, none_r)
    y0, y1, x0, x1 = aff.alignment.crop
    aligned = depth_metrics(aff.depth, g[y0:y1, x0:x1])["rmse"]
    unaligned = depth_metrics(depth_from_focus(frames, align="none").depth, g)["rmse"]
    assert aligned < unaligned


def test_similarity_keeps_the_image_centre_of_the_affine_it_projects():
    from dffbatch.stages.align import _to_similarity
    A = np.array([[1.0, 0.004, -1.2], [0.0, 1.003, -0.5]])  # shear + vertical stretch about (0, 0)
    c = np.array([159.5, 89.5])
    S = _to_similarity(A, c)
    np.testing.assert_allclose(S[:, :2] @ c + S[:, 2], A[:, :2] @ c + A[:, 2], atol=1e-12)
    np.testing.assert_allclose(S[:, :2], [[1.0015, 0.002], [-0.002, 1.0015]], atol=1e-12)


@pytest.mark.parametrize("name", ["balls/25", "keyboard/32"])
def test_real_phone_stacks(name):
    """Issue 5's phone-stack checks; the figures come from benchmarks/bench_align_phone.py."""
    files = sorted(str(p) for p in seed_path(*name.split("/")).glob("*.jpg"))
    frames = [read_frame(f) for f in files]

    def src():
        return iter(frames)
    src.preview = lambda: iter_previews(files, ESTIMATE_SIDE)
    b = depth_from_focus(src, align="similarity")
    al = b.alignment
    measured = np.array([p["scale_measured"] for p in al.per_frame])
    k = np.arange(len(measured))
    fitted = np.array([p["scale"] for p in al.per_frame])
    if name == "keyboard/32":
        # (a) a magnification trend: the measured scales fall with the frame index (rank
        # correlation -0.84, the fitted line drops by 4e-3). On balls/25 the tracked points see
        # none to speak of (-0.34, 3e-4): the trend the whole-image ECC found there was, as on
        # the renderer's step, the blurred outlines of the balls growing with defocus
        ranks = np.argsort(np.argsort(measured))
        assert np.corrcoef(k, ranks)[0, 1] < -0.5
        assert np.all(np.diff(fitted) < 0) and fitted[0] - fitted[-1] > 1e-3
    # the default, auto, sees the hand-held shear and stretch and chooses affine; alignment
    # brings neighbouring frames together, affine much closer than similarity
    # (balls 0.31 / 0.28 / 0.11 px, keyboard 0.62 / 0.52 / 0.21 px: none / similarity / affine)
    c = depth_from_focus(src, align="auto")
    assert c.alignment.model == "affine" and c.alignment.applied, c.alignment.note
    none_r = residual_motion(iter(frames)).mean()
    sim_r = residual_motion(iter(frames), al).mean()
    aff_r = residual_motion(iter(frames), c.alignment).mean()
    assert aff_r < 0.5 * sim_r and sim_r < 0.95 * none_r, (aff_r, sim_r, none_r)
    # (b) the all-in-focus image's mean focus measure is retired as a judge (issue 15): it
    # rises with misregistration (+8% with random 1-px shifts, bench_align_phone.py) and falls
    # with any interpolation; the sampling is judged on ground truth instead
    # (test_aligned_allfocus_close_to_the_unmoved_twin)
    y0, y1, x0, x1 = c.alignment.crop
    # (c) depth total variation is retired as a judge too (issue 15): misregistered frames score
    # better on it; alignment is judged by residual motion here and by ground truth on renders
    assert c.depth.shape == (y1 - y0, x1 - x0)


def test_generator_input_with_alignment_is_refused():
    with pytest.raises(TypeError, match="reads the stack twice"):
        depth_from_focus((np.zeros((8, 8), np.uint8) for _ in range(3)), align="similarity")


def test_auto_on_a_one_shot_iterator_measures_unaligned_and_says_why():
    frames = [read_frame(f) for f in sorted(glob.glob(str(ROOT / "dataset" / "step" / "frame_*.png")))]
    r = depth_from_focus(iter(frames), align="auto")
    plain = depth_from_focus(frames, align="none")
    assert r.alignment is not None and not r.alignment.applied and r.alignment.model == "none"
    assert "one-shot iterator" in r.alignment.note and r.alignment.to_json()["crop"] == []
    np.testing.assert_array_equal(r.depth, plain.depth)


def test_runner_records_alignment(tmp_path):
    from dffbatch.cli import main
    from test_runner import write_cfg
    cfg = write_cfg(tmp_path, [str(ROOT / "dataset" / "step")], params={"align": ["auto", "similarity"]},
                    outputs={"plots": True})
    assert main([str(cfg), "--no-progress"]) == 0
    jobs = json.loads((tmp_path / "out/t/manifest.json").read_text())["jobs"]
    by = {r["params"]["align"]: r for r in jobs.values()}
    assert by["auto"]["alignment"]["applied"] is False and "not applied" in by["auto"]["alignment"]["note"]
    # the auto decision is in the log too
    logged = (tmp_path / "out/t/run.log").read_text()
    assert f"alignment {by['auto']['id']}: auto not applied" in logged and "px <= 0.5 px, not applied" in logged
    assert by["similarity"]["alignment"]["applied"] is True
    assert by["similarity"]["shape"][:2] == [256, 256]  # the reference frame's size (align_crop: false)
    assert by["similarity"]["alignment"]["crop"] == [0, 256, 0, 256]
    common = by["similarity"]["alignment"]["common"]
    assert common != [0, 256, 0, 256] and common[0] >= 0 and common[1] <= 256
    assert "alignment.png" in by["similarity"]["outputs"]
    # the report's data: both sweep points of the stack, labelled by what differs, with the auto decision
    js = (tmp_path / "out/t/jobs.js").read_text()
    data = json.loads(js[len("window.DFF = "):].rstrip().rstrip(";"))
    assert sorted(s["label"] for s in data["sweeps"]) == ["align auto", "align similarity"]
    rows = {data["sweeps"][r[1]]["label"]: r for r in data["jobs"]}
    assert rows["align auto"][13].startswith("auto: largest corner motion")  # shown on its card and in the viewer


def test_aligned_all_in_focus_keeps_exact_input_values():
    """Colour frames are sampled at the nearest pixel, not interpolated: with whole-pixel
    shifts the all-in-focus image is the input, value for value."""
    from scipy import ndimage as ndi
    rng = np.random.default_rng(4)
    base = ndi.gaussian_filter(rng.random((96, 128, 3)), (1.5, 1.5, 0))
    base = (base / base.max() * 255).astype(np.uint8)
    shifts = [(0, 0), (1, 2), (2, 3), (3, 3), (3, 5)]
    frames = [np.roll(base, s, axis=(0, 1)) for s in shifts]
    r = depth_from_focus(frames, align="translation", composite="select")
    ref = frames[r.alignment.reference]
    y0, y1, x0, x1 = r.alignment.crop
    np.testing.assert_array_equal(r.allfocus, ref[y0:y1, x0:x1])


# ------------------------------------------------------------------ output size (issue 15)
def test_outputs_keep_the_reference_size_and_align_crop_crops(breathing_pair):
    _, (frames, g, _, _) = breathing_pair
    full = depth_from_focus(frames, align="similarity")
    crop = depth_from_focus(frames, align="similarity", align_crop=True)
    al = full.alignment
    assert al.applied and al.crop == (0, 256, 0, 256)
    assert full.depth.shape == full.confidence.shape == full.allfocus.shape[:2] == (256, 256)
    y0, y1, x0, x1 = crop.alignment.crop
    assert crop.alignment.crop == al.common and (y1 - y0) < 256 and (x1 - x0) < 256
    assert crop.depth.shape == (y1 - y0, x1 - x0) == crop.allfocus.shape[:2]
    # inside the common region both runs saw the same frames: the same depth up to the
    # solve's reach across the border band (compare well inside it)
    m = 12
    inner_full = full.depth[y0 + m:y1 - m, x0 + m:x1 - m]
    inner_crop = crop.depth[m:-m, m:-m]
    assert np.abs(inner_full - inner_crop).mean() < 0.05
    # the border band is measured on fewer frames: its depth is still close to the truth,
    # and its confidence says it was measured on fewer frames
    band = np.ones((256, 256), bool)
    band[y0:y1, x0:x1] = False
    err_band = np.abs(full.depth - g)[band].mean()
    err_inner = np.abs(full.depth - g)[~band].mean()
    assert err_band < 3 * err_inner + 0.3, (err_band, err_inner)
    assert full.confidence[band].mean() < full.confidence[~band].mean()


def test_coverage_counts_the_frames_that_cover_each_output_pixel(breathing_pair):
    from dffbatch.stages.align import Warper
    _, (frames, _, _, _) = breathing_pair
    al = depth_from_focus(frames, align="similarity").alignment
    cov = Warper(al).coverage()
    H, W = al.shape
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    ref = np.zeros((H, W), int)
    for M in al.matrices:  # brute force: every pixel against every frame's rectangle
        fx = M[0, 0] * xs + M[0, 1] * ys + M[0, 2]
        fy = M[1, 0] * xs + M[1, 1] * ys + M[1, 2]
        ref += (fx >= -0.5) & (fx <= W - 0.5) & (fy >= -0.5) & (fy <= H - 0.5)
    np.testing.assert_array_equal(cov, ref)
    assert cov.min() < len(frames) and cov.max() == len(frames)


def test_the_log_says_what_alignment_decided_and_why_before_any_figure(tmp_path):
    """Issue 30: a registration that could not run printed 'largest corner motion 0.00 px' first."""
    from dffbatch.cli import main
    from test_runner import small_stack, write_cfg
    small_stack(tmp_path / "data" / "a")  # 24 x 32 px: too small for auto to tell motion from blur
    cfg = write_cfg(tmp_path, [str(tmp_path / "data")])
    assert main([str(cfg), "--no-progress"]) == 0
    line = next(x for x in (tmp_path / "out/t/run.log").read_text().splitlines() if " alignment " in x)
    assert "data__a: auto not applied: auto: frames 24 px on their short side" in line, line
    assert "corner motion" not in line, line


def test_a_frame_of_another_size_is_reported_with_the_files_own_sizes(tmp_path, capsys):
    """Issue 30: align: auto registers previews, and the error quoted their sizes ((275, 275) for 1100 px)."""
    import imageio.v3 as iio
    from dffbatch.cli import main
    from test_runner import write_cfg
    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "s"
    folder.mkdir(parents=True)
    for k in range(4):
        side = 1100 if k == 2 else 1200
        iio.imwrite(folder / f"f{k}.jpg", (rng.random((side, side, 3)) * 255).astype(np.uint8))
    assert main([str(write_cfg(tmp_path, [str(tmp_path / "data")])), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert f"{folder / 'f2.jpg'}: shape (1100, 1100, 3) differs from frame 0's (1200, 1200, 3) (f0.jpg)" in out, out


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_full_size_frames_register_on_block_mean_previews(dtype):
    """Frames over ``ESTIMATE_SIDE`` register on their luminance averaged over r x r blocks
    (as JPEG previews come): the preview is that mean, and a breathing and shift between
    two 960 x 640 frames comes back in full-size pixels (pixel centres kept)."""
    import cv2
    from dffbatch.stages import align
    from dffbatch.stages.align import _prepare, estimate_alignment
    rng = np.random.default_rng(4)
    top = np.iinfo(dtype).max
    base = cv2.GaussianBlur(rng.random((640, 960, 3)).astype(np.float32), (0, 0), 1.5)
    base = (np.clip((base - 0.5) * 4 + 0.5, 0, 1) * top).astype(dtype)
    bp, s = _prepare(cv2, base, ESTIMATE_SIDE)
    r = 3  # the least whole factor that brings 960 to at most 320
    assert s == 1 / r and bp.shape == (640 // r, 960 // r)
    luma = cv2.cvtColor(base, cv2.COLOR_RGB2GRAY).astype(np.float64)  # rounded in the frame's depth
    want = luma[:640 // r * r].reshape(640 // r, r, 960 // r, r).mean(axis=(1, 3))  # the last row left out
    seen = {}
    band = align._bandpass
    align._bandpass = lambda cv2_, grey: seen.setdefault("grey", grey)
    try:
        _prepare(cv2, base, ESTIMATE_SIDE)
    finally:
        align._bandpass = band
    np.testing.assert_allclose(seen["grey"], want, rtol=1e-5, atol=1e-3 * top / 255)
    c = np.array([(960 - 1) / 2, (640 - 1) / 2])
    A = np.hstack([1.004 * np.eye(2), (c - 1.004 * c + [0.7, -0.4])[:, None]])  # reference -> frame
    moved = cv2.warpAffine(base, A, (960, 640), flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REFLECT)
    al = estimate_alignment([base, moved], "similarity", reference="first")
    corners = np.array([[0, 0, 1], [959, 0, 1], [0, 639, 1], [959, 639, 1]], float).T
    err = np.abs(al.matrices[1] @ corners - A @ corners).max()
    assert err < 0.1, (err, al.matrices[1])
