"""depth_from_focus end to end: accuracy, streaming memory, determinism, errors."""
import json
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

import reference as ref
from conftest import blurred_stack, seed_path, rolled_stream
from dffbatch import depth_from_focus, focus_measure


def test_recovers_known_depth_within_half_a_frame():
    frames, g = blurred_stack(H=64, W=96, n=9)
    r = depth_from_focus(frames, measure="sml", window=7, median=3)
    inner = (slice(8, -8), slice(8, -8))
    err = np.abs(r.depth - g)[inner]
    assert np.percentile(err, 95) < 0.5, np.percentile(err, 95)
    assert r.depth.dtype == np.float32 and r.index.dtype == np.int32
    assert r.n_frames == 9


def test_matches_reference_volume_pipeline():
    """Streaming result equals a full-volume NumPy implementation of the same method."""
    frames, _ = blurred_stack(H=24, W=20, n=6)
    r = depth_from_focus(frames, measure="lapv", window=3, median=0, composite="select", refine="median")
    F = np.stack([ref.focus_measure(f, "lapv", 3) for f in frames])
    d, best, conf = ref.depth(F)
    np.testing.assert_array_equal(r.index, best)
    np.testing.assert_allclose(r.depth, d, atol=1e-3)
    want_af = np.take_along_axis(np.stack(frames), best[None, :, :, None], 0)[0]
    np.testing.assert_array_equal(r.allfocus, want_af)


def test_interpolate_composite_blends_the_two_frames_around_depth():
    frames, _ = blurred_stack(H=16, W=16, n=5)
    r = depth_from_focus(frames, composite="interpolate", median=0, refine="median")
    raw = depth_from_focus(frames, composite="interpolate", median=0, refine="median").depth
    st = np.stack(frames).astype(np.float64)
    lo = np.floor(raw).astype(int)
    hi = np.minimum(lo + 1, 4)
    t = (raw - lo)[..., None]
    want = (1 - t) * np.take_along_axis(st, lo[None, ..., None], 0)[0] + t * np.take_along_axis(st, hi[None, ..., None], 0)[0]
    assert r.allfocus.dtype == np.uint8
    assert np.abs(r.allfocus.astype(float) - want).max() <= 0.5 + 1e-6


@pytest.mark.parametrize("dtype,channels", [(np.uint16, 3), (np.uint8, 0), (np.float32, 4), (np.uint16, 0)])
def test_allfocus_keeps_dtype_channels_and_values(dtype, channels):
    rng = np.random.default_rng(3)
    shape = (10, 12) if channels == 0 else (10, 12, channels)
    if dtype == np.float32:
        frames = [rng.random(shape).astype(dtype) * 1000 for _ in range(4)]
    else:
        frames = [rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype) for _ in range(4)]
    r = depth_from_focus(frames, composite="select")
    assert r.allfocus.dtype == dtype and r.allfocus.shape == shape
    st = np.stack(frames)
    idx = r.index[None, :, :, None] if channels else r.index[None]
    np.testing.assert_array_equal(r.allfocus, np.take_along_axis(st, idx, 0)[0])
    if dtype == np.uint16:
        assert r.allfocus.max() > 255  # no rescaling to 8 bits


def test_confidence_low_on_flat_high_on_texture():
    frames, _ = blurred_stack(H=48, W=64, n=9)
    rng = np.random.default_rng(0)
    flat = []
    for f in frames:  # right half: flat grey with sensor noise, no texture
        f = f.copy()
        f[:, 32:] = np.clip(128 + rng.normal(0, 2, f[:, 32:].shape), 0, 255).astype(np.uint8)
        flat.append(f)
    r = depth_from_focus(flat, window=5)
    textured = np.median(r.confidence[8:-8, 4:24])
    noisy_flat = np.median(r.confidence[8:-8, 40:60])
    assert textured > 0.5 and noisy_flat < 0.5 * textured, (textured, noisy_flat)
    const = depth_from_focus([np.full((8, 8), 9, np.uint8)] * 3)  # no evidence anywhere: unknown
    assert (const.confidence < 0.5).all() and (const.depth == 0).all(), const.confidence.max()


def test_positions_give_depth_in_physical_units():
    frames, _ = blurred_stack(H=16, W=16, n=5)
    pos = [100.0, 110.0, 120.0, 130.0, 140.0]
    r = depth_from_focus(frames, positions=pos)
    np.testing.assert_allclose(r.depth_units, 100.0 + 10.0 * r.depth, rtol=1e-6)
    with pytest.raises(ValueError, match="positions has 3 values but the stack has 5 frames"):
        depth_from_focus(frames, positions=pos[:3])


def _stream(n, H=192, W=192):
    return rolled_stream(n, H, W)


def test_memory_is_independent_of_the_number_of_frames():
    depth_from_focus(_stream(2, 16, 16))  # compile outside the measurement
    peaks = {}
    for n in (10, 100):
        tracemalloc.start()
        depth_from_focus(_stream(n), composite="interpolate")
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks[100] <= 1.3 * peaks[10], peaks


@pytest.mark.parametrize("frames,exc,msg", [
    ([np.zeros((4, 4), np.uint8)], ValueError, "at least 2 frames"),
    ([], ValueError, "at least 2 frames"),
    ([np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8)], ValueError, r"frame 1: shape \(4, 5\) differs"),
    ([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 4), np.uint8)], ValueError, "frame 1: shape"),
    ([np.zeros((4, 4), np.float32), np.full((4, 4), np.nan, np.float32)], ValueError, "frame 1: contains NaN"),
    ([np.zeros((4, 4, 3, 2), np.uint8)] * 2, ValueError, "frame 0: expected shape"),
    ([np.zeros((4, 4), np.int64)] * 2, TypeError, "frame 0: dtype int64"),
    ([[1, 2]] * 2, TypeError, "expected a numpy array"),
    ([np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint16)], ValueError, "frame 1: dtype uint16 differs"),
])
def test_bad_frames_raise_clear_errors(frames, exc, msg):
    with pytest.raises(exc, match=msg):
        depth_from_focus(frames)


@pytest.mark.parametrize("kw,msg", [
    (dict(window=4), "window must be an odd integer"), (dict(window=0), "window must be"),
    (dict(window=-3), "window must be"), (dict(measure="foo"), "unknown focus measure 'foo'"),
    (dict(interpolation="cubic"), "unknown interpolation"), (dict(median=4), "median size"),
    (dict(composite="x"), "unknown composite"),
])
def test_bad_parameters_raise_clear_errors(kw, msg):
    frames = [np.zeros((4, 4), np.uint8)] * 2
    with pytest.raises((ValueError, TypeError), match=msg):
        depth_from_focus(frames, **kw)


_DETERMINISM = """
import hashlib, json, sys, numba, numpy as np
numba.set_num_threads(int(sys.argv[1]))
from dffbatch import depth_from_focus
rng = np.random.default_rng(5)
frames = [rng.integers(0, 255, (67, 53, 3), dtype=np.uint8) for _ in range(6)]
out = {}
for m in ("sml", "lapv", "tenv", "wavs"):
    r = depth_from_focus(frames, measure=m, composite="interpolate", median=5)
    h = hashlib.sha256()
    for a in (r.depth, r.confidence, r.allfocus, r.index):
        h.update(np.ascontiguousarray(a).tobytes())
    out[m] = h.hexdigest()
print(json.dumps(out))
"""


def test_bit_identical_across_thread_counts():
    runs = [subprocess.run([sys.executable, "-c", _DETERMINISM, str(n)], capture_output=True,
                           text=True, check=True) for n in (1, 2)]
    a, b = (json.loads(r.stdout.strip().splitlines()[-1]) for r in runs)
    assert a == b


def test_real_stack_cotton():
    import imageio.v3 as iio
    folder = seed_path("cotton")
    files = sorted(folder.glob("*.png"))
    r = depth_from_focus((iio.imread(f) for f in files), measure="sml", window=9)
    first = iio.imread(files[0])
    assert r.n_frames == len(files) == 30
    assert r.depth.shape == first.shape[:2] and r.depth.dtype == np.float32
    assert r.allfocus.shape == first.shape and r.allfocus.dtype == first.dtype
    assert 0 <= r.depth.min() and r.depth.max() <= 29 and r.depth.std() > 1
    sharp = focus_measure(r.allfocus, "sml", 9).mean()
    for f in files:
        assert sharp > focus_measure(iio.imread(f), "sml", 9).mean(), f.name


def test_parameter_lists_match_the_registries_and_the_parent_stays_numba_free():
    """dffbatch.params (what configs and the runner's parent import) names exactly what the
    kernel modules implement; importing the CLI and the runner loads no Numba."""
    import subprocess
    import sys
    from dffbatch import params
    from dffbatch.stages.post import REFINERS
    assert params.REFINES == tuple(REFINERS)
    assert params.STRENGTH_DEFAULT == {k: r.strength for k, r in REFINERS.items() if r.strength is not None}
    import dffbatch.stages.depth as d
    assert set(params.INTERPOLATIONS) == set(d._MODE)
    code = "import sys, dffbatch.cli, dffbatch.batch.runner; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_frames_that_are_views_give_the_same_result_as_copies():
    """A channel slice or a strided view of a bigger array is measured and composited as its copy
    (the kernels read rows as flat runs of values: views are made contiguous first)."""
    rng = np.random.default_rng(0)
    st = rng.integers(0, 255, (5, 40, 60, 4), dtype=np.uint8)
    for views in ([f[:, :, :3] for f in st], [f[:, ::2, 0] for f in st], [f[::-1, :, 1:] for f in st]):
        copies = [np.ascontiguousarray(v) for v in views]
        a, b = depth_from_focus(views, refine="median"), depth_from_focus(copies, refine="median")
        np.testing.assert_array_equal(a.depth, b.depth)
        np.testing.assert_array_equal(a.allfocus, b.allfocus)


def test_read_only_and_writable_frames_share_one_compiled_kernel():
    """Pillow's PNG arrays are read-only, JPEG and TIFF ones writable: the kernels see every input
    image read-only, so both run the one compiled fused pass that the first run's warm-up made
    (a second one cost 7 s of compiling inside the workers), with the same result."""
    from dffbatch.stages.fused import frame_pass
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (24, 20, 3), dtype=np.uint8) for _ in range(4)]
    a = depth_from_focus(frames)
    n = len(frame_pass.signatures)
    ro = [f.copy() for f in frames]
    for f in ro:
        f.flags.writeable = False
    b = depth_from_focus(ro)
    assert len(frame_pass.signatures) == n, frame_pass.signatures
    np.testing.assert_array_equal(a.depth, b.depth)
    np.testing.assert_array_equal(a.allfocus, b.allfocus)
