"""The hybrid composite (the default): its pyramid kernels against NumPy, the whole
image against a NumPy reference, threads, memory, and what it is for (ground truth)."""
from __future__ import annotations

import numpy as np
import pytest

import reference as ref
from dffbatch import depth_from_focus
from dffbatch.stages import hybrid as H


@pytest.mark.parametrize("shape", [(37, 50, 3), (36, 21, 1), (64, 64, 4)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_reduce_and_expand_are_numpys_pyramid_to_the_byte(shape, dtype):
    rng = np.random.default_rng(shape[0])
    top = np.iinfo(dtype).max if np.dtype(dtype).kind == "u" else 1.0
    a = (rng.random(shape) * top).astype(dtype)
    down = np.empty(((shape[0] + 1) // 2, (shape[1] + 1) // 2, shape[2]), np.float32)
    H.reduce_level(a, down)
    assert np.array_equal(down, ref.pyr_down32(a))
    up = np.empty(shape, np.float32)
    H.expand_level(down, up)
    assert np.array_equal(up, ref.pyr_up32(down, shape[:2]))


def test_a_laplacian_pyramid_collapses_back_to_the_image():
    """The kernels as a pyramid: one frame with weight 1 everywhere is its own fusion."""
    rng = np.random.default_rng(1)
    a = rng.random((40, 52, 3)).astype(np.float32)
    g1 = np.empty((20, 26, 3), np.float32)
    g2 = np.empty((10, 13, 3), np.float32)
    H.reduce_level(a, g1)
    H.reduce_level(g1, g2)
    w1, w2 = np.ones((20, 26), np.float32), np.ones((10, 13), np.float32)
    acc1, acc2 = np.zeros_like(g1), np.zeros_like(g2)
    s1, s2 = np.zeros_like(w1), np.zeros_like(w2)
    m1, m2 = np.zeros_like(w1), np.zeros_like(w2)
    H.expand_accumulate(g1, g2, w1, False, acc1, s1, m1)
    H.expand_accumulate(g2, H._EMPTY, w2, False, acc2, s2, m2)
    assert np.array_equal(m1, w1) and np.array_equal(s1, w1)
    lo, hi = np.float32(H.UNDECIDED), np.float32(H.DECIDED)
    top = np.empty_like(g2)
    H.collapse_level(H._EMPTY, acc2, s2, m2, 1, H._EMPTY, H._EMPTY, lo, hi, top)
    lvl1 = np.empty_like(g1)
    H.collapse_level(top, acc1, s1, m1, 1, H._EMPTY, H._EMPTY, lo, hi, lvl1)
    np.testing.assert_allclose(lvl1, g1, atol=1e-5)


def test_undecided_weights_give_the_other_pyramids_level():
    """``collapse_level`` mixes the fused level with another pyramid's (interpolate's)
    by how decisive the weights were: all frames alike (max = mean) gives the other's
    level, one frame far above the rest the fused one, and in between the linear mix."""
    rng = np.random.default_rng(2)
    fused, coarse = rng.random((20, 26, 3)).astype(np.float32), rng.random((10, 13, 3)).astype(np.float32)
    own, own_coarse = rng.random((20, 26, 3)).astype(np.float32), rng.random((10, 13, 3)).astype(np.float32)
    wsum = np.full((20, 26), 10.0, np.float32)
    acc = fused * wsum[:, :, None]
    up, own_up = np.empty_like(own), np.empty_like(own)
    H.expand_level(coarse, up)
    H.expand_level(own_coarse, own_up)
    lo, hi = np.float32(H.UNDECIDED), np.float32(H.DECIDED)
    out = np.empty_like(own)
    for ratio, a in [(1.0, 0.0), (H.UNDECIDED, 0.0), ((H.UNDECIDED + H.DECIDED) / 2, 0.5), (H.DECIDED, 1.0), (9.0, 1.0)]:
        wmax = np.full((20, 26), ratio * 10.0 / 5, np.float32)  # 5 frames: mean weight 2
        H.collapse_level(coarse, acc, wsum, wmax, 5, own, own_coarse, lo, hi, out)
        np.testing.assert_allclose(out, up + a * fused + (1 - a) * (own - own_up), atol=1e-5)


def test_a_stack_of_one_image_comes_back_as_itself():
    """Every frame the same: whatever the weights, each level of the hybrid pyramid is
    that image's, so the image comes back (within the rounding of the fixed-point
    low-pass). Above the fused levels it takes the interpolate image's own pyramid: the
    pyramid of the blend of the frames' low-pass would blur it once more."""
    rng = np.random.default_rng(8)
    img = rng.integers(0, 256, (90, 70, 3), dtype=np.uint8)
    r = depth_from_focus([img] * 5, composite="hybrid", align="none")
    diff = np.abs(r.allfocus.astype(np.int64) - img)
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99, (diff.max(), (diff == 0).mean())


def _leaf(noise=0.0, size=128, n=10):
    from dffbatch.truth.synth import render_stack
    from dffbatch.truth.synth_cli import SUITE_RENDER
    return render_stack("leaf", "ivy", (size, size), n, noise=noise, seed=71, **SUITE_RENDER["halo"])


def test_hybrid_matches_its_numpy_reference():
    from dffbatch.stages.measure import focus_measure
    frames, _, _, _ = _leaf()
    r = depth_from_focus(frames, composite="hybrid", align="none", refine="none", median=0)
    F = [focus_measure(f, "lapd", 9) for f in frames]
    interp, change = ref.hybrid(frames, r.depth, r.index, F, H.FUSED, lo=H.UNDECIDED, hi=H.DECIDED)
    ri = depth_from_focus(frames, composite="interpolate", align="none", refine="none", median=0)
    assert np.array_equal(np.floor(interp + 0.5), ri.allfocus)  # the reference's interpolate is ours
    want = np.clip(np.floor(ri.allfocus + change + 0.5), 0, 255)
    diff = np.abs(r.allfocus.astype(np.int64) - want)
    assert diff.max() <= 1 and (diff == 0).mean() > 0.999, (diff.max(), (diff == 0).mean())


def test_the_depth_guide_is_its_numpy_reference():
    """The wls guide of a hybrid image: interpolate's luminance where the hybrid changed
    it little, the hybrid's where it changed it much, mixed between."""
    rng = np.random.default_rng(4)
    base = rng.random((61, 80)).astype(np.float32)
    g = base + np.float32(0.01) * rng.standard_normal(base.shape).astype(np.float32)  # small changes
    g[20:40, 30:60] += np.float32(0.3)  # a large one (a halo removed)
    out = H.guide(g, base)
    t0, t1 = H.GUIDE_GATE
    np.testing.assert_allclose(out, ref.hybrid_guide(g, base, t0, t1), atol=1e-6)
    assert np.array_equal(out[:10], base[:10])
    np.testing.assert_allclose(out[25:35, 35:55], g[25:35, 35:55], atol=1e-6)


def test_hybrid_same_bytes_on_one_and_two_threads():
    import numba
    frames, _, _, _ = _leaf()
    t = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        a = depth_from_focus(frames, composite="hybrid", align="none").allfocus
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        b = depth_from_focus(frames, composite="hybrid", align="none").allfocus
    finally:
        numba.set_num_threads(t)
    assert np.array_equal(a, b)


def test_hybrid_removes_the_halo_of_a_bright_leaf_over_a_dark_background():
    """Ground truth: in the band around the leaf's edge the hybrid image is at least
    2 dB closer to the true all-in-focus image than interpolate's, and it costs nothing
    on a smooth surface."""
    from dffbatch.truth.metrics import band_psnr, psnr
    from dffbatch.truth.synth import render_stack
    frames, g, af, _ = _leaf()
    hyb = depth_from_focus(frames, composite="hybrid", align="none").allfocus
    itp = depth_from_focus(frames, composite="interpolate", align="none").allfocus
    assert band_psnr(hyb, af, g) > band_psnr(itp, af, g) + 2.0
    frames, g, af, _ = render_stack("cone", "noise", (96, 96), 10, seed=12)
    hyb = depth_from_focus(frames, composite="hybrid", align="none").allfocus
    itp = depth_from_focus(frames, composite="interpolate", align="none").allfocus
    assert psnr(hyb, af) > psnr(itp, af) - 0.2


def test_noise_driven_weights_fall_back_to_interpolate_and_the_depth_is_no_worse():
    """Ground truth. The noisy leaf: where noise drives the focus weights the fused levels
    are interpolate's own, so the image is within 0.2 dB of interpolate's (without that
    fallback: -0.45 dB). The wls depth, guided by the hybrid image only where it changed
    interpolate's much (a halo removed), is no worse than interpolate's on the noisy leaf
    and the noisy low-texture step (with the hybrid image as the guide: +1.4%, +2.3%), and
    keeps most of the clean leaf's gain (-41%)."""
    from dffbatch.truth.metrics import depth_metrics, psnr
    from dffbatch.truth.synth import render_stack

    def both(frames):
        return [depth_from_focus(frames, composite=c, align="none") for c in ("hybrid", "interpolate")]

    frames, g, af, _ = _leaf(noise=0.02)
    hyb, itp = both(frames)
    assert psnr(hyb.allfocus, af) > psnr(itp.allfocus, af) - 0.2
    assert depth_metrics(hyb.depth, g)["rmse"] <= depth_metrics(itp.depth, g)["rmse"] * 1.001
    frames, g, af, _ = render_stack("step", "lowtex", (96, 96), 10, noise=0.02, seed=17)
    hyb, itp = both(frames)
    assert depth_metrics(hyb.depth, g)["rmse"] <= depth_metrics(itp.depth, g)["rmse"] * 1.001
    frames, g, af, _ = _leaf()
    hyb, itp = both(frames)
    assert depth_metrics(hyb.depth, g)["rmse"] < 0.8 * depth_metrics(itp.depth, g)["rmse"]


def test_grey_and_tiny_frames():
    rng = np.random.default_rng(3)
    grey = [rng.integers(0, 256, (70, 90), dtype=np.uint8) for _ in range(4)]
    r = depth_from_focus(grey, composite="hybrid", align="none")
    assert r.allfocus.shape == (70, 90) and r.allfocus.dtype == np.uint8
    tiny = [rng.integers(0, 256, (20, 20, 3), dtype=np.uint8) for _ in range(3)]  # one level: interpolate
    a = depth_from_focus(tiny, composite="hybrid", align="none").allfocus
    assert np.array_equal(a, depth_from_focus(tiny, composite="interpolate", align="none").allfocus)


def test_hybrid_sees_registered_frames():
    """A breathing stack, aligned: the hybrid's pyramid is built on the output grid (each
    frame reduced on its own grid, then moved), and it is as close to the truth as
    interpolate's Lanczos-sampled image."""
    from dffbatch.truth.metrics import psnr
    from dffbatch.truth.synth import render_stack
    frames, g, af, _ = render_stack("slant", "noise", (256, 256), 8, breathing=0.004, seed=5)
    hyb = depth_from_focus(frames, composite="hybrid", align="similarity")
    itp = depth_from_focus(frames, composite="interpolate", align="similarity")
    assert hyb.alignment.applied and hyb.allfocus.shape == af.shape
    assert psnr(hyb.allfocus, af) > psnr(itp.allfocus, af) - 0.3, (psnr(hyb.allfocus, af), psnr(itp.allfocus, af))
    unaligned = depth_from_focus(frames, composite="hybrid", align="none")
    assert psnr(hyb.allfocus, af) > psnr(unaligned.allfocus, af) + 3.0
