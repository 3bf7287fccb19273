"""Output encoders: the PNG writer against Pillow/OpenCV decoders, blitted plots against full draws."""
import io

import numpy as np
import pytest
from PIL import Image

from dffbatch import plots
from dffbatch.stages.write import png_bytes


@pytest.mark.parametrize("deflate", ["isal", "zlib"])
@pytest.mark.parametrize("shape,dtype", [((5, 7), np.uint8), ((5, 7, 3), np.uint8), ((5, 7, 4), np.uint8),
                                         ((6, 3), np.uint16), ((1, 1), np.uint8), ((1, 9), np.uint16),
                                         ((64, 33, 3), np.uint8)])
def test_png_round_trips_through_pillow(shape, dtype, deflate, monkeypatch):
    """Both deflaters (ISA-L, and zlib where python-isal is missing) make PNGs Pillow decodes exactly."""
    from dffbatch import write
    if deflate == "zlib":
        monkeypatch.setattr(write, "_deflate", None)
    else:
        assert write._deflate is not None, "python-isal is a dependency: it should be installed"
    rng = np.random.default_rng(sum(shape))
    a = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
    back = np.asarray(Image.open(io.BytesIO(png_bytes(a))))
    np.testing.assert_array_equal(back, a)


@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_colour_png_round_trips_through_opencv(channels):
    cv2 = pytest.importorskip("cv2", reason="Pillow reads 16-bit colour PNGs as 8-bit; OpenCV reads them whole")
    a = np.random.default_rng(channels).integers(0, 65535, (9, 11, channels), dtype=np.uint16, endpoint=True)
    back = cv2.imdecode(np.frombuffer(png_bytes(a), np.uint8), cv2.IMREAD_UNCHANGED)
    back = back[:, :, [2, 1, 0, 3][:channels]]  # OpenCV gives BGR(A)
    np.testing.assert_array_equal(back, a)


def test_png_refuses_what_it_cannot_hold():
    with pytest.raises(TypeError, match="uint8 or uint16"):
        png_bytes(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="shape"):
        png_bytes(np.zeros((4, 4, 2), np.uint8))


def _full_draw(fig):
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy()


@pytest.mark.parametrize("kind", ["2d", "3d"])
def test_blitted_plot_equals_a_full_draw(kind):
    """The cached background + redrawn data must be the picture a full redraw gives."""
    rng = np.random.default_rng(3)
    first = rng.random((60, 80)).astype(np.float32) * 9
    second = np.cumsum(rng.random((60, 80)), axis=1).astype(np.float32) / 10
    if kind == "2d":
        plots.depth_2d_png(first, "first")
        got = np.asarray(Image.open(io.BytesIO(plots.depth_2d_png(second, "second title"))))
    else:
        plots.depth_3d_png(first, 16, "first", zrange=(0, 9))
        got = np.asarray(Image.open(io.BytesIO(plots.depth_3d_png(second, 16, "second title", zrange=(0, 9)))))
    fig = next(v[0] for k, v in plots._FIGS.items() if k[0] == kind and k[2:4] == (60, 80))
    want = _full_draw(fig)
    np.testing.assert_array_equal(got, want)
    assert (got != 255).any(axis=2).sum() > 0.2 * got.shape[0] * got.shape[1]  # not blank


def test_depth_plot_follows_the_aspect_and_greys_what_is_unknown():
    """1280 x 720 is drawn wide, not squashed into a square; depth without focus evidence
    (p < 0.5) is one neutral grey, never a colour off the bar, with a legend entry; the
    colour bar says which end is frame 0 and which end is near."""
    depth = np.tile(np.linspace(0, 9, 128, dtype=np.float32), (72, 1))
    wide = np.asarray(Image.open(io.BytesIO(plots.depth_2d_png(depth, "wide"))))
    tall = np.asarray(Image.open(io.BytesIO(plots.depth_2d_png(np.ascontiguousarray(depth.T), "tall"))))
    assert wide.shape[1] > 1.3 * wide.shape[0] and tall.shape[0] > 1.3 * tall.shape[1] - 1
    conf = np.ones_like(depth)
    sure = np.asarray(Image.open(io.BytesIO(plots.depth_2d_png(depth, "c", confidence=conf, near_low=True))))[:, :, :3]
    conf[:, :64] = 0.2  # the left half: no evidence
    unsure = np.asarray(Image.open(io.BytesIO(plots.depth_2d_png(depth, "c", confidence=conf, near_low=True))))[:, :, :3]
    changed = np.any(sure != unsure, axis=2)
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 0.15 * changed.size  # the left half of the image area
    assert xs.max() < sure.shape[1] * 0.6  # only on the left
    grey = np.all(unsure == plots.UNKNOWN_GREY, axis=2)
    assert grey[changed].mean() > 0.97  # one grey, not the colours dimmed
    image = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.min() + 2 * (xs.max() - xs.min())))
    assert not np.all(sure == plots.UNKNOWN_GREY, axis=2)[image].any()  # the grey is no colour of the map
    below = grey[int(0.9 * grey.shape[0]):]  # the legend's swatch, under the axes
    assert below.sum() > 20
    fig = next(v[0] for k, v in plots._FIGS.items() if k[0] == "2d" and k[2:4] == (72, 128) and k[5:] == (True, True))
    assert any("0 = first file" in a.get_ylabel() for a in fig.axes)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["no focus evidence (p < 0.5)"]
    bar = next(a for a in fig.axes if "0 = first file" in a.get_ylabel())
    words = {t.get_text(): t.get_position()[1] for t in bar.texts}
    assert words["near"] < 0 < 1 < words["far"]  # frame 0 (the low end) is near


def test_3d_plot_uses_block_means_and_pales_low_confidence():
    import io
    from PIL import Image
    from dffbatch import plots
    a = np.arange(7 * 10, dtype=np.float64).reshape(7, 10)
    ref = np.array([[a[y:y + 3, x:x + 3].mean() for x in range(0, 10, 3)] for y in range(0, 7, 3)])
    np.testing.assert_allclose(plots.block_means(a, 3), ref)  # partial blocks: the mean of what they hold
    rng = np.random.default_rng(0)
    d = rng.random((60, 90)) * 9

    def img(conf):
        return np.asarray(Image.open(io.BytesIO(plots.depth_3d_png(d, 16, "t", zrange=(0, 9), confidence=conf))))
    plain, sure, unsure = img(None), img(np.ones_like(d)), img(np.zeros_like(d))
    assert (plain == sure).all()  # confident everywhere: nothing dimmed
    assert (plain != unsure).any(axis=2).mean() > 0.05  # filled everywhere: the surface is pale
    grey = unsure[..., :3].astype(int)
    changed = (plain != unsure).any(axis=2)
    assert np.abs(grey[changed] - grey[changed].mean(axis=1, keepdims=True)).mean() < \
        np.abs(plain[..., :3].astype(int)[changed] - plain[..., :3].astype(int)[changed].mean(axis=1, keepdims=True)).mean()


def test_2d_plot_labels_the_bar_by_its_unit():
    from dffbatch import plots
    d = np.random.default_rng(1).random((40, 50)) * 5
    plots.depth_2d_png(d, "t")
    plots.depth_2d_png(d * 2.5 + 10, "t", unit="µm")
    bars = {k[1]: v[2][2] for k, v in plots._FIGS.items() if k[0] == "2d" and k[2:4] == (40, 50)}
    assert bars["frame"].get_ylabel() == "depth (frame; 0 = first file)"
    assert bars["µm"].get_ylabel() == "depth: focus position (µm)"
    # the bar's axis spans each map's own range (its colours run from its lowest depth to its highest)
    np.testing.assert_allclose(bars["µm"].get_ylim(), (d.min() * 2.5 + 10, d.max() * 2.5 + 10), rtol=1e-12)
    np.testing.assert_allclose(bars["frame"].get_ylim(), (d.min(), d.max()), rtol=1e-12)


def test_the_8bit_depth_image_is_grey_with_near_white():
    """The photo tools' convention: 8-bit grey, near = white; which end is near is
    ``outputs.depth_near`` (the first frame by default)."""
    from dffbatch.report.views import depth_u8
    d = np.array([[0.0, 4.5, 9.0, 2.25]], np.float32)
    assert depth_u8(d, 10).tolist() == [[255, 128, 0, 191]]
    assert depth_u8(d, 10, near="last").tolist() == [[0, 128, 255, 64]]
    assert depth_u8(d, 10).dtype == np.uint8
