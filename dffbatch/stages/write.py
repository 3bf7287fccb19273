"""Stage *write*: every output file is written atomically.

Data go to a temporary name in the same folder, then are renamed over the final
name (``os.replace`` is atomic on POSIX): a killed run never leaves a truncated file
under a final name, and a failed write (disk full, read-only folder) leaves the
previous file intact. Files are not fsync'ed one by one (that cost 0.5 s per job on
the benchmark disk): after a power loss the manifest's hashes tell which outputs to
redo, and resume redoes them.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import tempfile
import zlib

import numpy as np

__all__ = ["atomic_bytes", "atomic_chunks", "write_tiff", "write_png", "png_bytes", "write_json", "write_text",
           "sha256_file"]


def _file_mode() -> int:
    """``0o666`` less the process umask: what ``open()`` would give a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_MODE = _file_mode()

try:  # ISA-L's deflate (python-isal): the same zlib streams, 3.4x faster than zlib at level 1
    from isal import isal_zlib as _deflate
    _LEVEL = 1
except ImportError:  # pragma: no cover - a platform without its wheels: zlib, as before
    _deflate, _LEVEL = None, 1


def atomic_chunks(path, chunks) -> str:
    """Write the byte strings of ``chunks`` (any iterable) to ``path`` atomically; return the SHA-256.

    The data stream to disk: memory stays that of one chunk, whatever the file's size.
    """
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix="-" + os.path.basename(path)[:40], dir=folder)
    h = hashlib.sha256()
    try:
        os.fchmod(fd, _MODE)  # mkstemp makes 0600; outputs follow the umask like any file (0644 under 022)
        with os.fdopen(fd, "wb") as fh:
            for data in chunks:
                fh.write(data)
                h.update(data)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and not exc.filename:  # a full disk: say which file did not fit
            raise OSError(exc.errno, exc.strerror, path) from None
        raise
    return h.hexdigest()


def atomic_bytes(path, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically; return its SHA-256."""
    return atomic_chunks(path, (data,))


#: ``outputs.tiff_compression`` -> tifffile arguments. Both use the floating-point
#: predictor (imagecodecs). On a 1080 x 1080 float32 depth map: none 4.67 MB in 5 ms,
#: deflate 2.77 MB in 23 ms, zstd 2.72 MB in 10 ms (benchmarks/bench_write.py).
TIFF_COMPRESSION = {"none": {}, "deflate": {"compression": "zlib", "compressionargs": {"level": 1}, "predictor": 3},
                    "zstd": {"compression": "zstd", "compressionargs": {"level": 1}, "predictor": 3}}


def write_tiff(path, array: np.ndarray, calibration=None, compression="none", meta=None) -> str:
    """TIFF of a (H, W) or (H, W, C) array; RGB(A) as RGB, other channel counts as C planes.

    ``compression``: a key of :data:`TIFF_COMPRESSION` (``deflate`` and ``zstd`` need
    imagecodecs and float data, for their floating-point predictor).

    ``calibration`` ``(pixel_x, pixel_y, unit)``: written as ImageJ metadata (``unit``,
    resolution tags in pixels per unit) so that Fiji and napari open the file at scale;
    float64 data, which ImageJ cannot hold, get the resolution tags only.

    ``meta`` (:func:`dffbatch.stages.read.file_metadata` of a frame): its ICC profile
    (tag 34675) and its Make, Model, DateTime, Artist and Copyright tags are written.
    """
    import tifffile
    buf = io.BytesIO()
    multi = array.ndim == 3 and array.shape[2] not in (3, 4)
    data = np.ascontiguousarray(np.moveaxis(array, 2, 0)) if multi else array
    photometric = "minisblack" if multi or array.ndim == 2 else "rgb"
    kw = {}
    if calibration is not None:
        px, py, unit = calibration
        kw["resolution"] = (1.0 / px, 1.0 / py)
        if data.dtype in (np.uint8, np.uint16, np.float32) and (photometric == "minisblack" or data.dtype == np.uint8):
            kw["imagej"] = True
            kw["metadata"] = {"unit": "um" if unit == "µm" else unit, "axes": "CYX" if multi else
                              ("YXS" if photometric == "rgb" else "YX")}
    if not kw.get("imagej"):
        kw["software"] = "dffbatch"
    kw.update(TIFF_COMPRESSION[compression])
    if meta:
        if meta.get("icc"):
            kw["iccprofile"] = meta["icc"]
        if meta.get("tags"):
            kw["extratags"] = [(code, "s", 0, value, True) for code, value in meta["tags"]]
    tifffile.imwrite(buf, data, photometric=photometric, **kw)
    return atomic_bytes(path, buf.getvalue())


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _compress(data) -> bytes:
    """A zlib stream of ``data``: ISA-L level 1 where python-isal is installed (1080 x 1080
    RGB all-in-focus, "Up"-filtered: 6.6 ms, 1.24 MB), else zlib level 1 with its run-length
    strategy (22.4 ms, 1.24 MB)."""
    if _deflate is not None:
        return _deflate.compress(data, _LEVEL)
    z = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    return z.compress(data) + z.flush()


def png_bytes(array: np.ndarray, meta=None) -> bytes:
    """Encode a PNG: uint8 grey / RGB / RGBA or uint16 grey / RGB / RGBA, shape (H, W[, C]).

    Every row uses the PNG "Up" filter (difference with the row above, vectorised) and
    a fast deflate (:func:`_compress`). This is what the batch runner's outputs
    spend their time on: for a 1080 x 1080 all-in-focus image 9 ms with ISA-L (34 ms with
    zlib) against 97 ms for Pillow's encoder at its fastest level (which tries every filter
    on every row), at the same file size. Files are standard
    PNGs (read back by Pillow and imageio in the tests).

    ``meta`` (:func:`dffbatch.stages.read.file_metadata` of a frame): its ICC profile
    goes into an ``iCCP`` chunk, its EXIF into ``eXIf``, so that colour and camera data
    survive (Display P3 or Adobe RGB photos keep their colours).
    """
    a = np.ascontiguousarray(array)
    if a.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"PNG needs uint8 or uint16 data, got {a.dtype}")
    H, W = a.shape[:2]
    C = 1 if a.ndim == 2 else a.shape[2]
    if C not in (1, 3, 4) or H < 1 or W < 1:
        raise ValueError(f"PNG needs (H, W), (H, W, 3) or (H, W, 4) data, got shape {a.shape}")
    bits = 8 * a.dtype.itemsize
    rows = (a.astype(">u2") if bits == 16 else a).reshape(H, -1).view(np.uint8)
    filtered = np.empty((H, rows.shape[1] + 1), np.uint8)
    filtered[:, 0] = 2  # filter type "Up"
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # modulo 256, as the filter wants
    idat = _compress(filtered)
    header = struct.pack(">IIBBBBB", W, H, bits, {1: 0, 3: 2, 4: 6}[C], 0, 0, 0)
    extra = b""
    if meta and meta.get("icc"):
        extra += _chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(meta["icc"]))
    if meta and meta.get("exif"):
        extra += _chunk(b"eXIf", meta["exif"])
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + extra + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def write_png(path, array: np.ndarray, meta=None) -> str:
    """PNG of uint8 or uint16 data, grey, RGB or RGBA (see :func:`png_bytes`)."""
    return atomic_bytes(path, png_bytes(array, meta))


def write_json(path, obj) -> str:
    return atomic_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode())


def write_text(path, text: str) -> str:
    return atomic_bytes(path, text.encode("utf-8"))


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
