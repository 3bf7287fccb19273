"""Stage *discover*, continued: split a folder of frames that holds several stacks.

Focus-bracketing cameras write every bracket of a session into one card folder
(``DSC_0001.JPG ... DSC_0044.JPG``: two scenes of 22 frames). A folder-layout stack is
cut where (``split`` of a ``datasets`` entry, :data:`dffbatch.batch.config.SPLIT_AUTO`):

``time``     the EXIF capture time (``DateTimeOriginal`` with its sub-seconds) jumps by
             more than ``time`` seconds (default 2) *and* more than twice the median
             interval between frames: a pause between two brackets, not a slow one;
``focus``    the EXIF focus distance (``SubjectDistance``, where the camera writes one)
             falls back against the sequence's direction by more than half its range:
             the lens returned to start a new bracket;
``content``  neighbouring frames stop looking alike: the correlation of their 16 x 16
             block means falls below ``content`` (default 0.8). Within the shared
             datasets' 105 real stacks neighbours correlate at 0.988 or more; the last
             and first frames of neighbouring focus_stack scenes at 0.58 or less. With ``split:
             auto`` this runs on JPEG frames only (``content_on: jpeg``), whose 1/8-size
             previews the decoder gives in about 1 ms; other formats would be decoded
             in full, so they are tested where a mapping sets ``content``.

EXIF is read by Pillow (the header only: about 0.2 ms a file). Prefix-layout stacks
(``17__refocus_03.jpg``) are named per stack and never split, nor are multi-page TIFFs.
"""
from __future__ import annotations

import datetime
import os
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Tuple

import numpy as np

__all__ = ["split_sequence", "exif_facts", "similarity", "preview_blocks"]

#: Side of the grid of block means that content similarity compares.
GRID = 16
_JPEG = (".jpg", ".jpeg")
_EXIF_IFD, _DATETIME_ORIGINAL, _SUBSEC_ORIGINAL, _SUBJECT_DISTANCE, _DATETIME = 0x8769, 0x9003, 0x9291, 0x9206, 0x0132


def exif_facts(path) -> Tuple[Optional[float], Optional[float]]:
    """``(capture time in seconds since the epoch, focus distance in metres)`` from a
    file's EXIF, each None where the file has none (or is not an image Pillow opens).
    Camera RAW files: the capture time LibRaw reads (whole seconds), where rawpy is
    installed; no focus distance."""
    from ..stages.read import RAW_EXTS
    if str(path).lower().endswith(RAW_EXTS):
        return _raw_time(path), None
    from PIL import Image
    try:
        with Image.open(path) as im:
            ex = im.getexif()
            sub = ex.get_ifd(_EXIF_IFD)
    except Exception:  # noqa: BLE001 - no EXIF is no evidence: the frame is read (and judged) later
        return None, None
    when = None
    stamp = sub.get(_DATETIME_ORIGINAL) or ex.get(_DATETIME)
    if isinstance(stamp, str):
        try:
            when = datetime.datetime.strptime(stamp.strip("\x00 "), "%Y:%m:%d %H:%M:%S").timestamp()
            frac = str(sub.get(_SUBSEC_ORIGINAL) or "").strip("\x00 ")
            if frac.isdigit():
                when += float(f"0.{frac}")
        except ValueError:
            when = None
    dist = sub.get(_SUBJECT_DISTANCE)
    try:
        dist = float(dist) if dist is not None else None
    except (TypeError, ValueError, ZeroDivisionError):
        dist = None
    return when, (dist if dist is not None and np.isfinite(dist) and dist > 0 else None)


def _raw_time(path) -> Optional[float]:
    try:
        import rawpy
        with rawpy.imread(str(path)) as raw:
            when = raw.other.timestamp
    except Exception:  # noqa: BLE001 - rawpy missing or the file unreadable: no evidence (the job says why)
        return None
    if isinstance(when, datetime.datetime):
        return when.timestamp() if when.year > 1970 else None
    return float(when) if when else None


def preview_blocks(path) -> Optional[np.ndarray]:
    """The frame's luminance as :data:`GRID` x :data:`GRID` block means (float32, 0-255
    scale), from a 1/8-size decode for JPEGs; None where it cannot be read (the job
    reports it)."""
    try:
        if path.lower().endswith(_JPEG):
            import simplejpeg
            with open(path, "rb") as fh:
                a = simplejpeg.decode_jpeg(fh.read(), colorspace="GRAY", min_height=64, min_width=64)[:, :, 0]
        else:
            from ..stages.measure import value_scale
            from ..stages.read import read_frame
            a = read_frame(path)
            a = a.astype(np.float32) * np.float32(255 * value_scale(a.dtype))
            a = a.mean(axis=2) if a.ndim == 3 else a
    except Exception:  # noqa: BLE001
        return None
    a = np.asarray(a, np.float32)
    H, W = a.shape
    if H < GRID or W < GRID:
        return None
    a = a[: H // GRID * GRID, : W // GRID * GRID]
    return a.reshape(GRID, H // GRID, GRID, W // GRID).mean(axis=(1, 3))


#: Below this spread of its block means (grey levels of 255) a frame has no layout to
#: compare: a blank wall, or noise, which averages out over a block. Its neighbours are
#: then not judged by content.
MIN_CONTRAST = 2.0


def similarity(a, b) -> Optional[float]:
    """Pearson correlation of two block-mean grids (1: alike; about 0: unrelated), or
    None where either has no layout (spread under :data:`MIN_CONTRAST`)."""
    if float(a.std()) < MIN_CONTRAST or float(b.std()) < MIN_CONTRAST:
        return None
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum()) / float(np.sqrt((a * a).sum() * (b * b).sum()))


def split_sequence(files: List[str], split: dict) -> List[Tuple[int, str]]:
    """Where to cut a sorted sequence of frame files: ``[(index of the first frame of a
    new stack, why), ...]`` (empty: one stack).

    ``split``: ``{time, focus, content, content_on}`` as resolved by the config (False:
    off; ``content_on``: ``jpeg``, or ``all`` formats).
    """
    n = len(files)
    if n < 4 or not (split.get("time") or split.get("focus") or split.get("content")):
        return []
    cuts = {}
    if split.get("time") or split.get("focus"):
        facts = _read_all(exif_facts, files)
        if split.get("time"):
            _time_cuts(files, [t for t, _ in facts], split["time"], cuts)
        if split.get("focus"):
            _focus_cuts(files, [d for _, d in facts], cuts)
    if split.get("content") and (split.get("content_on") == "all" or all(f.lower().endswith(_JPEG) for f in files)):
        grids = _read_all(preview_blocks, files)
        for i in range(1, n):
            if grids[i - 1] is not None and grids[i] is not None:
                s = similarity(grids[i - 1], grids[i])
                if s is not None and s < split["content"]:
                    cuts.setdefault(i, f"content jump before {os.path.basename(files[i])} "
                                       f"(similarity {s:.2f} < {split['content']})")
    return sorted(cuts.items())


#: What was read of each file, by (reader, path, size, modification time): a watch's
#: rescans read only new or changed files (10 000 files: a stat each instead of a decode).
_SEEN: dict = {}
_SEEN_MAX = 200_000


def _read_all(reader, files) -> list:
    """``reader(f)`` for each file, from :data:`_SEEN` where the file has not changed, the
    rest on 2 threads (Pillow and the JPEG decoder release the GIL)."""
    global _POOL
    keys = []
    for f in files:
        try:
            st = os.stat(f)
            keys.append((reader.__name__, f, st.st_size, st.st_mtime_ns))
        except OSError:
            keys.append(None)
    if None in keys:  # a file that vanished: read what is there, nothing cached
        return [reader(f) for f in files]
    values = {k: _SEEN[k] for k in keys if k in _SEEN}
    todo = [(k, f) for k, f in zip(keys, files) if k not in values]
    if todo:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="dffbatch-split")
        if len(_SEEN) + len(todo) > _SEEN_MAX:
            _SEEN.clear()
        for (k, _), value in zip(todo, _POOL.map(reader, [f for _, f in todo])):
            _SEEN[k] = values[k] = value
    return [values[k] for k in keys]


_POOL = None


def _time_cuts(files, times, min_gap, cuts):
    if any(t is None for t in times):
        return
    steps = np.diff(np.asarray(times, np.float64))
    med = float(np.median(steps))
    for i, gap in enumerate(steps, start=1):
        if gap > min_gap and gap > 2 * med:
            cuts[i] = (f"{gap:.1f} s capture-time gap before {os.path.basename(files[i])} "
                       f"(median interval {med:.1f} s)")


def _focus_cuts(files, dists, cuts):
    if any(d is None for d in dists):
        return
    d = np.asarray(dists, np.float64)
    steps = np.diff(d)
    span = float(d.max() - d.min())
    moving = steps[steps != 0]
    if span <= 0 or moving.size == 0:
        return
    direction = np.sign(np.median(moving)) or 1.0
    for i, step in enumerate(steps, start=1):
        if np.sign(step) == -direction and abs(step) > 0.5 * span:
            cuts.setdefault(i, f"focus distance reset before {os.path.basename(files[i])} "
                               f"({d[i - 1]:g} m -> {d[i]:g} m)")
