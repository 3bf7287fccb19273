"""Every kernel against the plain NumPy reference in tests/reference.py."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import reference as ref
from dffbatch import MEASURES, focus_measure
from dffbatch.stages.depth import DepthState
from dffbatch.stages.measure import luminance
from dffbatch.stages.refine import median_filter

DTYPES = [np.uint8, np.uint16, np.float32]


def random_frame(rng, H, W, C, dtype):
    shape = (H, W) if C == 0 else (H, W, C)
    if dtype == np.float32:
        return rng.random(shape).astype(np.float32)
    return rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)


frame_params = st.tuples(st.integers(1, 13), st.integers(1, 13), st.sampled_from([0, 1, 3, 4]),
                         st.sampled_from(DTYPES), st.integers(0, 2 ** 31))


@settings(max_examples=40, deadline=None)
@given(frame_params)
def test_luminance_matches_reference(p):
    H, W, C, dtype, seed = p
    f = random_frame(np.random.default_rng(seed), H, W, C, dtype)
    np.testing.assert_allclose(luminance(f), ref.luminance(f), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("measure", MEASURES)
@settings(max_examples=15, deadline=None)
@given(p=frame_params, window=st.sampled_from([1, 3, 5, 9]), step=st.integers(1, 3))
def test_measure_matches_reference(measure, p, window, step):
    H, W, C, dtype, seed = p
    f = random_frame(np.random.default_rng(seed), H, W, C, dtype)
    got = focus_measure(f, measure, window, step=step)
    want = ref.focus_measure(f, measure, window, step=step)
    assert got.dtype == np.float32 and got.shape == (H, W)
    scale = max(np.abs(want).max(), 1e-3)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5 * scale)


def test_sml_threshold_zeroes_weak_responses():
    rng = np.random.default_rng(1)
    f = rng.random((20, 30)).astype(np.float32)
    t = 0.8
    np.testing.assert_allclose(focus_measure(f, "sml", 3, threshold=t),
                               ref.focus_measure(f, "sml", 3, threshold=t), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("measure", MEASURES)
def test_constant_frame_has_zero_focus(measure):
    f = np.full((7, 9, 3), 77, np.uint8)
    np.testing.assert_allclose(focus_measure(f, measure, 5), 0.0, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(N=st.integers(2, 7), H=st.integers(1, 9), W=st.integers(1, 9),
       interp=st.sampled_from(["gaussian", "parabolic", "none"]), seed=st.integers(0, 2 ** 31),
       kind=st.sampled_from(["random", "ties", "zeros"]))
def test_depth_state_matches_volume_reference(N, H, W, interp, seed, kind):
    rng = np.random.default_rng(seed)
    if kind == "random":
        F = rng.random((N, H, W)).astype(np.float32)
    elif kind == "ties":
        F = rng.integers(0, 3, (N, H, W)).astype(np.float32)
    else:
        F = np.zeros((N, H, W), np.float32)
    st_ = DepthState((H, W))
    prev = np.zeros((H, W), np.float32)
    for k in range(N):
        st_.update(F[k], prev)
        prev = F[k]
    d, conf = st_.finish(interp)
    rd, rbest, rconf = ref.depth(F.astype(np.float64), interp)
    np.testing.assert_array_equal(st_.best, rbest)
    np.testing.assert_allclose(d, rd, atol=1e-5)
    np.testing.assert_allclose(conf, rconf, atol=1e-5)
    assert np.isfinite(d).all() and d.min() >= 0 and d.max() <= N - 1


@settings(max_examples=40, deadline=None)
@given(H=st.integers(1, 12), W=st.integers(1, 12), size=st.sampled_from([0, 1, 3, 5, 7]),
       seed=st.integers(0, 2 ** 31))
def test_median_matches_reference(H, W, size, seed):
    img = np.random.default_rng(seed).random((H, W)).astype(np.float32)
    np.testing.assert_array_equal(median_filter(img, size), ref.median(img, size).astype(np.float32))


@given(st.integers(1, 9), st.integers(1, 11), st.integers(1, 4), st.sampled_from([1, 3, 4]),
       st.integers(0, 2 ** 31 - 1))
@settings(max_examples=40, deadline=None)
def test_warped_composite_updates_match_reference(H, W, N, C, seed):
    """Compositing native frames through a matrix = sampling them (Lanczos-3) first, then compositing."""
    from dffbatch.stages.composite import (update_neighbours, update_neighbours_warped, update_select,
                                    update_select_warped)
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 255, (H + 3, W + 2, C), dtype=np.uint8) for _ in range(N)]
    Ms = [np.array([[1 + rng.normal(0, 0.05), rng.normal(0, 0.05), rng.uniform(-1, 3)],
                    [rng.normal(0, 0.05), 1 + rng.normal(0, 0.05), rng.uniform(-1, 3)]]) for _ in range(N)]
    best = rng.integers(0, N, (H, W)).astype(np.int32)
    sampled = [ref.lanczos_sample(f, M, (H, W)) for f, M in zip(frames, Ms)]
    want = [np.zeros((H, W, C), np.uint8) for _ in range(4)]
    got = [np.zeros((H, W, C), np.uint8) for _ in range(4)]
    for k in range(N):
        update_select(sampled[k], best, k, want[0], np.uint8(255))
        update_select_warped(frames[k], Ms[k], best, k, got[0], True, 255.0)
        p = max(k - 1, 0)
        update_neighbours(sampled[k], sampled[p], best, k, *want[1:], np.uint8(255))
        update_neighbours_warped(frames[k], Ms[k], frames[p], Ms[p], best, k, *got[1:], True, 255.0)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    # the identity samples every pixel exactly (as the unaligned path copies it)
    eye = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    f = frames[0][:H, :W]
    out = np.zeros((H, W, C), np.uint8)
    update_select_warped(f, eye, np.zeros((H, W), np.int32), 0, out, True, 255.0)
    np.testing.assert_array_equal(out, f)


@pytest.mark.parametrize("C", [1, 3])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_warped_samples_on_whole_pixels_in_one_or_both_axes_match_the_reference(C, dtype):
    """Where a sample falls on a pixel column, a pixel row or both (whole shifts; the
    reference frame), the kernel's shortcuts (the pixel itself; rows of weight 0 left
    out) give what the full 6 x 6 Lanczos-3 sum gives."""
    from dffbatch.stages.composite import update_select, update_select_warped
    rng = np.random.default_rng(3)
    H, W = 9, 11
    frame = (rng.random((H + 3, W + 2, C)) * 255).astype(dtype)
    for M in ([[1.0, 0, 2], [0, 1.0, -1]], [[1.0, 0, 0.37], [0, 1.0, 1]], [[1.0, 0, -1], [0, 1.0, 0.61]],
              [[1.0, 0, 0], [0, 1.0, 0]], [[1.0, 0, W + 5], [0, 1.0, -H - 4]],  # clamped borders
              [[1.0, 0, 1.99999], [0, 1.0, -0.00001]]):  # offsets that round to the next pixel (1024/1024)
        M = np.array(M)
        is_int = np.dtype(dtype).kind == "u"
        want, got = np.zeros((H, W, C), dtype), np.zeros((H, W, C), dtype)
        best = np.zeros((H, W), np.int32)
        sampled = ref.lanczos_sample(frame, M, (H, W))
        update_select(sampled.view(f"u{np.dtype(dtype).itemsize}"), best, 0, want.view(f"u{np.dtype(dtype).itemsize}"),
                      np.iinfo(f"u{np.dtype(dtype).itemsize}").max)
        update_select_warped(frame, M, best, 0, got, is_int, 255.0 if is_int else 0.0)
        np.testing.assert_array_equal(got, want, err_msg=str(M))


@given(st.integers(2, 9), st.integers(1, 11), st.integers(2, 7), st.sampled_from([1, 3]),
       st.sampled_from(["select", "interpolate"]), st.sampled_from(["gaussian", "parabolic", "none"]),
       st.booleans(), st.integers(3, 8), st.integers(0, 2 ** 31 - 1))
@settings(max_examples=60, deadline=None)
def test_lazy_aligned_compositor_equals_the_eager_kernels(H, W, N, C, mode, interp, ties, hold, seed):
    """Aligned frames are sampled when a pixel's best frame has held for ``hold`` frames
    (and at the end), not at every change, and with the depth state only the neighbour
    the blend reads: the all-in-focus image is the same as the eager kernels', whatever
    the hold (the held frames' memory budget sets it)."""
    from dffbatch.stages import composite
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 255, (H + 2, W + 3, C), dtype=np.uint8) for _ in range(N)]
    budget = composite.HELD_BYTES
    composite.HELD_BYTES = (hold + 2) * frames[0].nbytes
    assert composite.hold_for(frames[0].nbytes) == hold
    try:
        _lazy_against_eager(H, W, N, C, mode, interp, ties, rng, frames)
    finally:
        composite.HELD_BYTES = budget


def test_held_frames_fit_their_memory_budget():
    from dffbatch.stages.composite import HOLD, HOLD_MAX, hold_for
    assert hold_for(1080 * 1080 * 3) == HOLD_MAX == 16  # 3.5 MB: 19 frames would fit
    assert hold_for(6000 * 4000 * 3) == HOLD == 3       # 24 megapixels: as before
    assert hold_for(1920 * 1080 * 3) == 8               # 6.2 MB: 10 frames fit
    assert hold_for((64 << 20) // 6) == 4               # 11 MB frames: 6 fit


def _lazy_against_eager(H, W, N, C, mode, interp, ties, rng, frames):
    from dffbatch.stages.composite import Compositor, blend, update_neighbours_warped, update_select_warped
    from dffbatch.stages.depth import DepthState
    Ms = [np.array([[1 + rng.normal(0, 0.03), rng.normal(0, 0.03), rng.uniform(-1, 2)],
                    [rng.normal(0, 0.03), 1 + rng.normal(0, 0.03), rng.uniform(-1, 2)]]) for _ in range(N)]
    focus = rng.random((N, H, W)).astype(np.float32)
    if ties:  # flat curves and equal neighbours: offsets of exactly 0
        focus = np.round(focus * 3).astype(np.float32)
    st_ = DepthState((H, W))
    lazy = Compositor((H, W, C), np.uint8, mode, interp)
    eager = [np.zeros((H, W, C), np.uint8) for _ in range(3)]
    prev = np.zeros((H, W), np.float32)
    for k in range(N):
        st_.update(focus[k], prev)
        prev = focus[k]
        lazy.update(frames[k], None, st_.best, k, Ms[k], st_)
        p = max(k - 1, 0)
        if mode == "select":
            update_select_warped(frames[k], Ms[k], st_.best, k, eager[1], True, 255.0)
        else:
            update_neighbours_warped(frames[k], Ms[k], frames[p], Ms[p], st_.best, k, *eager, True, 255.0)
    raw, _ = st_.finish(interp)
    got = lazy.finish(raw, st_.best)
    if mode == "select":
        want = eager[1]
    else:
        want = np.empty_like(got)
        blend(raw, st_.best, *eager, True, want)
    np.testing.assert_array_equal(got, want)


@given(st.integers(1, 7), st.integers(1, 9), st.integers(1, 5), st.sampled_from([1, 3, 4]),
       st.sampled_from([np.uint8, np.uint16, np.float32, np.float64]), st.integers(0, 2 ** 31 - 1))
@settings(max_examples=40, deadline=None)
def test_unaligned_composite_updates_match_numpy(H, W, N, C, dtype, seed):
    """The bitwise-blend compositor kernels copy exactly what NumPy's ``where`` copies, in any dtype."""
    from dffbatch.stages.composite import Compositor
    rng = np.random.default_rng(seed)
    frames = [(rng.random((H, W, C)) * 60000 - (0 if np.dtype(dtype).kind == "u" else 30000)).astype(dtype)
              for _ in range(N)]
    best = np.zeros((H, W), np.int32)
    comp = {m: Compositor((H, W, C), dtype, m) for m in ("select", "interpolate")}
    want = {n: np.zeros((H, W, C), dtype) for n in ("sel", "below", "at", "above")}
    for k in range(N):
        best = np.where(rng.random((H, W)) < 0.5, k, best).astype(np.int32)
        prev = frames[max(k - 1, 0)]
        for m, c in comp.items():
            c.update(frames[k], None if k == 0 else prev, best, k)
        now, before = (best == k)[..., None], (best == k - 1)[..., None]
        want["sel"] = np.where(now, frames[k], want["sel"])
        want["at"] = np.where(now, frames[k], want["at"])
        want["below"] = np.where(now, prev, want["below"])
        want["above"] = np.where(before, frames[k], want["above"])
    np.testing.assert_array_equal(comp["select"].at, want["sel"])
    for n in ("below", "at", "above"):
        np.testing.assert_array_equal(getattr(comp["interpolate"], n), want[n])


def _over_array(f):
    """A compiled loop applying the scalar kernel function ``f`` to each value of an array."""
    from numba import njit

    @njit
    def run(a):
        out = np.empty_like(a)
        for i in range(a.size):
            out[i] = f(a[i])
        return out
    return run


def test_branch_free_logf_within_three_ulp_of_the_exact_log():
    """The vectorisable log of the depth interpolation against float64 NumPy: at most 3 ulp
    (float32) over normals, subnormals and the edges; ln 1 = 0, ln 0 = -inf, sign of x - 1."""
    from dffbatch.stages.kernels import logf
    logs = _over_array(logf)
    rng = np.random.default_rng(1)
    tiny = np.finfo(np.float32).tiny
    a = np.concatenate([np.exp(rng.uniform(-87, 88, 20000)), rng.uniform(0.5, 2.0, 20000),
                        [1.0, 0.5, 2.0, np.nextafter(np.float32(1), 2), np.nextafter(np.float32(1), 0),
                         tiny, tiny / 3, 1e-45, 3e38, np.sqrt(0.5), np.sqrt(2.0)]]).astype(np.float32)
    got = logs(a).astype(np.float64)
    want = np.log(a.astype(np.float64))
    ulp = np.abs(got - want) / np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    assert ulp.max() <= 3.0, (ulp.max(), a[np.argmax(ulp)])
    assert logs(np.float32([1.0]))[0] == 0.0 and logs(np.float32([0.0]))[0] == -np.inf
    assert (np.sign(got) == np.sign(a.astype(np.float64) - 1)).all()


@pytest.mark.parametrize("threads", [1, 2])
def test_full_and_zeros_equal_numpys(threads):
    """The state arrays set by Numba's threads: the bytes of ``np.full`` / ``np.zeros`` for
    every dtype and a size that is not a whole number of 4-byte words."""
    import numba
    from dffbatch.stages.kernels import full, zeros
    old = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        for shape, value, dtype in [((300, 301), -1, np.int32), ((300, 301), -1.0, np.float32),
                                    ((301, 303, 3), 0, np.uint8), ((64, 64, 3), 0, np.uint16),
                                    ((7, 5), 0, np.float64), ((5,), 7, np.uint8), ((0, 4), 0, np.float32)]:
            want = np.full(shape, value, dtype)
            got = full(shape, value, dtype)
            assert got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes()
            if value == 0:
                assert zeros(shape, dtype).tobytes() == want.tobytes()
    finally:
        numba.set_num_threads(old)


def test_branch_free_expf_within_one_ulp_of_the_exact_exp():
    """The vectorisable exp of the confidence model against float64 NumPy: at most 1 ulp
    (float32) over [-87, 88], exp 0 = 1 exactly, 0 below the range and inf above it, nan
    for nan; and the logistic it serves within 2e-7 of the exact one everywhere."""
    from dffbatch.stages.kernels import expf
    exps = _over_array(expf)
    rng = np.random.default_rng(2)
    a = np.concatenate([rng.uniform(-87, 88, 200000), rng.uniform(-1, 1, 20000),
                        [-87.0, 88.0, -0.5 * np.log(2), 0.5 * np.log(2), 1e-8, -1e-8]]).astype(np.float32)
    got = exps(a).astype(np.float64)
    want = np.exp(a.astype(np.float64))
    ulp = np.abs(got - want) / np.spacing(want.astype(np.float32)).astype(np.float64)
    assert ulp.max() <= 1.0, (ulp.max(), a[np.argmax(ulp)])
    edges = exps(np.float32([0.0, -87.5, -1e4, 88.5, 1e4, np.inf, -np.inf, np.nan]))
    assert edges[0] == 1.0 and (edges[1:3] == 0).all() and np.isinf(edges[3:6]).all() and edges[6] == 0
    assert np.isnan(edges[7])
    z = np.linspace(-120, 120, 100001).astype(np.float32)
    sig = 1.0 / (1.0 + exps(-z).astype(np.float32))
    assert np.abs(sig - 1.0 / (1.0 + np.exp(-z.astype(np.float64)))).max() < 2e-7


@pytest.mark.parametrize("threads", [1, 2])
def test_fused_pass_equals_the_stage_kernels(threads):
    """Measure, depth update and compositing in one banded pass: the same bytes as the whole-frame
    stage kernels (FocusMeasure, update_best, update_select / update_neighbours), for every measure,
    window, dtype, channel count and composite, on shapes around the band size."""
    import numba
    from dffbatch.stages.composite import Compositor
    from dffbatch.stages.depth import DepthState
    from dffbatch.stages.fused import BAND, measure_pass
    from dffbatch.stages.measure import MEASURES, FocusMeasure
    rng = np.random.default_rng(threads)
    old = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        cases = [(BAND + 7, 23, 3, np.uint8), (5, 9, 1, np.uint16), (2 * BAND + 1, 4, 4, np.float32),
                 (BAND, 17, 3, np.uint16), (3, 2, 1, np.uint8)]
        for (H, W, C, dtype), m in zip(cases * 2, MEASURES):
            for window, mode in ((1, "select"), (9, "interpolate"), (5, "interpolate")):
                frames = [(rng.random((H, W, C)) * 250).astype(dtype) for _ in range(4)]
                fm = FocusMeasure((H, W), m, window, 2 if m == "sml" else 1, 0.01)
                states = [DepthState((H, W)), DepthState((H, W))]
                comps = [Compositor((H, W, C), dtype, mode), Compositor((H, W, C), dtype, mode)]
                fs = [[np.zeros((H, W), np.float32)], [np.zeros((H, W), np.float32)]]
                for k, fr in enumerate(frames):
                    prev = frames[k - 1] if k and mode == "interpolate" else None
                    f = fm(fr, np.empty((H, W), np.float32))  # the stages, one after the other
                    states[0].update(f, fs[0][-1])
                    comps[0].update(fr, prev, states[0].best, k)
                    fs[0].append(f)
                    g = measure_pass(fm, fr, np.empty((H, W), np.float32), states[1], fs[1][-1], comps[1], fr, prev)
                    fs[1].append(g)
                    np.testing.assert_array_equal(g, f, err_msg=f"{m} w{window} {dtype.__name__} frame {k}")
                for name in ("best", "fbest", "fbelow", "fabove", "fsum", "fsecond", "flag"):
                    np.testing.assert_array_equal(getattr(states[1], name), getattr(states[0], name), err_msg=name)
                assert states[1].n == states[0].n == 4
                for name in (("at",) if mode == "select" else ("below", "at", "above")):
                    np.testing.assert_array_equal(getattr(comps[1], name), getattr(comps[0], name), err_msg=name)
    finally:
        numba.set_num_threads(old)


def test_one_thread_runs_the_serial_twin_and_it_gives_the_same_bytes():
    """Every parallel kernel has a serial twin of the same source (its own name, so its own
    cache files), which a call on one Numba thread runs while twins are in use (a first
    run's workers); the bytes are the parallel one's, on one thread or two."""
    import numba
    from dffbatch.stages import solve
    from dffbatch.stages.kernels import Kernel, use_twins
    k = solve.affinities
    assert isinstance(k, Kernel) and k.serial.py_func.__qualname__ == "affinities_serial"
    assert k.serial.targetoptions.get("parallel") is not True and k.parallel.targetoptions["parallel"]
    g = np.random.default_rng(3).random((37, 41)).astype(np.float32)
    old = numba.get_num_threads()
    outs = []
    try:
        for twins, t in ((True, 1), (False, 1), (True, min(2, numba.config.NUMBA_NUM_THREADS))):
            use_twins(twins)
            numba.set_num_threads(t)
            assert k.variant is (k.serial if twins and t == 1 else k.parallel)
            ax, ay = np.empty_like(g), np.empty_like(g)
            k(g, np.float32(0.03), ax, ay)
            outs.append((ax, ay))
    finally:
        use_twins(False)
        numba.set_num_threads(old)
    for got in outs[1:]:
        for a, b in zip(outs[0], got):
            np.testing.assert_array_equal(a, b)


def test_a_stack_on_the_serial_twins_gives_the_bytes_of_the_parallel_kernels():
    """A first run's workers call the twins, later runs the parallel kernels: the outputs
    must not depend on which (default parameters, aligned and not)."""
    import numba
    from dffbatch import depth_from_focus
    from dffbatch.stages.kernels import use_twins
    from dffbatch.truth.synth import render_stack
    still, *_ = render_stack("step", "noise", (64, 72), 6, noise=0.01, seed=2)
    moved, *_ = render_stack("slant", "noise", (256, 256), 6, breathing=0.004, seed=3)
    old = numba.get_num_threads()
    got = {}
    try:
        numba.set_num_threads(1)
        for twins in (True, False):
            use_twins(twins)
            for name, frames in (("still", still), ("moved", moved)):
                r = depth_from_focus(frames)
                got[name, twins] = (r, r.alignment.applied if r.alignment else False)
    finally:
        use_twins(False)
        numba.set_num_threads(old)
    assert got["moved", True][1], "the breathing stack must exercise the aligned kernels"
    for name in ("still", "moved"):
        a, b = got[name, True][0], got[name, False][0]
        for field in ("depth", "confidence", "allfocus"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=f"{name} {field}")


def _poison(*arrays):
    """Fill arrays with a byte pattern no start value has (0x7F: 3.4e38 as float32): what
    ``np.empty`` may hold."""
    for a in arrays:
        a.view(np.uint8).reshape(-1)[:] = 0x7F


def test_the_first_frame_writes_every_state_array_whole():
    """State arrays start uninitialised (no pass that zeroes them): the first frame's
    update sets them row by row. Poisoned before the first frame, the stages (depth,
    composite, the fused pass and the hybrid's pyramids) give the bytes of states that
    start from their documented values (best -1, fbest -1.0, the rest 0)."""
    from dffbatch.stages.base import Frame, Grid
    from dffbatch.stages.composite import Compositor
    from dffbatch.stages.depth import Depth
    from dffbatch.stages.fused import measure_pass
    from dffbatch.stages.hybrid import Hybrid
    from dffbatch.stages.measure import FocusMeasure
    rng = np.random.default_rng(5)
    H, W, C = 70, 45, 3
    frames = [rng.integers(0, 256, (H, W, C), dtype=np.uint8) for _ in range(4)]
    fm = FocusMeasure((H, W), "sml", 5, 2, 0.01)
    for fused in (False, True):
        for mode in ("select", "interpolate"):
            runs = []
            for poisoned in (False, True):
                st, comp = DepthState((H, W)), Compositor((H, W, C), np.uint8, mode)
                arrays = [getattr(st, n) for n in ("best", "fbest", "fbelow", "fabove", "fsum", "fsecond", "flag")]
                arrays += [getattr(comp, n) for n in ("at", "below", "above") if hasattr(comp, n)]
                if poisoned:
                    _poison(*arrays)
                else:  # the start values the stages documented before they stopped setting them
                    for a in arrays:
                        a[...] = 0
                    st.best[...], st.fbest[...] = -1, -1.0
                prev_f = np.zeros((H, W), np.float32)
                for k, fr in enumerate(frames):
                    prev = frames[k - 1] if k and mode == "interpolate" else None
                    f = np.empty((H, W), np.float32)
                    if fused:
                        measure_pass(fm, fr, f, st, prev_f, comp, fr, prev)
                    else:
                        fm(fr, f)
                        st.update(f, prev_f)
                        comp.update(fr, prev, st.best, k)
                    prev_f = f
                runs.append([a.copy() for a in arrays])
            for a, b in zip(*runs):
                np.testing.assert_array_equal(b, a, err_msg=f"fused {fused} {mode}")
    # the hybrid's running sums and low-pass states
    runs = []
    for poisoned in (False, True):
        depth = Depth("gaussian", Grid())
        hy = Hybrid(depth, Grid())
        depth.start((H, W, C), np.uint8)
        hy.start((H, W, C), np.uint8)
        arrays = hy.acc[1:] + hy.wsum[1:] + hy.wmax[1:] + [hy.below, hy.at, hy.above, hy.E, hy.E_prev]
        if poisoned:
            _poison(*arrays)
        else:
            for a in arrays:
                a[...] = 0
        prev_f = np.zeros((H, W), np.float32)
        for k, fr in enumerate(frames):
            frame = Frame(k, fr)
            frame.pixels = fr
            frame.focus, frame.focus_prev = fm(fr, np.empty((H, W), np.float32)), prev_f
            depth.update(frame, k)
            hy.update(frame, k)
            prev_f = frame.focus
        runs.append([a.copy() for a in hy.acc[1:] + hy.wsum[1:] + hy.wmax[1:] + [hy.below, hy.at, hy.above]])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(b, a, err_msg="hybrid")


def test_a_cached_kernel_is_compiled_again_when_a_function_it_calls_changes_file(tmp_path):
    """Numba keys a cached function to its own file, and a kernel's machine code holds the
    functions it calls from other files. The package keys its cached functions to the bytes
    of all its modules: a changed helper in one file reaches a cached caller in another
    (focus_stack's frame_pass kept a changed depth-update row until this key)."""
    import os
    import shutil
    import subprocess
    import sys
    from dffbatch.stages import kernels
    pkg = tmp_path / "pk"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    shutil.copy(kernels.__file__, pkg / "kernels.py")  # registers the key for its own folder
    helper = "from . import kernels  # noqa: F401\nfrom numba import njit\n\n\n@njit(cache=True)\ndef helper(x):\n    return x + {}\n"
    (pkg / "a.py").write_text(helper.format(1))
    (pkg / "b.py").write_text("from . import kernels  # noqa: F401\nfrom numba import njit\nfrom .a import helper\n\n\n"
                              "@njit(cache=True)\ndef f(x):\n    return helper(x) * 10\n")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["NUMBA_DEBUG_CACHE"] = "1"

    def run():
        p = subprocess.run([sys.executable, "-c", "import pk.b; print('f(1) =', pk.b.f(1))"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, check=True)
        return p.stdout
    assert "f(1) = 20" in run()
    again = run()
    assert "f(1) = 20" in again and "data loaded" in again  # the second process loads f from the cache
    (pkg / "a.py").write_text(helper.format(2))
    assert "f(1) = 30" in run()  # b.py did not change, and f still runs the new helper
