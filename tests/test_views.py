"""The report's per-job images (dffbatch.report.views) and the vendored 3-D library."""
import base64
import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

from dffbatch.report.views import (block_means, confidence_u8, error_rgb, viridis_rgb, write_mesh_view,
                                   write_views)

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "dffbatch" / "report" / "assets" / "vendor"


def test_views_hold_what_they_claim(tmp_path):
    rng = np.random.default_rng(0)
    H, W, n = 90, 130, 9
    af = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    depth = np.tile(np.linspace(0, n - 1, W, dtype=np.float32), (H, 1))
    conf = np.tile(np.linspace(0, 1, H, dtype=np.float32)[:, None], (1, W))
    out = write_views(tmp_path, af, depth, conf, n, truth=depth + 1.0)
    assert set(out) == {"view/thumb.webp", "view/thumb_depth.jpg", "view/thumb_confidence.jpg", "view/allfocus.webp",
                        "view/depth.jpg", "view/confidence.jpg", "view/truth.jpg", "view/error.jpg"}
    thumb = Image.open(tmp_path / "view/thumb.webp")
    assert max(thumb.size) <= 320 and thumb.size == (W, H)  # small images are not enlarged
    assert Image.open(tmp_path / "view/allfocus.webp").size == (W, H)
    dep = np.asarray(Image.open(tmp_path / "view/depth.jpg").convert("RGB")).astype(int)
    want = viridis_rgb(depth / (n - 1)).astype(int)
    assert np.abs(dep - want).mean() < 6  # viridis over frame 0 .. N-1 (JPEG-close)
    c = np.asarray(Image.open(tmp_path / "view/confidence.jpg")).astype(int)
    assert c.shape == (H // 2, W // 2)
    assert np.abs(c[:, 10] - np.round(conf[::2, 0][: H // 2] * 255)).max() < 8  # half size, 0..255 = 0..1
    err = np.asarray(Image.open(tmp_path / "view/error.jpg").convert("RGB")).astype(int)
    assert (err[..., 2] - err[..., 0]).mean() > 40  # estimate 1 frame below the truth: blue, not red
    np.testing.assert_array_equal(error_rgb(np.array([[0.0, 2.0, -2.0]])), [[[255, 255, 255], [255, 38, 38], [38, 38, 255]]])
    np.testing.assert_array_equal(confidence_u8(np.array([-1, 0, 0.5, 1, 2], np.float32)), [0, 0, 128, 255, 255])


def test_the_grid_thumbnails_of_depth_and_confidence(tmp_path):
    """thumb_depth.jpg: the size of thumb.webp, and thumb_confidence.jpg, half of it; 8-bit,
    coloured as the viewer's depth.jpg (viridis over frame 0 .. N-1) and confidence.jpg (grey 0..255)."""
    H, W, n = 700, 1000, 12  # reduced by ceil(1000 / 320) = 4: 175 x 250
    yy, xx = np.mgrid[0:H, 0:W]
    af = np.random.default_rng(2).integers(0, 256, (H, W, 3), dtype=np.uint8)
    depth = (xx / (W - 1) * (n - 1)).astype(np.float32)  # a ramp left to right ...
    depth[:, 400:600] = 2.0  # ... with a band of frame 2 across it (edges 4-aligned: no mixed blocks)
    conf = (yy / (H - 1)).astype(np.float32) ** 2  # top to bottom
    write_views(tmp_path, af, depth, conf, n)
    thumb, td, tc = (Image.open(tmp_path / "view" / f) for f in ("thumb.webp", "thumb_depth.jpg", "thumb_confidence.jpg"))
    assert thumb.size == td.size == (250, 175) and tc.size == (125, 88)
    assert (td.format, td.mode, tc.format, tc.mode) == ("JPEG", "RGB", "JPEG", "L")
    d, c = np.asarray(td), np.asarray(tc)
    assert d.dtype == c.dtype == np.uint8 and d.shape == (175, 250, 3) and c.shape == (88, 125)
    # the reference: depth.jpg's 8-bit viridis index, 4 x 4 block means, through the table
    idx = np.floor(np.clip(depth / (n - 1), 0, 1) * 255 + 0.5)
    ref = viridis_rgb(np.round(block_means(idx, 4)) / 255).astype(int)
    err = np.abs(d.astype(int) - ref)
    assert err.mean() < 2.5 and np.percentile(err, 95) < 6, (err.mean(), np.percentile(err, 95))  # JPEG-close
    assert np.abs(d[:, 100:150].astype(int) - viridis_rgb(np.full((1, 1), 2 / (n - 1)))).mean() < 3  # the band
    cref = np.round(block_means(confidence_u8(conf), 8))  # 8 x 8 blocks: half size, then the factor
    cerr = np.abs(c.astype(int) - cref)
    assert cerr.mean() < 1.5 and cerr.max() < 6, (cerr.mean(), cerr.max())
    assert c[0].mean() < 3 and c[-1].mean() > 250  # confidence 0 black at the top, 1 white at the bottom


def test_mesh_view_is_the_block_mean_surface(tmp_path):
    rng = np.random.default_rng(1)
    H, W, n = 50, 70, 6
    depth = (rng.random((H, W)) * (n - 1)).astype(np.float32)
    af = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    write_mesh_view(tmp_path, depth, af, n, side=16)
    text = (tmp_path / "view/mesh.js").read_text()
    assert text.startswith("DFF_MESH(") and text.rstrip().endswith(");")
    m = json.loads(text[len("DFF_MESH("):text.rindex(")")])
    s = 5  # ceil(70 / 16)
    assert (m["w"], m["h"], m["W"], m["H"], m["frames"]) == (14, 10, W, H, n)
    z = np.frombuffer(base64.b64decode(m["z"]), "<u2").reshape(10, 14) / 65535 * (n - 1)
    ref = np.array([[depth[y:y + s, x:x + s].mean() for x in range(0, W, s)] for y in range(0, H, s)])
    np.testing.assert_allclose(z, ref, atol=(n - 1) / 65535)
    rgb = np.frombuffer(base64.b64decode(m["rgb"]), np.uint8).reshape(10, 14, 3)
    assert abs(int(rgb[2, 3, 1]) - af[10:15, 15:20, 1].mean()) <= 0.5


def test_the_vendored_3d_library_is_the_pinned_registry_build():
    rec = json.loads((VENDOR / "vendor.json").read_text())
    bundle = (VENDOR / rec["bundle"]).read_bytes()
    assert hashlib.sha256(bundle).hexdigest() == rec["sha256"] and len(bundle) == rec["bytes"]
    pins = json.loads((ROOT / "tools/vendor/package.json").read_text())
    lock = json.loads((ROOT / "tools/vendor/package-lock.json").read_text())["packages"]
    for name, v in {**pins["dependencies"], **pins["devDependencies"]}.items():
        assert rec["packages"][name]["version"] == v == lock[f"node_modules/{name}"]["version"]
    assert all(p["license"] in ("MIT", "BSD-2-Clause", "BSD-3-Clause", "ISC", "Apache-2.0")
               for p in rec["packages"].values())
    assert "SPDX-License-Identifier: MIT" in bundle.decode() and (VENDOR / "three-LICENSE").is_file()
