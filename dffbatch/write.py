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
import tempfile

import numpy as np

__all__ = ["atomic_bytes", "write_tiff", "write_png", "write_json", "write_text", "sha256_file"]


def atomic_bytes(path, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically; return its SHA-256."""
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix="-" + os.path.basename(path)[:40], dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return hashlib.sha256(data).hexdigest()


def write_tiff(path, array: np.ndarray) -> str:
    import tifffile
    buf = io.BytesIO()
    photometric = "rgb" if array.ndim == 3 and array.shape[2] in (3, 4) else "minisblack"
    tifffile.imwrite(buf, array, photometric=photometric, software="dffbatch")
    return atomic_bytes(path, buf.getvalue())


def write_png(path, array: np.ndarray) -> str:
    """PNG of uint8 (grey/RGB/RGBA) or uint16 grey; 16-bit colour goes to TIFF instead."""
    import imageio.v3 as iio
    data = iio.imwrite("<bytes>", array, extension=".png", compress_level=1)
    return atomic_bytes(path, data)


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
