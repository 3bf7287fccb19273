"""Stage *read*: decode frames from files, one at a time, ahead of the kernels."""
from __future__ import annotations

import hashlib
import io
import math
import os
import queue
import threading
from typing import Iterable, Iterator, Optional

import numpy as np

__all__ = ["prefetch", "read_frame", "iter_frames", "FrameError", "MAX_PIXELS", "orient", "exif_orientation",
           "file_metadata"]

_END = object()


class _Failure:
    def __init__(self, exc):
        self.exc = exc


def prefetch(items: Iterable, ahead: int = 1) -> Iterator:
    """Iterate ``items`` in a background thread, keeping up to ``ahead`` items ready.

    Decoding (which releases the GIL in the image libraries) then overlaps the Numba
    kernels (which release it too). Exceptions raised while producing an item are
    re-raised in the consumer at that item's place in the sequence. Abandoning the
    iterator stops the thread at its next item.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, ahead))
    stop = threading.Event()

    def work():
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put(_Failure(exc))

    thread = threading.Thread(target=work, name="dffbatch-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()


# ------------------------------------------------------------------ frames from files

class FrameError(Exception):
    """A frame that cannot be used; the message names the file and the problem, and
    ``path`` is the file where one file is to blame (``on_bad_frame: skip`` drops it)."""

    def __init__(self, message, path=None):
        super().__init__(message)
        self.path = path


#: Pixel limit per frame, a guard against decompression bombs (overridable).
MAX_PIXELS = 200_000_000

#: Camera RAW files, read through rawpy (LibRaw) when the ``raw`` extra is installed.
RAW_EXTS = (".dng", ".cr2", ".cr3", ".nef", ".nrw", ".arw", ".orf", ".raf", ".rw2", ".pef", ".srw")


def _rawpy(path):
    try:
        import rawpy
    except ImportError:
        raise FrameError(f"{path}: RAW frames need the rawpy package (LibRaw): "
                         'pip install "dffbatch[raw]"', path=path) from None
    return rawpy


def raw_white_balance(path) -> Optional[list]:
    """The camera's white balance multipliers (R, G, B, G2) written in a RAW file, which
    :func:`iter_frames` applies to every frame of its stack; None where unreadable."""
    rawpy = _rawpy(path)
    try:
        with rawpy.imread(str(path)) as raw:
            wb = [float(v) for v in raw.camera_whitebalance]
    except Exception:  # noqa: BLE001 - the frame's own read reports what is wrong
        return None
    return wb if any(v > 0 for v in wb[:3]) else None


def _decode_raw(data, path, limit, wb):
    """A RAW frame demosaiced by LibRaw to linear 16-bit RGB (H, W, 3): gamma 1, no auto
    brightness, and the white balance ``wb`` (the stack's: its first frame's camera
    multipliers, so that every frame gets the same colours), else the file's own. LibRaw
    turns it upright by the camera's orientation."""
    rawpy = _rawpy(path)
    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            w, h = raw.sizes.width, raw.sizes.height
            if w * h > limit:
                raise FrameError(f"{path}: {w}x{h} pixels exceeds the limit of {limit} (execution.max_pixels)")
            kw = {"user_wb": list(wb)} if wb else {"use_camera_wb": True}
            return raw.postprocess(gamma=(1, 1), no_auto_bright=True, output_bps=16, **kw)
    except FrameError:
        raise
    except Exception as exc:  # noqa: BLE001 - LibRaw's errors become one clear line
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FrameError(f"{path}: cannot decode RAW frame ({msg})") from None


def _normalise(arr, name, notes):
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
        if notes is not None and "alpha" not in " ".join(notes):
            notes.append("alpha channel dropped")
    if arr.ndim == 3 and arr.shape[2] == 2:  # grey + alpha
        arr = arr[:, :, 0]
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float32)
        else:
            raise FrameError(f"{name}: unsupported pixel type {arr.dtype}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise FrameError(f"{name}: contains NaN or infinite pixels")
    if arr.ndim not in (2, 3):
        raise FrameError(f"{name}: not a 2-D image (shape {arr.shape})")
    return np.ascontiguousarray(arr)


def image_size(path, data=None):
    """(width, height, pages) from an image file's header, without decoding pixels."""
    if str(path).lower().endswith(RAW_EXTS):
        with _rawpy(path).imread(io.BytesIO(data) if data is not None else str(path)) as raw:
            return int(raw.sizes.width), int(raw.sizes.height), 1
    if str(path).lower().endswith((".tif", ".tiff")):
        import tifffile
        with tifffile.TiffFile(io.BytesIO(data) if data is not None else path) as tif:
            page = tif.pages[0]
            return int(page.imagewidth), int(page.imagelength), len(tif.pages)
    from PIL import Image
    with Image.open(io.BytesIO(data) if data is not None else path) as im:
        return im.size[0], im.size[1], 1


def _simplejpeg():
    """The simplejpeg module (libjpeg-turbo through a thin binding), or None where it is missing."""
    global _SJ
    if _SJ is False:
        try:
            import simplejpeg as _SJ
        except ImportError:  # pragma: no cover - Pillow decodes JPEGs then, as before
            _SJ = None
    return _SJ


_SJ = False


def _decode_jpeg(data, path, limit):
    """A JPEG's pixels by simplejpeg: the same libjpeg-turbo decode as Pillow's (the same
    values, tested), without Pillow's image objects: 1.9 against 2.5 ms a 1080 x 1080
    colour frame. Grey JPEGs come as (H, W), colour ones as (H, W, 3). None for what it
    does not decode to RGB or grey (CMYK): Pillow takes those."""
    sj = _simplejpeg()
    try:
        h, w, space, _ = sj.decode_jpeg_header(data)
    except ValueError as exc:
        raise FrameError(f"{path}: not a readable image ({str(exc).splitlines()[0] if str(exc) else 'bad header'})") \
            from None
    if w * h > limit:
        raise FrameError(f"{path}: {w}x{h} pixels exceeds the limit of {limit} (execution.max_pixels)")
    if space not in ("Gray", "YCbCr", "RGB"):
        return None
    try:  # strict: a truncated or corrupt file is an error, not a grey band
        arr = sj.decode_jpeg(data, colorspace="GRAY" if space == "Gray" else "RGB", strict=True)
    except ValueError as exc:
        raise FrameError(f"{path}: cannot decode image ({str(exc).splitlines()[0] if str(exc) else 'corrupt'})") \
            from None
    return arr[:, :, 0] if space == "Gray" else arr


#: EXIF orientation (1-8) -> the array operation that makes the image upright, as
#: Pillow's ``ImageOps.exif_transpose`` does (tested for every value).
_UPRIGHT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


def orient(arr: np.ndarray, orientation) -> np.ndarray:
    """``arr`` (H, W[, C]) made upright by its EXIF ``orientation`` (1-8; None or 1: as is)."""
    op = _UPRIGHT.get(orientation or 1)
    return np.ascontiguousarray(op(arr)) if op is not None else arr


def exif_orientation(data: bytes, tiff: bool = False) -> int:
    """The EXIF orientation (1-8) of an encoded image, 1 where it has none. JPEG, PNG and
    WebP are read by Pillow (their EXIF), TIFF by tifffile (tag 274); an image without
    the bytes ``Exif`` near its start (most frames) costs a byte search only."""
    try:
        if tiff:
            import tifffile
            with tifffile.TiffFile(io.BytesIO(data)) as t:
                tag = t.pages[0].tags.get(274)
                o = int(tag.value) if tag is not None else 1
        else:
            if data.find(b"Exif", 0, 1 << 16) < 0 and data.find(b"eXIf", 0, 1 << 20) < 0:
                return 1
            from PIL import Image
            with Image.open(io.BytesIO(data)) as im:
                o = int(im.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a broken tag is no orientation: the pixels decide
        return 1
    return o if 1 <= o <= 8 else 1


def file_metadata(path) -> dict:
    """What the all-in-focus outputs carry over from a frame file: ``icc`` (the ICC
    profile's bytes) and ``exif`` (the EXIF block, its orientation set to 1 as the pixels
    are upright; without the ``Exif`` header), each None where absent; ``tags``: TIFF
    baseline tags taken from it (Make, Model, DateTime, Artist, Copyright) as
    ``(code, value)``. Read by Pillow (JPEG, PNG, WebP) or tifffile (TIFF)."""
    out = {"icc": None, "exif": None, "tags": []}
    try:
        if str(path).lower().endswith((".tif", ".tiff")):
            import tifffile
            with tifffile.TiffFile(path) as t:
                tags = t.pages[0].tags
                icc = tags.get(34675)
                out["icc"] = bytes(icc.value) if icc is not None else None
                out["tags"] = [(c, str(tags[c].value)) for c in (271, 272, 306, 315, 33432)
                               if c in tags and isinstance(tags[c].value, str)]
            return out
        from PIL import Image
        with Image.open(path) as im:
            out["icc"] = im.info.get("icc_profile") or None
            ex = im.getexif()
            if len(ex):
                if 0x0112 in ex:
                    ex[0x0112] = 1
                raw = ex.tobytes()
                out["exif"] = raw[6:] if raw.startswith(b"Exif\x00\x00") else raw
                out["tags"] = [(c, str(ex[c]).strip("\x00 ")) for c in (271, 272, 306, 315, 33432)
                               if isinstance(ex.get(c), str) and ex[c].strip("\x00 ")]
    except Exception:  # noqa: BLE001 - metadata is carried where it can be read, never a failure
        return {"icc": None, "exif": None, "tags": []}
    return out


def read_frame(path, hashes=None, notes=None, max_pixels=None, raw_wb=None) -> np.ndarray:
    """Decode one image file into an array (see :func:`_read_frame`); a :class:`FrameError`
    carries the file's ``path``. ``raw_wb``: the white balance of a RAW frame's stack."""
    try:
        return _read_frame(path, hashes, notes, max_pixels, raw_wb)
    except FrameError as exc:
        if exc.path is None:
            exc.path = path
        raise


def _read_frame(path, hashes=None, notes=None, max_pixels=None, raw_wb=None) -> np.ndarray:
    """Decode one image file (PNG, JPEG, TIFF, BMP; camera RAW with rawpy) into an array.

    The bytes are read once; their SHA-256 goes into ``hashes[path]`` when a dict is
    given. Alpha is dropped (noted in ``notes``). The EXIF orientation is applied
    (:func:`orient`): a portrait shot comes out upright, as every viewer shows it; the
    frames of a stack share their camera's orientation, so they stay registered (a frame
    turned otherwise fails as a frame of another size). Before decoding, the header's size is checked against
    ``max_pixels`` (default :data:`MAX_PIXELS`), a guard against decompression bombs.
    Raises :class:`FrameError` naming the file for anything unusable: missing, empty,
    corrupt, truncated, not an image, too large, NaN/inf pixels.
    """
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    name = os.path.basename(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise FrameError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if hashes is not None:
        hashes[path] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if not data:
        raise FrameError(f"{path}: empty file (0 bytes)")
    if name.lower().endswith(RAW_EXTS):
        return _normalise(_decode_raw(data, path, limit, raw_wb), path, notes)
    tiff = name.lower().endswith((".tif", ".tiff"))
    if data[:3] == b"\xff\xd8\xff" and _simplejpeg() is not None:
        arr = _decode_jpeg(data, path, limit)
        if arr is not None:
            return _normalise(orient(arr, exif_orientation(data)), path, notes)
    im = None
    try:
        if tiff:
            w, h, _ = image_size(name, data)
        else:
            from PIL import Image
            Image.MAX_IMAGE_PIXELS = None  # the size is checked below, with the configured limit
            im = Image.open(io.BytesIO(data))  # the header only: pixels are decoded below
            w, h = im.size
    except Exception as exc:  # noqa: BLE001 - not an image we can read
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FrameError(f"{path}: not a readable image ({msg})") from None
    if w * h > limit:
        raise FrameError(f"{path}: {w}x{h} pixels exceeds the limit of {limit} (execution.max_pixels)")
    try:
        if tiff:
            import tifffile
            arr = tifffile.imread(io.BytesIO(data), key=0)
        elif im.mode in ("L", "RGB", "RGBA", "I;16"):  # 8-bit, 16-bit grey: Pillow's array, as imageio returns it
            im.load()
            arr = np.asarray(im)
        else:  # palette, 16-bit, bilevel, ...: imageio's conversions
            import imageio.v3 as iio
            arr = iio.imread(data, extension=os.path.splitext(name)[1].lower())
    except Exception as exc:  # noqa: BLE001 - every decoder error becomes one clear line
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FrameError(f"{path}: cannot decode image ({msg})") from None
    finally:
        if im is not None:
            im.close()
    return _normalise(orient(np.asarray(arr), exif_orientation(data, tiff)), path, notes)


def iter_previews(files, side=320):
    """``(scale, (H, W), iterator)`` over the frames decoded at reduced size.

    JPEGs use the decoder's DCT scaling (1/2, 1/4 or 1/8: several times faster than a
    full decode), the reduction that brings the long side nearest to ``side`` pixels
    (alignment estimates on images of about that size), and come as greyscale (the
    decoder's luminance: 35% faster than colour, and registration needs no colour).
    Other formats are decoded fully and returned as they are, at full size (scale 1).
    """
    from PIL import Image
    first = files[0]
    try:
        w, h, _ = image_size(first)
    except Exception as exc:  # noqa: BLE001 - named here, with the file to blame
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FrameError(f"{first}: not a readable image ({msg})", path=first) from None
    jpeg = all(f.lower().endswith((".jpg", ".jpeg")) for f in files)
    # the DCT reduction whose long side is nearest to ``side`` (by ratio): 1280 -> 320, 1080 -> 270
    reduce = min((1, 2, 4, 8), key=lambda r: abs(math.log(max(w, h) / r / side)))
    if not jpeg or reduce <= 1:
        return 1.0, None, (read_frame(f) for f in files)  # full frames, upright: their own shape

    def gen():
        for f in files:
            try:
                with Image.open(f) as im:  # luminance only: registration needs no colour
                    o = int(im.getexif().get(0x0112, 1)) if "exif" in im.info else 1
                    im.draft("L", (im.size[0] // reduce, im.size[1] // reduce))
                    yield orient(np.asarray(im.convert("L")), o if 1 <= o <= 8 else 1)
            except Exception as exc:  # noqa: BLE001
                msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise FrameError(f"{f}: cannot decode image ({msg})", path=f) from None

    with Image.open(first) as im:
        turned = "exif" in im.info and int(im.getexif().get(0x0112, 1)) in (5, 6, 7, 8)
        im.draft("L", (w // reduce, h // reduce))
        pw = im.size[0]
    return pw / w, ((w, h) if turned else (h, w)), gen()  # the upright frame's shape


def iter_frames(files, multipage=False, hashes=None, notes=None, max_pixels=None, threads=1):
    """Yield the frames of a stack one at a time (one file each, or the pages of one TIFF).

    With ``threads`` > 1 the next files are decoded by that many threads (PNG, JPEG and
    TIFF decoders release the GIL), at most ``threads + 1`` frames ahead, and yielded in
    file order: the same frames, sooner, when one deep stack has the machine to itself.
    RAW frames all get the white balance of the first (:func:`raw_white_balance`).
    """
    if multipage:
        import tifffile
        path = files[0]
        try:
            if hashes is not None:  # streamed: the file may be larger than memory
                from .write import sha256_file
                hashes[path] = {"bytes": os.path.getsize(path), "sha256": sha256_file(path)}
            with tifffile.TiffFile(path) as tif:  # pages are read one at a time
                limit = MAX_PIXELS if max_pixels is None else max_pixels
                for i, page in enumerate(tif.pages):
                    if page.imagewidth * page.imagelength > limit:
                        raise FrameError(f"{path}: page {i}: {page.imagewidth}x{page.imagelength} pixels "
                                         f"exceeds the limit of {limit} (execution.max_pixels)")
                    try:
                        arr = page.asarray()
                    except Exception as exc:  # noqa: BLE001
                        raise FrameError(f"{path}: page {i}: cannot decode ({exc})") from None
                    yield _normalise(arr, f"{path} page {i}", notes)
        except FrameError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise FrameError(f"{path}: cannot read TIFF ({exc})") from None
        return
    wb = raw_white_balance(files[0]) if files and files[0].lower().endswith(RAW_EXTS) else None
    if threads <= 1 or len(files) < 3:
        for f in files:
            yield read_frame(f, hashes, notes, max_pixels, wb)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dffbatch-decode") as pool:
        pending = deque()
        todo = iter(files)
        try:
            for f in todo:
                pending.append(pool.submit(read_frame, f, hashes, notes, max_pixels, wb))
                if len(pending) > threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()
