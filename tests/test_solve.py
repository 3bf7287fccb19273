"""The global WLS solve (refine: wls): kernels against SciPy/NumPy references, the evidence
it is weighted by, thread independence, accuracy where focus is weak, memory, bad parameters."""
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from conftest import rolled_stream
from scipy.linalg import solve_banded

from dffbatch import depth_from_focus
from dffbatch.stages.depth import DepthState, block_mean
from dffbatch.truth.metrics import ause, depth_metrics, sparsification
from dffbatch.stages.solve import _smooth_cols, _smooth_rows, affinities, fgs_normalized, wls_solve
from dffbatch.truth.synth import render_stack, texture_regions


# ------------------------------------------------------------------ references
def _affinity_ref(g, sigma):
    step = 4.0 * sigma / 1024  # the kernel's table: 1024 steps over 4 sigma, 0 beyond
    def a(dg):
        q = np.minimum(np.floor(np.abs(dg) / step), 1024) * step
        return np.where(np.abs(dg) / step >= 1024, 0.0, np.exp(-0.5 * (q / sigma) ** 2))
    ax = np.zeros_like(g, dtype=np.float64)
    ay = np.zeros_like(g, dtype=np.float64)
    ax[:, :-1] = a(g[:, 1:] - g[:, :-1])
    ay[:-1, :] = a(g[1:, :] - g[:-1, :])
    return ax, ay


def _line_solve_ref(b, links, lam):
    """Solve (I + lam L) x = b for one line; links[i] joins i and i+1 (SciPy banded solver)."""
    n = b.size
    w = lam * np.asarray(links[:n - 1], np.float64)
    ab = np.zeros((3, n))
    ab[0, 1:] = -w
    ab[2, :-1] = -w
    ab[1] = 1.0
    ab[1, :-1] += w
    ab[1, 1:] += w
    return solve_banded((1, 1), ab, b.astype(np.float64))


def _fgs_ref(d, w, ax, ay, lam, T):
    u, v = (w * d).astype(np.float64), w.astype(np.float64)
    for t in range(1, T + 1):
        lt = 1.5 * lam * 4.0 ** (T - t) / (4.0 ** T - 1.0)
        for y in range(d.shape[0]):
            u[y], v[y] = _line_solve_ref(u[y], ax[y], lt), _line_solve_ref(v[y], ax[y], lt)
        for x in range(d.shape[1]):
            u[:, x], v[:, x] = _line_solve_ref(u[:, x], ay[:, x], lt), _line_solve_ref(v[:, x], ay[:, x], lt)
    return np.where(v > 1e-6, u / np.where(v > 1e-6, v, 1), d), v


def _maps(H=13, W=21, seed=0):
    rng = np.random.default_rng(seed)
    return tuple(rng.random((H, W)).astype(np.float32) for _ in range(3))


# ------------------------------------------------------------------ kernels
def test_affinities_match_reference():
    _, _, g = _maps()
    ax, ay = np.empty_like(g), np.empty_like(g)
    affinities(g, np.float32(0.1), ax, ay)
    rx, ry = _affinity_ref(g.astype(np.float64), 0.1)
    np.testing.assert_allclose(ax, rx, atol=1e-6)
    np.testing.assert_allclose(ay, ry, atol=1e-6)
    assert (ax[:, -1] == 0).all() and (ay[-1, :] == 0).all()


@pytest.mark.parametrize("H", [1, 4, 6, 7, 11, 13])  # row groups of 6 and the rows left over
def test_line_solves_match_scipy_banded(H):
    rng = np.random.default_rng(H)
    W = 70  # more than one column chunk
    u, v, links = (rng.random((H, W)).astype(np.float32) for _ in range(3))
    links[:, -1] = 0
    ru = np.stack([_line_solve_ref(u[y], links[y], 7.0) for y in range(H)])
    rv = np.stack([_line_solve_ref(v[y], links[y], 7.0) for y in range(H)])
    alone = [(u[y:y + 1].copy(), v[y:y + 1].copy()) for y in range(H)]
    _smooth_rows(u, v, links, np.float32(7.0), np.empty_like(u))
    np.testing.assert_allclose(u, ru, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(v, rv, rtol=2e-5, atol=2e-6)
    for y, (uy, vy) in enumerate(alone):  # a row solved in a group gives the bytes of the row solved alone
        _smooth_rows(uy, vy, links[y:y + 1], np.float32(7.0), np.empty_like(uy))
        assert np.array_equal(uy[0], u[y]) and np.array_equal(vy[0], v[y]), y
    u, v, links = (rng.random((W, H)).astype(np.float32) for _ in range(3))  # H columns of W values
    links[-1, :] = 0
    ru = np.stack([_line_solve_ref(u[:, x], links[:, x], 7.0) for x in range(H)], 1)
    rv = np.stack([_line_solve_ref(v[:, x], links[:, x], 7.0) for x in range(H)], 1)
    _smooth_cols(u, v, links, np.float32(7.0), np.empty_like(u), 4)  # bands of 4 columns and a rest
    np.testing.assert_allclose(u, ru, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(v, rv, rtol=2e-5, atol=2e-6)


def test_fgs_normalized_matches_reference():
    d, w, g = _maps()
    w[3:8, 5:12] = 0.0  # a hole with no evidence: filled from around it
    ax, ay = np.empty_like(g), np.empty_like(g)
    affinities(g, np.float32(0.2), ax, ay)
    got, support = fgs_normalized(d, w, ax, ay, 50.0, 3)
    ref, rsup = _fgs_ref(d, w, ax.astype(np.float64), ay.astype(np.float64), 50.0, 3)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(support, rsup, rtol=1e-4, atol=1e-6)


def test_solve_fills_from_its_side_of_an_edge_and_keeps_evidence():
    H, W = 40, 60
    d = np.zeros((H, W), np.float32)
    d[:, 30:] = 8.0
    g = np.where(np.arange(W) < 30, 0.2, 0.8).astype(np.float32)[None].repeat(H, 0)
    w = np.ones((H, W), np.float32)
    w[10:30, 35:55] = 0.0          # a flat hole on the right: its data is noise
    d[10:30, 35:55] = np.random.default_rng(0).uniform(0, 8, (20, 20))
    out, _ = wls_solve(d, w, g, 100.0, 0.03)
    np.testing.assert_allclose(out[10:30, 35:55], 8.0, atol=1e-3)   # filled from its side
    np.testing.assert_allclose(out[:, :30], 0.0, atol=1e-3)         # the edge holds
    np.testing.assert_allclose(out[:5], d[:5], atol=1e-3)           # evidence stays as measured


def test_line_kernels_need_no_slack_for_a_constant():
    # a constant with full weight is a fixed point of the normalised smoother
    d = np.full((9, 11), 3.25, np.float32)
    out, _ = wls_solve(d, np.full_like(d, 0.5), np.random.default_rng(1).random(d.shape).astype(np.float32), 30.0, 0.05)
    np.testing.assert_allclose(out, 3.25, rtol=1e-5)


# ------------------------------------------------------------------ streamed evidence
def test_second_peak_and_evidence_match_a_numpy_reference():
    rng = np.random.default_rng(3)
    N, H, W = 9, 6, 7
    V = rng.random((N, H, W)).astype(np.float32)
    V[:, 0, 0] = [0, 1, 5, 1, 0, 0, 4, 0, 0]        # second peak 4 at distance 4
    V[:, 0, 1] = [0.5, 1, 5, 4.5, 0, 0, 0, 0, 0]    # the neighbours 1 and 4.5 do not count: 0.5
    V[:, 1, 1] = 0                                  # no focus response at all: no evidence
    st = DepthState((H, W))
    prev = np.zeros((H, W), np.float32)
    for k in range(N):
        st.update(V[k], prev)
        prev = V[k]
    m = V.argmax(0)
    far = np.abs(np.arange(N)[:, None, None] - m[None]) >= 2
    second = np.where(far, V, 0).max(0)
    np.testing.assert_array_equal(st.fsecond, second)
    assert st.fsecond[0, 0] == 4 and st.fsecond[0, 1] == 0.5
    F0, mean = V.max(0).astype(np.float64), V.mean(0).astype(np.float64)
    amp = F0 - mean
    with np.errstate(all="ignore"):
        ref = np.where(F0 > 0, (1 - second / F0) ** 2 * amp ** 2 / (amp ** 2 + 0.01 ** 2), 0.0)
    assert st.evidence(0.01, 2)[1, 1] == 0
    np.testing.assert_allclose(st.evidence(0.01, 2), ref, rtol=1e-4, atol=1e-6)
    # a curve that peaks at the first or the last frame: its evidence times ``end``
    ends = (m == 0) | (m == N - 1)
    assert ends.any() and (~ends).any()
    np.testing.assert_allclose(st.evidence(0.01, 2, 0.05), np.where(ends, 0.05, 1.0) * ref, rtol=1e-4, atol=1e-6)


def test_block_mean_matches_numpy_with_partial_blocks():
    f = np.random.default_rng(4).random((19, 30)).astype(np.float32)
    out = np.empty((3, 4), np.float32)
    block_mean(f, 8, out)
    ref = np.array([[f[8 * i:8 * i + 8, 8 * j:8 * j + 8].mean() for j in range(4)] for i in range(3)])
    np.testing.assert_allclose(out, ref, rtol=1e-5)


# ------------------------------------------------------------------ metrics
def test_scale_mix_and_reach_blend_match_numpy():
    from dffbatch.stages.post import _blend_reach, _mix_scales
    d, w, s = _maps(13, 21, 3)
    dc, wc, _ = _maps(2, 3, 4)  # 8 x 8 blocks: partial ones at the right and bottom
    dm, wm = np.empty_like(d), np.empty_like(w)
    _mix_scales(d, w, dc, wc, 8, np.float32(0.75), dm, wm)
    up = lambda a: np.repeat(np.repeat(a, 8, 0), 8, 1)[:13, :21]  # noqa: E731
    w2 = 0.75 * up(wc)
    np.testing.assert_allclose(wm, w + w2, rtol=1e-6)
    np.testing.assert_allclose(dm, (w * d + w2 * up(dc)) / (w + w2), rtol=1e-5)
    out = np.empty_like(d)
    near, far = d, s[::-1].copy()
    _blend_reach(near, w, far, np.float32(0.01), out)
    t = w.astype(np.float64) / (w + 0.01)
    np.testing.assert_allclose(out, t * near + (1 - t) * far, rtol=1e-5, atol=1e-6)


def test_ause_is_zero_for_the_oracle_and_positive_for_the_reverse():
    err = np.random.default_rng(5).random((40, 40))
    assert ause(err, -err, border=0) == pytest.approx(0.0, abs=1e-12)
    assert ause(err, err, border=0) > 0.2          # most confident where the errors are largest
    curve, oracle = sparsification(err, -err, [0.0, 0.5], border=0)
    np.testing.assert_allclose(curve[0], np.sqrt(np.mean(err ** 2)))
    np.testing.assert_allclose(curve[1], np.sqrt(np.mean(np.sort(err.ravel())[:800] ** 2)))


# ------------------------------------------------------------------ the default path
@pytest.fixture(scope="module")
def flat_scenes():
    # the suites' size: at 128 x 128 the sinusoid's curvature is within the solver's
    # reach (about 10 px) and wls is worse than the median there (see bench_solve.py)
    return {(shape, tex, noise): render_stack(shape, tex, (256, 256), 12, noise=noise, seed=21)
            for shape, tex, noise in (("step", "flatpatch", 0.02), ("slant", "gradpatch", 0.0),
                                      ("step", "lowtex", 0.02), ("sinusoid", "noise", 0.0))}


def test_wls_is_the_default_and_fills_weak_regions(flat_scenes):
    for (shape, tex, noise), (frames, g, _, _) in flat_scenes.items():
        wls = depth_from_focus(frames)
        med = depth_from_focus(frames, refine="median")
        assert wls.params["refine"] == "wls"
        e_wls, e_med = depth_metrics(wls.depth, g)["rmse"], depth_metrics(med.depth, g)["rmse"]
        if tex == "noise":   # a smooth textured surface: no worse than the median
            assert e_wls <= 1.05 * e_med, (shape, noise, e_wls, e_med)
        else:                # flat and weak regions: the gap closes
            assert e_wls <= 0.75 * e_med, (shape, tex, noise, e_wls, e_med)
        if tex.endswith("patch"):  # the flat blobs, away from the texture their windows reach, are the least sure
            from scipy.ndimage import binary_erosion
            reg = texture_regions(tex, 256, 256, 21)
            flat = binary_erosion(reg == 2, iterations=12)
            assert wls.confidence[flat].mean() < wls.confidence[reg == 0].mean() - 0.05
        assert ause(np.abs(wls.depth - g), wls.confidence) < ause(np.abs(med.depth - g), med.confidence)


def test_same_bytes_for_one_and_two_threads(tmp_path):
    code = ("import numba, numpy as np, sys; numba.set_num_threads(int(sys.argv[1]));"
            "from dffbatch.truth.synth import render_stack; from dffbatch import depth_from_focus;"
            "f = render_stack('step', 'flatpatch', (96, 80), 8, noise=0.02, seed=2)[0];"
            "r = depth_from_focus(f); np.save(sys.argv[2], np.stack([r.depth, r.confidence]))")
    outs = []
    for n in (1, 2):
        p = tmp_path / f"t{n}.npy"
        subprocess.run([sys.executable, "-c", code, str(n), str(p)], check=True)
        outs.append(np.load(p))
    assert outs[0].tobytes() == outs[1].tobytes()


def _stream(n, H=128, W=128):
    return rolled_stream(n, H, W)


def test_wls_memory_is_independent_of_frames():
    depth_from_focus(_stream(2, 16, 16))
    peaks = {}
    for n in (12, 48):
        tracemalloc.start()
        depth_from_focus(_stream(n))
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks[48] <= 1.1 * peaks[12], peaks


@pytest.mark.parametrize("kw, match", [(dict(lam=-1.0), "lam"), (dict(lam=float("nan")), "lam"),
                                       (dict(sigma=0.0), "sigma"), (dict(iterations=0), "iterations"),
                                       (dict(iterations=2.5), "iterations")])
def test_bad_solver_parameters_name_the_key(kw, match):
    d, w, g = _maps()
    with pytest.raises(ValueError, match=match):
        wls_solve(d, w, g, **kw)


def test_bad_strength_names_the_key():
    frames = [np.zeros((16, 16), np.uint8)] * 2
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="refine_strength"):
            depth_from_focus(frames, refine_strength=bad)
