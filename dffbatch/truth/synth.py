"""Synthetic focal stacks with exact ground truth (the project's measuring stick).

Model
-----
* Scene: a texture on a surface whose depth is given directly as ``g(x, y)``, the
  fractional index of the frame in best focus (frame units, in [0, N-1]; larger is
  nearer the camera). Frames are focused at N positions evenly spaced in inverse
  depth, so the thin-lens blur-circle radius ``r = K |1/s - 1/d|`` becomes
  ``r = blur_per_frame * |k - g|`` pixels for frame ``k`` (``blur_per_frame`` is K
  times the inverse-depth spacing of the frames: the aperture), capped at ``max_blur``.
* Occlusion-aware rendering: depth is quantised into layers ``1/layers_per_frame``
  frame apart; each layer's premultiplied colour and alpha are blurred with an
  anti-aliased disk PSF of the layer's radius (FFT, reflected borders). Layers of one
  continuous surface are summed (a surface does not occlude itself: compositing its
  own layers with *over* would smear content towards the far side as blur grows, a
  false motion of up to 1 px that alignment would then "correct"); separate surfaces
  (the near rectangle of ``step``) are composited far to near with the *over*
  operator, so a defocused foreground edge bleeds over the background as it should. Blurring happens in linear light: the sRGB
  curve is undone before and redone after.
* Sensor: Poisson-Gaussian noise in linear light, variance ``noise**2 * I +
  (noise/5)**2`` for intensity ``I`` in [0, 1]; then sRGB encoding and 8- or 16-bit
  quantisation.
* Focus breathing (for alignment tests): frame ``k`` is magnified by
  ``1 + breathing * (k - m)`` about the image centre and shifted by a random offset of
  standard deviation ``shift`` pixels (band-limited resampling, see ``_warp``), where ``m = (N-1)//2`` is
  the middle frame, which stays put: ground truth is in its coordinates, the default
  reference of alignment.

Everything is seeded: the same options and seed give byte-identical files.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

__all__ = ["SHAPES", "TEXTURES", "REGIONS", "depth_shape", "make_texture", "texture_regions", "render_stack", "write_stack",
           "srgb_to_linear", "linear_to_srgb"]

SHAPES = ("plane", "slant", "cone", "sinusoid", "step", "sphere", "terrain", "leaf")
TEXTURES = ("noise", "checker", "lowtex", "flatpatch", "gradpatch", "ivy", "bare")
#: Texture region labels (:func:`texture_regions`): how much focus evidence a pixel can carry.
REGIONS = ("textured", "weak", "flat")


# ------------------------------------------------------------------------- colour
def srgb_to_linear(c):
    c = np.asarray(c, np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c):
    c = np.clip(np.asarray(c, np.float64), 0.0, 1.0)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)


# ------------------------------------------------------------------------- scenes
def _smooth_noise(rng, H, W, scale):
    """Band-limited random field (Gaussian low-pass of white noise), zero mean, unit std."""
    f = np.fft.rfft2(rng.standard_normal((H, W)))
    fy = np.fft.fftfreq(H)[:, None]
    fx = np.fft.rfftfreq(W)[None, :]
    f *= np.exp(-((fx ** 2 + fy ** 2) * (scale ** 2) * 2 * math.pi ** 2))
    out = np.fft.irfft2(f, s=(H, W))
    return (out - out.mean()) / (out.std() + 1e-12)


def depth_shape(shape: str, H: int, W: int, n_frames: int, rng=None) -> np.ndarray:
    """Ground-truth depth ``g`` (float64, (H, W), frame units within [0, N-1]).

    Shapes: plane (mid-stack), slant (ramp in x), cone, sinusoid, step (a near
    rectangle occluding a far plane), sphere (hemisphere on a far plane), terrain
    (random smooth surface; uses ``rng``), leaf (a leaf and its thin stem far in front
    of a far plane: :func:`leaf_masks`; render it with the ``ivy`` texture and a blur of
    12 px or more between the two, as the ``halo`` suite does).
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; choose one of {', '.join(SHAPES)}")
    rng = np.random.default_rng(0) if rng is None else rng
    top = n_frames - 1.0
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    u = (x + 0.5) / W
    v = (y + 0.5) / H
    rad = np.hypot(u - 0.5, v - 0.5)
    lo, hi = 0.1 * top, 0.9 * top
    if shape == "plane":
        g = np.full((H, W), 0.5 * top)
    elif shape == "slant":
        g = lo + (hi - lo) * u
    elif shape == "cone":
        g = hi - (hi - lo) * np.clip(rad / 0.5, 0, 1)
    elif shape == "sinusoid":
        g = 0.5 * top + 0.4 * top * np.sin(2 * math.pi * 1.5 * u) * np.sin(2 * math.pi * 1.5 * v)
    elif shape == "step":
        g = np.full((H, W), 0.2 * top)
        g[(np.abs(u - 0.5) < 0.25) & (np.abs(v - 0.5) < 0.3)] = 0.8 * top
    elif shape == "sphere":
        R = 0.35
        g = lo + (hi - lo) * np.sqrt(np.clip(1 - (rad / R) ** 2, 0, 1))
    elif shape == "leaf":
        leaf, stem = leaf_masks(H, W)
        g = 0.05 * top + 0.1 * top * v  # the far background, tilting a little towards the bottom
        g[leaf] = (0.85 * top + 0.05 * top * (u - 0.45))[leaf]  # the leaf, tilted a little across
        g[stem & ~leaf] = 0.8 * top
    else:  # terrain
        t = _smooth_noise(rng, H, W, scale=max(H, W) / 6.0)
        t = (t - t.min()) / (t.max() - t.min() + 1e-12)
        g = lo + (hi - lo) * t
    return np.clip(g, 0.0, top)


def surface_segments(shape: str, H: int, W: int) -> np.ndarray:
    """Label of the continuous surface each pixel lies on (0 = the background surface).

    ``step`` and ``leaf`` have two surfaces (the near rectangle, the leaf and its stem:
    label 1, occluding the far plane); every other shape is one continuous surface.
    """
    seg = np.zeros((H, W), np.int64)
    if shape == "leaf":
        leaf, stem = leaf_masks(H, W)
        seg[leaf | stem] = 1
    if shape == "step":
        y, x = np.mgrid[0:H, 0:W].astype(np.float64)
        u, v = (x + 0.5) / W, (y + 0.5) / H
        seg[(np.abs(u - 0.5) < 0.25) & (np.abs(v - 0.5) < 0.3)] = 1
    return seg


def leaf_masks(H: int, W: int):
    """``(leaf, stem)`` boolean (H, W) masks of the ``leaf`` scene: a leaf (an ellipse
    turned 30 degrees, a third of the width long) and a stem about 4 px wide (at least
    3 px) curving from it to the bottom edge, as a bright ivy leaf far in front of a dark
    background (focus_stack stack 56)."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    u, v = (x + 0.5) / W, (y + 0.5) / H
    c, s_ = math.cos(math.radians(30)), math.sin(math.radians(30))
    du, dv = u - 0.42, v - 0.4
    a, b = du * c + dv * s_, -du * s_ + dv * c
    leaf = (a / 0.2) ** 2 + (b / 0.12) ** 2 <= 1.0
    half = max(1.5, 2.0 * min(H, W) / 256.0) / min(H, W)  # half width of the stem, image units
    t = np.linspace(0.0, 1.0, 400)  # a quadratic Bezier from inside the leaf to the bottom edge
    p0, p1, p2 = np.array([0.5, 0.48]), np.array([0.62, 0.7]), np.array([0.7, 1.05])
    curve = ((1 - t) ** 2)[:, None] * p0 + (2 * (1 - t) * t)[:, None] * p1 + (t ** 2)[:, None] * p2
    stem = np.zeros((H, W), bool)
    for cu, cv in curve:
        r = int(math.ceil(half * max(H, W))) + 1
        y0, y1 = max(0, int(cv * H) - r), min(H, int(cv * H) + r + 1)
        x0, x1 = max(0, int(cu * W) - r), min(W, int(cu * W) + r + 1)
        if y0 < y1 and x0 < x1:
            stem[y0:y1, x0:x1] |= (u[y0:y1, x0:x1] - cu) ** 2 + (v[y0:y1, x0:x1] - cv) ** 2 <= half ** 2
    return leaf, stem


def _flat_mask(H: int, W: int, seed: int) -> np.ndarray:
    """Large blobs (about 45% of the image) where the patch textures carry no texture at all."""
    t = _smooth_noise(np.random.default_rng(seed + 7919), H, W, max(H, W) / 10.0)
    return t > 0.12


def texture_regions(texture, H: int, W: int, seed: int = 0) -> np.ndarray:
    """Region label per pixel of :func:`make_texture`'s output: 0 textured, 1 weak, 2 flat.

    ``lowtex`` is weak everywhere; the patch textures are flat inside their blobs;
    ``seed`` is the one given to :func:`render_stack`.
    """
    reg = np.zeros((H, W), np.uint8)
    if texture == "lowtex":
        reg[:] = 1
    elif texture == "ivy":
        leaf, stem = leaf_masks(H, W)
        reg[leaf | stem] = 1
    elif texture in ("flatpatch", "gradpatch"):
        reg[_flat_mask(H, W, seed)] = 2
    elif texture == "bare":
        reg[~_centre_mask(H, W)] = 2
    return reg


def _centre_mask(H, W):
    """The central rectangle of the ``step`` shape (its near surface)."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    u, v = (x + 0.5) / W, (y + 0.5) / H
    return (np.abs(u - 0.5) < 0.25) & (np.abs(v - 0.5) < 0.3)


def make_texture(texture, H: int, W: int, rng=None, seed: int = 0) -> np.ndarray:
    """An sRGB texture in [0, 1], float64 (H, W, 3).

    ``noise``: multi-scale coloured noise with fine detail; ``checker``: a checker
    board with noise; ``lowtex``: smooth shading with faint fine detail (hard for
    focus measures); ``flatpatch`` / ``gradpatch``: ``noise`` with large blobs (see
    :func:`texture_regions`) of one flat colour / of a smooth colour gradient, which
    carry no focus evidence at all; ``bare``: ``noise`` on the central rectangle of the
    ``step`` shape, one flat colour around it (an object over a bare backdrop: a large
    region without evidence whose depth its surroundings do not tell); ``ivy``: for the ``leaf`` scene, a bright, weakly
    textured leaf and stem (:func:`leaf_masks`) on a dark, textured background; or a
    path to an image file (resized by nearest neighbour).
    """
    rng = np.random.default_rng(0) if rng is None else rng
    if texture == "ivy":
        dark = np.clip(0.1 + 0.55 * (make_texture("noise", H, W, rng) - 0.5), 0.0, 1.0)
        leaf, stem = leaf_masks(H, W)
        shade = 0.04 * _smooth_noise(rng, H, W, max(H, W) / 10.0) + 0.012 * _smooth_noise(rng, H, W, 0.7)
        bright = np.clip(np.array([0.78, 0.88, 0.66]) + shade[:, :, None], 0.0, 1.0)
        return np.where((leaf | stem)[:, :, None], bright, dark)
    if texture == "bare":
        t = make_texture("noise", H, W, rng)
        return np.where(_centre_mask(H, W)[:, :, None], t, np.array([0.55, 0.51, 0.45]))  # no x.5 LSB: flat
    if texture in ("flatpatch", "gradpatch"):
        t = make_texture("noise", H, W, rng)
        mask = _flat_mask(H, W, seed)
        if texture == "flatpatch":
            fill = np.broadcast_to(np.array([0.62, 0.55, 0.45]), (H, W, 3))
        else:
            y, x = np.mgrid[0:H, 0:W].astype(np.float64)
            u, v = x / max(W - 1, 1), y / max(H - 1, 1)
            fill = np.stack([0.3 + 0.4 * u, 0.35 + 0.3 * v, 0.6 - 0.3 * u], axis=2)
        return np.where(mask[:, :, None], fill, t)
    if texture not in TEXTURES:
        import imageio.v3 as iio
        img = np.asarray(iio.imread(texture))
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        img = img[:, :, :3].astype(np.float64) / (65535.0 if img.dtype == np.uint16 else 255.0)
        ys = (np.arange(H) * img.shape[0] / H).astype(int)
        xs = (np.arange(W) * img.shape[1] / W).astype(int)
        return img[ys][:, xs]
    if texture == "noise":
        t = np.zeros((H, W, 3))
        for scale, w in ((0.7, 0.5), (2.0, 0.3), (8.0, 0.2)):
            for c in range(3):
                t[:, :, c] += w * _smooth_noise(rng, H, W, scale)
        t = 0.5 + 0.16 * t
    elif texture == "checker":
        y, x = np.mgrid[0:H, 0:W]
        board = (((x // 16) + (y // 16)) % 2).astype(np.float64)
        t = 0.25 + 0.5 * board[:, :, None] + 0.06 * rng.standard_normal((H, W, 3))
    else:  # lowtex
        t = np.zeros((H, W, 3))
        for c in range(3):
            t[:, :, c] = 0.5 + 0.15 * _smooth_noise(rng, H, W, max(H, W) / 8.0) \
                + 0.01 * _smooth_noise(rng, H, W, 0.7)
    return np.clip(t, 0.0, 1.0)


# ---------------------------------------------------------------------- rendering
def _disk_otf(radius, shape):
    """rFFT of a unit-sum, anti-aliased disk of ``radius`` pixels, centred at the origin."""
    Hp, Wp = shape
    if radius < 0.5:
        k = np.zeros(shape)
        k[0, 0] = 1.0
        return np.fft.rfft2(k)
    R = int(math.ceil(radius)) + 1
    sub = 4
    o = (np.arange(-R * sub, (R + 1) * sub) + 0.5) / sub - 0.5
    yy, xx = np.meshgrid(o, o, indexing="ij")
    inside = (xx ** 2 + yy ** 2 <= radius ** 2).astype(np.float64)
    n = 2 * R + 1
    small = inside.reshape(n, sub, n, sub).mean(axis=(1, 3))
    small /= small.sum()
    k = np.zeros(shape)
    for dy in range(-R, R + 1):
        for dx in range(-R, R + 1):
            k[dy % Hp, dx % Wp] = small[dy + R, dx + R]
    return np.fft.rfft2(k)


def _warp(img, scale, tx, ty, oversample=4):
    """Magnify ``img`` by ``scale`` about its centre and shift it by (tx, ty) pixels.

    ``scale`` may also be a 2x2 matrix: the linear part of an affine map about the centre.

    Resampling a sharp frame bilinearly blurs it by a varying amount (the fractional
    sample phase changes across the image), which a focus measure takes for defocus.
    To keep breathing a purely geometric change, the frame is upsampled ``oversample``
    times by band-limited (FFT) interpolation and sampled bilinearly there: close to
    ideal (sinc) resampling, and exact where a sample falls on a pixel.
    """
    H, W = img.shape[:2]
    f = int(oversample)
    if f > 1:
        F = np.fft.fftshift(np.fft.fft2(img, axes=(0, 1)), axes=(0, 1))
        ph, pw = (H * f - H) // 2, (W * f - W) // 2
        F = np.pad(F, ((ph, H * f - H - ph), (pw, W * f - W - pw), (0, 0)))
        big = np.fft.ifft2(np.fft.ifftshift(F, axes=(0, 1)), axes=(0, 1)).real * (f * f)
    else:
        big = img
    Hb, Wb = big.shape[:2]
    cy, cx = (H - 1) / 2.0, (W - 1) / 2.0
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    Li = np.linalg.inv(np.asarray(scale, np.float64) * np.eye(2) if np.ndim(scale) == 0 else np.asarray(scale))
    u, v = x - cx - tx, y - cy - ty
    sx = (Li[0, 0] * u + Li[0, 1] * v + cx) * f  # big[j] holds the image at pixel coordinate j / f
    sy = (Li[1, 0] * u + Li[1, 1] * v + cy) * f

    def wrap(i, n):  # the FFT interpolant is periodic
        return np.mod(i, n)

    y0 = np.floor(sy).astype(int)
    x0 = np.floor(sx).astype(int)
    fy = (sy - y0)[..., None]
    fx = (sx - x0)[..., None]
    y0r, y1r = wrap(y0, Hb), wrap(y0 + 1, Hb)
    x0r, x1r = wrap(x0, Wb), wrap(x0 + 1, Wb)
    return ((1 - fy) * ((1 - fx) * big[y0r, x0r] + fx * big[y0r, x1r])
            + fy * ((1 - fx) * big[y1r, x0r] + fx * big[y1r, x1r]))


def render_stack(shape="slant", texture="noise", size=(256, 256), n_frames=16,
                 blur_per_frame=1.0, max_blur=12.0, noise=0.0, bit_depth=8, breathing=0.0,
                 shift=0.0, layers_per_frame=8, seed=0, *, distort=0.0):
    """Render a focal stack and its ground truth.

    Parameters
    ----------
    shape : str
        Depth shape, one of :data:`SHAPES`.
    texture : str
        One of :data:`TEXTURES` or an image path.
    size : (H, W)
        Pixels.
    n_frames : int
        Number of frames N (>= 2).
    blur_per_frame : float
        Blur-circle radius in pixels per frame of defocus (the aperture).
    max_blur : float
        Largest blur radius, pixels.
    noise : float
        Sensor noise level (standard deviation at full-scale white, linear light).
    bit_depth : {8, 16}
    breathing, shift : float
        Per-frame magnification step and random shift std (pixels).
    distort : float
        Std of a random per-frame shear and vertical stretch, as a hand-held camera
        with a rolling shutter makes: the frame's linear map is ``[[s, e1], [0, s + e2]]``
        with ``e1, e2 ~ N(0, distort)``. ``meta["transforms"]`` then also holds each
        frame's 2x3 ``matrix`` (reference pixel -> frame pixel).
    layers_per_frame : int
        Depth layers per frame of depth range.
    seed : int

    Returns
    -------
    frames : list of ndarray (H, W, 3), uint8 or uint16
    gt_depth : ndarray (H, W) float32, frame units
    gt_allfocus : ndarray (H, W, 3), same dtype as frames
    meta : dict
    """
    if n_frames < 2:
        raise ValueError("n_frames must be >= 2")
    if bit_depth not in (8, 16):
        raise ValueError("bit_depth must be 8 or 16")
    H, W = size
    rng = np.random.default_rng(seed)
    g = depth_shape(shape, H, W, n_frames, rng)
    tex = make_texture(texture, H, W, rng, seed=seed)
    lin = srgb_to_linear(tex)

    acc = _defocus(g, lin, surface_segments(shape, H, W), n_frames, blur_per_frame, max_blur, layers_per_frame)
    maxv = 255 if bit_depth == 8 else 65535
    dtype = np.uint8 if bit_depth == 8 else np.uint16

    def encode(linimg):
        return np.round(linear_to_srgb(linimg) * maxv).astype(dtype)

    transforms = []
    frames = []
    for k in range(n_frames):
        img, tr = _camera(acc[k], k, n_frames, noise, breathing, shift, distort, rng)
        transforms.append(tr)
        frames.append(encode(img))
    meta = dict(generator="dffbatch.truth.synth", shape=shape, texture=str(texture), size=[H, W],
                n_frames=n_frames, blur_per_frame=blur_per_frame, max_blur=max_blur, noise=noise,
                bit_depth=bit_depth, breathing=breathing, shift=shift,
                layers_per_frame=layers_per_frame, seed=seed, transforms=transforms,
                depth_units="frame index of best focus (larger = nearer)")
    return frames, g.astype(np.float32), encode(lin), meta


def _defocus(g, lin, seg, n_frames, blur_per_frame, max_blur, layers_per_frame):
    """Linear-light frames (N, H, W, 3) of the texture ``lin`` on the depth ``g``: each
    surface segment, far to near, in depth layers, each layer blurred by its disk and
    composited over what lies behind it (occlusion edges blur as a lens blurs them)."""
    n, (H, W) = n_frames, g.shape
    pad = int(math.ceil(max_blur)) + 2
    Hp, Wp = H + 2 * pad, W + 2 * pad
    layer = np.round(g * layers_per_frame).astype(np.int64)
    order = sorted(np.unique(seg), key=lambda s_: g[seg == s_].mean())  # far to near
    acc = np.zeros((n, H, W, 3))
    otf_cache = {}
    for s_id in order:
        in_seg = seg == s_id
        seg_c = np.zeros((n, H, W, 3))
        seg_a = np.zeros((n, H, W, 1))
        for lid in np.unique(layer[in_seg]):
            gl = lid / layers_per_frame
            alpha = ((layer == lid) & in_seg).astype(np.float64)
            planes = np.concatenate([lin * alpha[:, :, None], alpha[:, :, None]], axis=2)
            planes = np.pad(planes, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
            F = np.fft.rfft2(planes, axes=(0, 1))
            for k in range(n):
                r = min(max_blur, blur_per_frame * abs(k - gl))
                key = round(r, 6)
                if key not in otf_cache:
                    otf_cache[key] = _disk_otf(r, (Hp, Wp))
                blurred = np.fft.irfft2(F * otf_cache[key][:, :, None], s=(Hp, Wp), axes=(0, 1))
                blurred = blurred[pad:pad + H, pad:pad + W]
                seg_c[k] += blurred[:, :, :3]
                seg_a[k] += blurred[:, :, 3:4]
        acc = acc * (1.0 - np.clip(seg_a, 0.0, 1.0)) + seg_c
    return acc


def _camera(img, k, n_frames, noise, breathing, shift, distort, rng):
    """Frame ``k`` as the camera records it: sensor noise, then breathing, shift and
    rolling-shutter shear about the middle frame; returns it (linear light) and its transform."""
    H, W = img.shape[:2]
    img = np.clip(img, 0.0, 1.0)
    if noise > 0:
        std = np.sqrt(noise ** 2 * img + (noise / 5.0) ** 2)
        img = np.clip(img + std * rng.standard_normal(img.shape), 0.0, 1.0)
    middle = (n_frames - 1) // 2
    s = 1.0 + breathing * (k - middle)
    tx = float(rng.normal(0, shift)) if shift > 0 and k != middle else 0.0
    ty = float(rng.normal(0, shift)) if shift > 0 and k != middle else 0.0
    L = np.eye(2) * s
    if distort > 0 and k != middle:
        L = L + np.array([[0.0, rng.normal(0, distort)], [0.0, rng.normal(0, distort)]])
    if (breathing != 0 or shift > 0 or distort > 0) and k != middle:
        img = _warp(img, L if distort > 0 else s, tx, ty)
    c = np.array([(W - 1) / 2.0, (H - 1) / 2.0])
    t = c + np.array([tx, ty]) - L @ c
    return img, {"frame": k, "scale": s, "tx": tx, "ty": ty,
                 "matrix": [[float(v) for v in row] for row in np.hstack([L, t[:, None]])]}


def write_stack(out_dir, frames, gt_depth, gt_allfocus, meta):
    """Write frames (``frame_00.png`` or ``.tif`` for 16-bit), ``gt_depth.tif``,
    ``gt_allfocus.png`` (``.tif`` for 16-bit) and ``meta.json`` into ``out_dir``."""
    import imageio.v3 as iio
    import tifffile

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    width = max(2, len(str(len(frames) - 1)))
    sixteen = frames[0].dtype == np.uint16
    for k, f in enumerate(frames):
        name = out / f"frame_{k:0{width}d}.{'tif' if sixteen else 'png'}"
        if sixteen:
            tifffile.imwrite(name, f, photometric="rgb")
        else:
            iio.imwrite(name, f)
    tifffile.imwrite(out / "gt_depth.tif", gt_depth)
    if sixteen:
        tifffile.imwrite(out / "gt_allfocus.tif", gt_allfocus, photometric="rgb")
    else:
        iio.imwrite(out / "gt_allfocus.png", gt_allfocus)
    (out / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out
