"""Stage *report*, per job: the small images the report shows, written beside the outputs.

The report must stay light at hundreds of stacks (the 100 focus_stack stacks reference
19.9 MB of images in all, 1.1 MB of them the grid's depth and confidence thumbnails), so
it never shows the full outputs (a 1080 x 1080 all-in-focus PNG is 1.4 MB). Each job
writes instead, into ``view/``:

==========================  =================================================================
``thumb.webp``              the all-in-focus image reduced by a whole factor to a longest
                            side of at most :data:`THUMB_SIDE` px
``thumb_depth.jpg``,        depth reduced by the same factor (the same size) and confidence
``thumb_confidence.jpg``    at half that size, coloured as ``depth.jpg`` and
                            ``confidence.jpg``: the grid's toggle shows them in place of
                            ``thumb.webp`` (the browser scales them to the card)
``allfocus.webp``           the all-in-focus image at full size (lossy, quality 55)
``depth.jpg``               depth at full size, viridis over frame 0 .. N-1 (as the plots)
``confidence.jpg``          confidence, grey 0..1, at half size (the confidence of a pixel
                            comes from a window of ``window`` px, so half size loses little;
                            ``confidence.png`` keeps every pixel)
``truth.jpg``, ``error.jpg``    with ground truth: its depth (same colours) and the error
                            (estimate - truth): red above, blue below, white at 0, full
                            colour from 2 frames
==========================  =================================================================

All are 8-bit; 16-bit images are scaled to it. WebP (Pillow, ``method=0``) where it
halves the bytes of a photograph, JPEG (libjpeg-turbo, 5x faster) for the maps. The set
costs about 20 ms for a 1080 x 1080 stack, less than the two TIFFs and the 16-bit depth
PNG that the default set no longer writes (benchmarks/bench_write.py). The two map
thumbnails add 2-3 ms to a 1080 x 1080 stack (median 27.9 -> 30.6 ms for the whole set
on 2 busy cores; their reductions and encodes alone take 1 ms) and about 20 kB: they
reduce the 8-bit images the full-size views are made of (a box filter on the viridis
index, then the palette; the confidence bytes), never the float maps.
"""
from __future__ import annotations

import io
import os

import numpy as np

__all__ = ["THUMB_SIDE", "MESH_SIDE", "write_views", "write_mesh_view", "viridis_rgb", "confidence_u8", "depth_u8", "block_means"]

THUMB_SIDE = 320
MESH_SIDE = 192
_VIRIDIS = None


def _viridis() -> np.ndarray:
    """matplotlib's viridis as a (256, 3) uint8 table, built once."""
    global _VIRIDIS
    if _VIRIDIS is None:
        from matplotlib import colormaps
        _VIRIDIS = np.round(colormaps["viridis"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    return _VIRIDIS


def viridis_rgb(v: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) of ``v`` in [0, 1] (clipped; NaN as 0) through matplotlib's viridis."""
    idx = np.nan_to_num(np.clip(v, 0, 1) * 255 + 0.5, nan=0.0).astype(np.uint8)
    return _viridis()[idx]


def block_means(a, s):
    """Means of ``s x s`` blocks (partial blocks at the right and bottom edges), float64."""
    a = np.asarray(a, np.float32)
    H, W = a.shape
    ry, rx = np.arange(0, H, s), np.arange(0, W, s)
    sums = np.add.reduceat(np.add.reduceat(a, ry, axis=0, dtype=np.float64), rx, axis=1)
    ny, nx = np.minimum(ry + s, H) - ry, np.minimum(rx + s, W) - rx
    return sums / np.outer(ny, nx)


def _rgb8(img: np.ndarray) -> np.ndarray:
    """8-bit grey or RGB of an all-in-focus image (16-bit and float scaled; other channel counts: their mean)."""
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[2] not in (1, 3):
        a = a[..., :3] if a.shape[2] == 4 else a.mean(axis=2)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.uint16:
        return (a >> 8).astype(np.uint8)
    a = a.astype(np.float32)
    hi = float(np.nanmax(a)) if a.size else 0.0
    return np.clip(a / (hi if hi > 0 else 1.0) * 255 + 0.5, 0, 255).astype(np.uint8)


def _encode(arr, fmt, **kw) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, fmt, **kw)
    return buf.getvalue()


def _webp(arr, quality=65, icc=None) -> bytes:
    return _encode(arr, "WEBP", quality=quality, method=0, **({"icc_profile": icc} if icc else {}))


def error_rgb(err: np.ndarray, limit: float = 2.0) -> np.ndarray:
    """uint8 RGB of a signed depth error: red for +, blue for -, white at 0, full colour at ``limit``."""
    t = np.clip(np.nan_to_num(err, nan=0.0) / limit, -1, 1)
    out = np.empty(err.shape + (3,), np.uint8)
    pos, neg = np.clip(t, 0, 1), np.clip(-t, 0, 1)
    out[..., 0] = np.round(255 * (1 - neg * 0.85))
    out[..., 1] = np.round(255 * (1 - np.maximum(pos, neg) * 0.85))
    out[..., 2] = np.round(255 * (1 - pos * 0.85))
    return out


def confidence_u8(confidence) -> np.ndarray:
    """Confidence in [0, 1] as uint8 0..255, rounded half up (what ``confidence.png`` holds)."""
    c8 = np.empty(np.shape(confidence), np.uint8)
    np.clip(np.asarray(confidence, np.float32) * np.float32(255) + np.float32(0.5), 0, 255, out=c8, casting="unsafe")
    return c8


def depth_u8(depth, n_frames, near="first") -> np.ndarray:
    """The depth image of photo tools: uint8 grey, near = white (255), far = black (0).

    ``depth`` in frames (0 .. ``n_frames`` - 1); ``near``: which end of the stack was
    focused nearest the camera (``first``: frame 0 is white). Pixels without focus
    evidence (confidence below 0.5) hold what the refine mode filled in (``wls``: a
    smooth fill from the confident surroundings), like every other pixel."""
    t = np.asarray(depth, np.float32) * np.float32(1.0 / max(n_frames - 1, 1))
    if near == "first":
        t = np.float32(1.0) - t
    out = np.empty(np.shape(depth), np.uint8)
    np.clip(t * np.float32(255) + np.float32(0.5), 0, 255, out=out, casting="unsafe")
    return out


def _depth_index(depth, top) -> np.ndarray:
    """Depth / top as the uint8 index 0..255 into the viridis table."""
    idx = np.empty(np.shape(depth), np.uint8)
    np.clip(np.asarray(depth, np.float32) * np.float32(255.0 / top) + np.float32(0.5), 0, 255, out=idx, casting="unsafe")
    return idx


def _palette_rgb(idx):
    """viridis RGB of a uint8 index array through a palette image (C speed; a NumPy gather is 4x slower)."""
    from PIL import Image
    im = Image.fromarray(idx)
    im.putpalette(_viridis().tobytes())
    return np.asarray(im.convert("RGB"))


def _depth_rgb(depth, top):
    """viridis RGB of depth / top."""
    return _palette_rgb(_depth_index(depth, top))


def write_views(out_dir, allfocus, depth, confidence, n_frames, truth=None, icc=None) -> dict:
    """Write the report's images of one job into ``out_dir/view``; return ``{relative name: sha256}``.

    ``depth``, ``truth`` in frames (0 .. ``n_frames`` - 1), ``confidence`` in [0, 1];
    ``icc``: the frames' ICC profile, embedded in the all-in-focus views so that the
    browser shows a Display P3 or Adobe RGB photo in its own colours (the maps are
    synthetic colours: none).
    """
    from PIL import Image
    from ..stages.write import atomic_bytes
    top = max(n_frames - 1, 1)
    rgb = _rgb8(allfocus)
    im = Image.fromarray(rgb)
    f = -(-max(im.size) // THUMB_SIDE)  # a box filter by a whole factor: 3x cheaper than resampling
    small = (lambda i: i.reduce(f)) if f > 1 else (lambda i: i)
    idx = _depth_index(depth, top)
    c8 = Image.fromarray(confidence_u8(confidence))
    cim = c8.reduce(2) if min(c8.size) >= 2 else c8
    files = {
        "thumb.webp": _webp(np.asarray(small(im)), 65, icc),
        # the grid's other thumbnails: the same factor, so the same size as thumb.webp;
        # the depth index is averaged, then coloured (a depth edge is an in-between depth)
        "thumb_depth.jpg": _encode(_palette_rgb(np.asarray(small(Image.fromarray(idx)))), "JPEG", quality=65),
        # confidence at half that size, as the viewer's: a glance at where it is low (its
        # pixel noise costs 15 kB a stack at full thumbnail size, 5 kB at half)
        "thumb_confidence.jpg": _encode(np.asarray(cim.reduce(f) if f > 1 else cim), "JPEG", quality=50),
        "allfocus.webp": _webp(rgb, 55, icc),
        "depth.jpg": _encode(_palette_rgb(idx), "JPEG", quality=65),
        "confidence.jpg": _encode(np.asarray(cim), "JPEG", quality=50),
    }
    if truth is not None and np.shape(truth) == np.shape(depth):
        files["truth.jpg"] = _encode(_depth_rgb(truth, top), "JPEG", quality=70)
        files["error.jpg"] = _encode(error_rgb(np.asarray(depth, np.float32) - truth), "JPEG", quality=70)
    return {f"view/{name}": atomic_bytes(os.path.join(out_dir, "view", name), data) for name, data in files.items()}


def write_mesh_view(out_dir, depth, allfocus, n_frames, side=MESH_SIDE) -> dict:
    """``view/mesh.js``: the depth surface for the report's 3-D view (with ``outputs.mesh``).

    A grid of at most ``side`` points a side (block means of depth, 16-bit over frame
    0 .. N-1; block means of the all-in-focus colours), base64 in a script that calls
    ``DFF_MESH(job data)``: a classic script loads from file://, where the page could
    not fetch a PLY file nor read pixels of an image.
    """
    import base64
    import json
    from ..stages.write import atomic_bytes
    H, W = np.shape(depth)
    s = max(1, -(-max(H, W) // side))
    top = max(n_frames - 1, 1)
    z = np.clip(np.round(block_means(depth, s) / top * 65535), 0, 65535).astype("<u2")
    rgb = _rgb8(allfocus)
    chans = [rgb] if rgb.ndim == 2 else [rgb[..., i] for i in range(3)]
    col = np.stack([np.clip(np.round(block_means(c, s)), 0, 255).astype(np.uint8) for c in chans], axis=-1)
    if col.shape[-1] == 1:
        col = np.repeat(col, 3, axis=-1)
    data = {"w": int(z.shape[1]), "h": int(z.shape[0]), "W": int(W), "H": int(H), "frames": int(n_frames),
            "z": base64.b64encode(z.tobytes()).decode(), "rgb": base64.b64encode(col.tobytes()).decode()}
    text = "DFF_MESH(" + json.dumps(data) + ");\n"
    return {"view/mesh.js": atomic_bytes(os.path.join(out_dir, "view", "mesh.js"), text.encode())}
