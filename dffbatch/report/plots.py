"""Pictures of one result: 2-D depth map with a colour bar, 3-D surface, PLY mesh."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..params import LOW_CONFIDENCE
from .views import block_means, viridis_rgb

__all__ = ["depth_2d_png", "depth_3d_png", "mesh_ply", "bar_chart_png", "error_map_png", "alignment_png",
           "side_by_side_png"]


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _png(fig) -> bytes:
    data = _png_keep(fig)
    _plt().close(fig)
    return data


# Figures are built once per process and size, and reused: the scaffold (axes, ticks,
# labels, 3-D panes) is drawn once into a background that each plot restores before it
# draws only what changes (Matplotlib's blitting; tests/test_write.py checks the result
# is pixel-identical to a full draw). Per 1080 x 1080 depth map (focus_stack 2): 2-D
# 87 ms with a new figure each time, 35 with a reused one redrawn, 19 blitted; 3-D
# 67, 34, 13.
_FIGS = OrderedDict()
_MAX_FIGS = 16  # figures kept per process, least recently used dropped (about 3 MB each)


def _png_keep(fig) -> bytes:
    """The figure rendered at 100 dpi, as an RGB PNG (the project's fast encoder: the
    figure is opaque, and Pillow's encoder took a third of the plotting time)."""
    fig.set_dpi(100)
    fig.canvas.draw()
    return _canvas_png(fig)


def _canvas_png(fig) -> bytes:
    from ..stages.write import png_bytes
    return png_bytes(np.asarray(fig.canvas.buffer_rgba())[:, :, :3])


def _figure(figsize):
    """A figure outside pyplot's registry (kept in the cache, never shown)."""
    _plt()  # the Agg backend
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _title_placeholder(ax):
    """A transparent title: laid out like a real one in the background's draw (a hidden
    or empty title is placed elsewhere), drawn per plot with its own text."""
    ax.set_title("Title", fontsize=9, alpha=0.0)


def _cached(key, build):
    """The figure for ``key`` with its background: ``build()`` returns (fig, dynamic
    artists, extra); the background is drawn with the dynamic artists hidden."""
    if key in _FIGS:
        _FIGS.move_to_end(key)
    else:
        if len(_FIGS) >= _MAX_FIGS:
            _FIGS.popitem(last=False)
        fig, dynamic, extra = build()
        fig.set_dpi(100)
        for a in dynamic:
            a.set_visible(False)
        fig.canvas.draw()
        bg = fig.canvas.copy_from_bbox(fig.bbox)
        for a in dynamic:
            a.set_visible(True)
        for ax in fig.axes:
            ax.title.set_alpha(None)
        _FIGS[key] = (fig, bg, extra)
    return _FIGS[key]


def _xy(pixel):
    """x/y scale and axis unit: ``pixel`` = (pixel_x, pixel_y, unit) from a calibrated input, or None."""
    if pixel is None:
        return 1.0, 1.0, "px"
    return float(pixel[0]), float(pixel[1]), str(pixel[2])


# LOW_CONFIDENCE (dffbatch.params): the probability below which the plots grey a region
# out, more likely wrong than right (the records' ``low_confidence`` share uses the same line).
#: The one neutral grey of unknown depth in the 2-D plot: on no colour map's bar.
UNKNOWN_GREY = (150, 150, 150)
UNKNOWN_LABEL = f"no focus evidence (p < {LOW_CONFIDENCE:g})"


def depth_2d_png(depth, title="", unit="frame", pixel=None, confidence=None, near_low=None) -> bytes:
    """Depth map with a labelled colour bar (data range), PNG bytes.

    ``unit``: ``frame`` (the bar says frame 0 is the first file), or the unit of the
    focus positions (``depth`` then holds positions, e.g. the µm of a microscope's Z).

    The figure follows the image's aspect ratio (no white bands for 1280 x 720).
    ``pixel`` (pixel_x, pixel_y, unit): x and y axes in that unit (e.g. µm).
    ``confidence`` (H, W): regions whose mean confidence is below :data:`LOW_CONFIDENCE`
    are drawn in :data:`UNKNOWN_GREY`, with a legend entry, so that measured depth and
    what no frame showed do not look alike. ``near_low``: True when the low end of the
    bar is nearest the camera, False when the high end is; the bar's ends then say
    "near" and "far" (None: not known, not said).
    """
    d, step = _grid(depth, 400)  # the axes are about 400 px wide: no need to resample more
    H, W = depth.shape
    lo, hi = float(d.min()), float(d.max())
    sx, sy, xy_unit = _xy(pixel)
    aspect = (H * sy) / max(W * sx, 1e-12)
    ax_w = 3.9  # inches of image width; the height follows the aspect, within reason
    ax_h = min(max(ax_w * aspect, 1.4), 6.5)
    legend = confidence is not None
    bottom = 0.5 + (0.25 if legend else 0.0)  # inches below the axes: the x label, the legend
    fig_w, fig_h = 5.4, ax_h + bottom + 0.45 + (0.15 if near_low is not None else 0.0)

    def build():
        from matplotlib.patches import Patch
        fig = _figure((fig_w, fig_h))
        ax = fig.add_axes((0.62 / fig_w, bottom / fig_h, ax_w / fig_w, ax_h / fig_h))
        cax = fig.add_axes(((0.62 + ax_w + 0.12) / fig_w, bottom / fig_h, 0.16 / fig_w, ax_h / fig_h))
        extent = (-0.5 * sx, (W - 0.5) * sx, (H - 0.5) * sy, -0.5 * sy)
        # one RGB image, coloured and dimmed here: Matplotlib then only places its pixels
        # (colour-mapping float data and blending an RGBA layer over it took half the plot)
        im = ax.imshow(np.zeros(d.shape + (3,), np.uint8), interpolation="nearest", extent=extent, aspect="auto")
        # the colour bar: the colour map's 256 steps placed in the bar's own axes coordinates,
        # so that only its depth axis (ticks, labels) follows each map's range and is drawn
        # per plot; the bar itself is in the background (a Matplotlib colorbar redrew its
        # whole mesh and outline for each range: 16 of 32 ms a plot)
        cax.imshow(viridis_rgb(np.linspace(0.0, 1.0, 256))[:, None], origin="lower", extent=(0, 1, 0, 1),
                   transform=cax.transAxes, interpolation="nearest", aspect="auto")
        cax.set_xticks([])
        cax.yaxis.tick_right()
        cax.yaxis.set_label_position("right")
        cax.set_ylabel(f"depth ({unit}; 0 = first file)" if unit == "frame" else f"depth: focus position ({unit})")
        if near_low is not None:  # outside the bar's axes: static, in the background
            for y, va, word in ((-0.01, "top", "near" if near_low else "far"),
                                (1.01, "bottom", "far" if near_low else "near")):
                cax.text(0.5, y, word, transform=cax.transAxes, ha="center", va=va, fontsize=7)
        ax.set_xlabel(f"x ({xy_unit})")
        ax.set_ylabel(f"y ({xy_unit})")
        if legend:
            fig.legend(handles=[Patch(facecolor=np.array(UNKNOWN_GREY) / 255, edgecolor="0.3", lw=0.5,
                                      label=UNKNOWN_LABEL)],
                       loc="lower left", bbox_to_anchor=(0.0, 0.0), frameon=False, fontsize=7, handlelength=1.2)
        _title_placeholder(ax)
        return fig, [im, cax.yaxis, *ax.spines.values()], (ax, im, cax)

    fig, bg, (ax, im, cax) = _cached(("2d", unit, H, W, pixel, legend, near_low), build)
    top = hi if hi > lo else lo + 1e-6
    cax.set_ylim(lo, top)
    rgb = viridis_rgb((d - lo) / (top - lo))
    if confidence is not None:  # regions, not pixels: the local mean over 9 x 9 plotted pixels
        low = _box_mean(np.asarray(confidence, np.float64)[::step, ::step], 4) < LOW_CONFIDENCE
        rgb[low] = UNKNOWN_GREY
    im.set_data(rgb)
    ax.title.set_text(title)
    fig.canvas.restore_region(bg)
    ax.draw_artist(im)
    for spine in ax.spines.values():  # over the image, as in a full draw
        ax.draw_artist(spine)
    cax.draw_artist(cax.yaxis)
    ax.draw_artist(ax.title)
    return _canvas_png(fig)


def _box_mean(a, r):
    """Mean over the (2r+1)^2 window around each pixel (windows clipped at the borders)."""
    def along(x, axis):
        c = np.cumsum(np.pad(x, [(1, 0) if i == axis else (0, 0) for i in range(2)]), axis=axis)
        n = x.shape[axis]
        hi = np.minimum(np.arange(n) + r + 1, n)
        lo = np.maximum(np.arange(n) - r, 0)
        take = (lambda i: c[i, :]) if axis == 0 else (lambda i: c[:, i])
        cnt = (hi - lo).reshape((-1, 1) if axis == 0 else (1, -1))
        return (take(hi) - take(lo)) / cnt
    return along(along(a, 0), 1)


def _grid(a, n):
    H, W = a.shape[:2]
    s = max(1, int(np.ceil(max(H, W) / n)))
    return a[::s, ::s], s


def depth_3d_png(depth, grid=48, title="", unit="frame", zrange=None, pixel=None, confidence=None) -> bytes:
    """Surface plot of about ``grid`` points a side: the mean depth of each block (a block's
    single pixel would make spikes of noise), x and y in proportion to the image.

    ``zrange`` (lo, hi): the depth axis limits; default the data range. The batch
    runner passes 0 to the last frame rounded up to a multiple of 4: one cached
    scaffold serves stacks of nearby sizes, and the depth maps of a dataset share
    an axis. ``confidence`` (H, W): blocks whose mean confidence is below
    :data:`LOW_CONFIDENCE` (no focus evidence) are drawn light grey, off the colour map.
    """
    H, W = depth.shape
    s = max(1, int(np.ceil(max(H, W) / grid)))
    d = block_means(depth, s)
    sx, sy, xy_unit = _xy(pixel)
    yy, xx = (np.mgrid[0:d.shape[0], 0:d.shape[1]] + 0.5) * s
    xx, yy = np.minimum(xx, W) * sx, np.minimum(yy, H) * sy
    zlo, zhi = (float(d.min()), float(d.max())) if zrange is None else map(float, zrange)
    zhi = zhi if zhi > zlo else zlo + 1e-6
    xmax, ymax = max(1.0, W * sx), max(1.0, H * sy)

    def build():
        fig = _figure((5.2, 4.2))
        fig.subplots_adjust(left=0.0, right=0.92, bottom=0.04, top=0.95)
        ax = fig.add_subplot(projection="3d")
        ax.set_xlabel(f"x ({xy_unit})")
        ax.set_ylabel(f"y ({xy_unit})")
        ax.set_zlabel(f"depth ({unit})")
        ax.set_xlim(0, xmax)
        ax.set_ylim(ymax, 0)
        ax.set_zlim(zlo, zhi)
        big = max(xmax, ymax)
        ax.set_box_aspect((xmax / big, ymax / big, 0.45))  # the image's proportions; depth as tall as it reads
        _title_placeholder(ax)
        return fig, [], [ax, None]

    fig, bg, state = _cached(("3d", unit, H, W, grid, zlo, zhi, pixel), build)
    ax, surf = state
    if surf is not None:
        surf.remove()
    surf = state[1] = ax.plot_surface(xx, yy, d, cmap="viridis", linewidth=0, antialiased=False,
                                      rcount=d.shape[0], ccount=d.shape[1], vmin=zlo, vmax=zhi)
    if confidence is not None and d.shape[0] > 1 and d.shape[1] > 1:
        # one colour per cell, in plot_surface's polygon order (row-major cells); passing
        # ``facecolors`` instead costs 4x the plot (a colour conversion per polygon)
        from matplotlib import colormaps
        cell = (d[:-1, :-1] + d[1:, :-1] + d[:-1, 1:] + d[1:, 1:]) / 4
        colors = colormaps["viridis"](np.clip((cell - zlo) / (zhi - zlo), 0, 1)).reshape(-1, 4)
        c = block_means(confidence, s)
        low = ((c[:-1, :-1] + c[1:, :-1] + c[:-1, 1:] + c[1:, 1:]) / 4 < LOW_CONFIDENCE).reshape(-1)
        colors[low, :3] = 0.8
        surf.set_array(None)
        surf.set_facecolor(colors)
    ax.title.set_text(title)
    fig.canvas.restore_region(bg)
    surf.do_3d_projection()  # with the projection of the background's draw
    ax.draw_artist(surf)
    ax.draw_artist(ax.title)
    return _canvas_png(fig)


def mesh_ply(depth, allfocus, max_side=512, z_scale=None) -> bytes:
    """Binary PLY surface mesh coloured by the all-in-focus image (MeshLab, Blender).

    Vertices on a grid of at most ``max_side`` points a side; z is the depth scaled so
    that the full depth range spans a tenth of the image width unless ``z_scale``.
    """
    d, s = _grid(depth, max_side)
    c = allfocus[::s, ::s]
    if c.dtype == np.uint16:
        c = (c >> 8).astype(np.uint8)
    elif c.dtype.kind == "f":
        c = np.clip(c / max(float(c.max()), 1e-12) * 255, 0, 255).astype(np.uint8)
    if c.ndim == 2:
        c = np.repeat(c[:, :, None], 3, axis=2)
    c = c[:, :, :3]
    h, w = d.shape
    rng = float(d.max() - d.min()) or 1.0
    zs = z_scale if z_scale is not None else 0.1 * depth.shape[1] / rng
    yy, xx = np.mgrid[0:h, 0:w] * s
    verts = np.zeros(h * w, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                   ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    verts["x"] = xx.ravel()
    verts["y"] = -yy.ravel()
    verts["z"] = d.ravel() * zs
    verts["red"], verts["green"], verts["blue"] = (c[:, :, i].ravel() for i in range(3))
    idx = np.arange(h * w).reshape(h, w)
    a, b, cc, dd = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    tris = np.concatenate([np.stack([a, cc, b], 1), np.stack([b, cc, dd], 1)])
    faces = np.zeros(len(tris), dtype=[("n", "u1"), ("v", "<i4", (3,))])
    faces["n"] = 3
    faces["v"] = tris
    header = ("ply\nformat binary_little_endian 1.0\ncomment dffbatch depth mesh\n"
              f"element vertex {len(verts)}\nproperty float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\n"
              f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n")
    return header.encode() + verts.tobytes() + faces.tobytes()


def bar_chart_png(labels, values, ylabel, title="") -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(labels) + 1.5), 3.6))
    ax.bar(range(len(values)), values, color="#4c72b0")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _png(fig)


def error_map_png(err, title="") -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    v = float(np.percentile(np.abs(err), 99)) or 1.0
    im = ax.imshow(err, cmap="RdBu_r", vmin=-v, vmax=v)
    fig.colorbar(im, ax=ax, shrink=0.85).set_label("depth error (frame)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _png(fig)


def alignment_png(per_frame, title="") -> bytes:
    """Scale and shift of each frame relative to the reference, against the frame index
    (with ``affine``, also how much the x and y axes stretch)."""
    k = [p["frame"] for p in per_frame]
    if "align" not in _FIGS:  # built once per process, like the depth plots (57 -> 21 ms)
        fig = _figure((8.0, 3.2))
        a1, a2 = fig.subplots(1, 2)
        fig.subplots_adjust(left=0.1, right=0.98, bottom=0.16, top=0.86, wspace=0.35)
        (ls,) = a1.plot([], [], "o-", ms=3, label="scale", color="C0")
        (lsx,) = a1.plot([], [], "--", lw=1, label="x axis", color="C1")
        (lsy,) = a1.plot([], [], "--", lw=1, label="y axis", color="C2")
        leg1 = a1.legend(fontsize=7)
        a1.set_xlabel("frame")
        a1.set_ylabel("scale")
        (lx,) = a2.plot([], [], "o-", ms=3, label="x")
        (ly,) = a2.plot([], [], "o-", ms=3, label="y")
        a2.set_xlabel("frame")
        a2.set_ylabel("shift of the image centre (px)")
        a2.legend(fontsize=8)
        _FIGS["align"] = (fig, a1, a2, ls, lsx, lsy, leg1, lx, ly)
    fig, a1, a2, ls, lsx, lsy, leg1, lx, ly = _FIGS["align"]
    ls.set_data(k, [p["scale"] for p in per_frame])
    # affine: the axes stretch differently (rolling shutter); drawn only when they do
    sx = [p.get("scale_x", p["scale"]) for p in per_frame]
    sy = [p.get("scale_y", p["scale"]) for p in per_frame]
    aniso = max(abs(a - b) for a, b in zip(sx, sy)) > 1e-5
    lsx.set_data(k if aniso else [], sx if aniso else [])
    lsy.set_data(k if aniso else [], sy if aniso else [])
    leg1.set_visible(aniso)
    lx.set_data(k, [p["shift_x"] for p in per_frame])
    ly.set_data(k, [p["shift_y"] for p in per_frame])
    for ax in (a1, a2):
        ax.relim()
        ax.autoscale_view()
    a1.ticklabel_format(useOffset=False)
    fig.suptitle(f"alignment {title}", fontsize=9)
    return _png_keep(fig)


def side_by_side_png(images, titles, suptitle="") -> bytes:
    """A row of images (arrays) with titles: for before/after comparisons in reports."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(images), figsize=(4.0 * len(images), 3.6))
    for ax, img, t in zip(np.atleast_1d(axes), images, titles):
        ax.imshow(img, cmap=None if img.ndim == 3 else "viridis")
        ax.set_title(t, fontsize=9)
        ax.axis("off")
    fig.suptitle(suptitle, fontsize=10)
    return _png(fig)
