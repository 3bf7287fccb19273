"""Stage *read* for microscopy: multi-page TIFFs read by their axes (ImageJ hyperstacks, OME-TIFF).

tifffile names the axes of each series (``T`` time, ``Z`` focus, ``C`` channel, ``Y``
``X`` plane, ``S`` samples of RGB pixels; others such as ``Q``/``I`` are unnamed page
sequences). The rules:

* ``Z`` is the focus axis: one focus frame per z-plane.
* ``C`` are channels. Every channel goes into the all-in-focus image; the focus
  measure uses the mean of the channels (each scaled to [0, 1]), or the one channel
  chosen by the dataset key ``channel`` (index or name).
* ``T`` (time points) and the file's series (positions, scenes) make one stack each,
  with ids ``<file>__t003`` and ``<file>__s1``.
* A TIFF without a ``Z`` axis keeps the plain behaviour (every page is a focus frame),
  with a note.

Focus positions come from the metadata when the file has them: ImageJ ``spacing``
(with ``unit``), OME ``PhysicalSizeZ`` (and ``PhysicalSizeZUnit``), or OME per-plane
``PositionZ``; the config's ``positions`` overrides them. The XY pixel size (ImageJ
resolution tags and ``unit``, OME ``PhysicalSizeX/Y``) calibrates the outputs.

Planes are read one at a time (``TiffFile.asarray(key=page, series=s)``): memory stays
O(plane) whatever the size of the file.
"""
from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

__all__ = ["TiffLayout", "tiff_layouts", "iter_zplanes", "resolve_channel"]


@dataclass
class TiffLayout:
    """What one series of a TIFF holds, from its metadata (no pixels read)."""

    path: str
    series: int
    axes: str                       # tifffile's axes of the series, e.g. "TZCYX"
    shape: tuple
    n_series: int = 1
    channel_names: List[str] = field(default_factory=list)
    z_positions: Optional[List[float]] = None   # per plane, when the metadata give them
    z_step: Optional[float] = None
    z_unit: Optional[str] = None
    z_source: Optional[str] = None
    pixel_size: Optional[tuple] = None          # (x, y) in ``pixel_unit``
    pixel_unit: Optional[str] = None

    @property
    def has_z(self) -> bool:
        return "Z" in self.axes

    def size(self, axis: str) -> int:
        return self.shape[self.axes.index(axis)] if axis in self.axes else 1

    @property
    def plane_axes(self) -> str:
        """The axes that index pages (all but the plane's Y, X and samples)."""
        return "".join(a for a in self.axes if a not in "YXS")

    def page(self, t: int = 0, z: int = 0, c: int = 0) -> int:
        """Index within the series of the page holding plane (t, z, c)."""
        idx = 0
        want = {"T": t, "Z": z, "C": c}
        for a in self.plane_axes:
            idx = idx * self.size(a) + want.get(a, 0)
        return idx

    def positions(self, t: int = 0):
        """Focus position of each z-plane, or None."""
        n = self.size("Z")
        if self.z_positions is not None and len(self.z_positions) == n:
            return list(self.z_positions)
        if self.z_step:
            return [k * self.z_step for k in range(n)]
        return None


_UNITS = {"micron": "µm", "um": "µm", "\\u00B5m": "µm", "µm": "µm", "nm": "nm", "mm": "mm", "pixel": None, "": None}


def _unit(u):
    if u is None:
        return None
    u = str(u)
    return _UNITS.get(u, u)


def _ome(tif, s):
    """OME metadata of series ``s``: channel names, z step / positions, pixel size."""
    out = {}
    try:
        root = ET.fromstring(tif.ome_metadata)
    except (ET.ParseError, TypeError):
        return out
    ns = root.tag.split("}")[0][1:] if root.tag.startswith("{") else ""
    q = (lambda t: f"{{{ns}}}{t}") if ns else (lambda t: t)
    images = root.findall(q("Image"))
    if s >= len(images):
        return out
    px = images[s].find(q("Pixels"))
    if px is None:
        return out
    a = px.attrib
    out["channel_names"] = [c.attrib.get("Name", "") for c in px.findall(q("Channel"))]
    if a.get("PhysicalSizeZ"):
        out["z_step"] = float(a["PhysicalSizeZ"])
        out["z_unit"] = _unit(a.get("PhysicalSizeZUnit", "µm"))
        out["z_source"] = "OME PhysicalSizeZ"
    planes = [p.attrib for p in px.findall(q("Plane")) if p.attrib.get("PositionZ") is not None
              and int(p.attrib.get("TheC", 0)) == 0 and int(p.attrib.get("TheT", 0)) == 0]
    if planes:
        planes.sort(key=lambda p: int(p.get("TheZ", 0)))
        out["z_positions"] = [float(p["PositionZ"]) for p in planes]
        out["z_unit"] = _unit(planes[0].get("PositionZUnit", "µm"))
        out["z_source"] = "OME PositionZ"
    if a.get("PhysicalSizeX"):
        x = float(a["PhysicalSizeX"])
        out["pixel_size"] = (x, float(a.get("PhysicalSizeY", x)))
        out["pixel_unit"] = _unit(a.get("PhysicalSizeXUnit", "µm"))
    return out


def _imagej(tif):
    out = {}
    md = tif.imagej_metadata or {}
    if md.get("spacing"):
        out["z_step"] = float(md["spacing"])
        out["z_unit"] = _unit(md.get("unit"))
        out["z_source"] = "ImageJ spacing"
    labels = md.get("Labels")
    if isinstance(labels, (list, tuple)):
        out["channel_names"] = [str(x) for x in labels]
    page = tif.pages[0]
    try:
        xr = page.tags["XResolution"].value
        yr = page.tags["YResolution"].value
        x, y = xr[0] / xr[1], yr[0] / yr[1]
        if x > 0 and y > 0 and not (x == 1 and y == 1 and not md.get("unit")):
            out["pixel_size"] = (1.0 / x, 1.0 / y)
            out["pixel_unit"] = _unit(md.get("unit"))
    except (KeyError, ZeroDivisionError, TypeError, IndexError):
        pass
    return out


def tiff_layouts(path) -> List[TiffLayout]:
    """The series of a TIFF with their axes and calibration (metadata only)."""
    import tifffile
    out = []
    with tifffile.TiffFile(path) as tif:
        series = tif.series
        for s, ser in enumerate(series):
            lay = TiffLayout(os.fspath(path), s, ser.axes.upper(), tuple(ser.shape), len(series))
            md = _ome(tif, s) if tif.is_ome else _imagej(tif) if tif.is_imagej else {}
            for k, v in md.items():
                setattr(lay, k, v)
            names = lay.channel_names
            n_c = lay.size("C")
            if tif.is_imagej and len(names) > n_c:  # ImageJ labels are per image: those of the first plane
                try:
                    lay.channel_names = [names[lay.page(0, 0, c)] for c in range(n_c)]
                except IndexError:
                    lay.channel_names = []
            out.append(lay)
    return out


def resolve_channel(layout: TiffLayout, channel):
    """The channel index a dataset's ``channel`` key names (None: the mean of all)."""
    n = layout.size("C")
    if channel is None or channel == "mean":
        return None
    if isinstance(channel, bool):
        raise ValueError(f"{layout.path}: channel must be an index or a name, got {channel!r}")
    if isinstance(channel, int):
        if not -n <= channel < n:
            raise ValueError(f"{layout.path}: channel {channel} does not exist; the file has {n} "
                             f"channel{'s' if n != 1 else ''} (0..{n - 1})")
        return channel % n
    names = layout.channel_names
    if channel in names:
        return names.index(channel)
    known = ", ".join(repr(x) for x in names) if names else "none (use an index)"
    raise ValueError(f"{layout.path}: no channel named {channel!r}; its channels: {known}")


def iter_zplanes(layout: TiffLayout, t: int = 0):
    """The z-planes of time point ``t``, one at a time: (H, W) for one channel, else (H, W, C)."""
    import tifffile
    n_c = layout.size("C")
    with tifffile.TiffFile(layout.path) as tif:
        for z in range(layout.size("Z")):
            planes = [tif.asarray(key=layout.page(t, z, c), series=layout.series) for c in range(n_c)]
            yield planes[0] if n_c == 1 else np.ascontiguousarray(np.stack(planes, axis=-1))


def calibration_of(layout: TiffLayout):
    """``(pixel_x, pixel_y, unit)`` for calibrated outputs, or None."""
    if layout.pixel_size and all(math.isfinite(v) and v > 0 for v in layout.pixel_size):
        return (layout.pixel_size[0], layout.pixel_size[1], layout.pixel_unit or "pixel")
    return None
