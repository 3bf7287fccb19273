"""Accuracy against ground truth: depth errors and all-in-focus fidelity.

Depth metrics ignore a border of ``border`` pixels (default 8, where every window
reaches outside the image). ``*_affine`` variants first fit ``a*pred + b`` to the
truth by least squares, for tools whose depth scale or direction differs.
SSIM is the standard one (Wang et al. 2004; Gaussian window sigma 1.5, K1=0.01,
K2=0.03) on luminance, implemented here in NumPy (no extra dependency).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["depth_metrics", "psnr", "ssim", "image_metrics", "sparsification", "ause", "edge_band", "band_psnr",
           "BAND_RADIUS"]

#: Half width of the band around depth jumps where occlusion halos live (pixels).
BAND_RADIUS = 30


def _inner(a, border):
    return a[border:a.shape[0] - border, border:a.shape[1] - border] if border else a


def depth_metrics(pred, gt, border=8) -> dict:
    """RMSE, MAE and share of pixels off by > 1 frame, raw and after an affine fit."""
    p = _inner(np.asarray(pred, np.float64), border).ravel()
    g = _inner(np.asarray(gt, np.float64), border).ravel()
    out = {}
    A = np.stack([p, np.ones_like(p)], 1)
    coef, *_ = np.linalg.lstsq(A, g, rcond=None)
    for tag, q in (("", p), ("_affine", A @ coef)):
        e = q - g
        out["rmse" + tag] = float(np.sqrt(np.mean(e ** 2)))
        out["mae" + tag] = float(np.mean(np.abs(e)))
        out["bad1" + tag] = float(np.mean(np.abs(e) > 1.0))
    return out


def _max_value(a):
    return 255.0 if a.dtype == np.uint8 else 65535.0 if a.dtype == np.uint16 else 1.0


def psnr(pred, gt) -> float:
    """PSNR in dB against ``gt`` (peak: the dtype's maximum, 1.0 for floats)."""
    mse = np.mean((np.asarray(pred, np.float64) - np.asarray(gt, np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * math.log10(_max_value(np.asarray(gt)) ** 2 / mse))


def _gauss_filter(img, sigma=1.5, radius=5):
    x = np.arange(-radius, radius + 1)
    k = np.exp(-x ** 2 / (2 * sigma ** 2))
    k /= k.sum()
    out = img
    for ax in (0, 1):
        pad = [(radius, radius) if a == ax else (0, 0) for a in range(2)]
        P = np.pad(out, pad, mode="reflect")
        out = sum(k[i] * np.take(P, range(i, i + img.shape[ax]), axis=ax) for i in range(2 * radius + 1))
    return out


def ssim(pred, gt) -> float:
    """Mean SSIM on luminance (Rec. 601), values scaled to [0, 1]."""
    def lum(a):
        a = np.asarray(a, np.float64) / _max_value(np.asarray(gt))
        return a @ np.array([0.299, 0.587, 0.114]) if a.ndim == 3 and a.shape[2] >= 3 else a.reshape(a.shape[:2])
    x, y = lum(pred), lum(gt)
    C1, C2 = 0.01 ** 2, 0.03 ** 2
    mx, my = _gauss_filter(x), _gauss_filter(y)
    sxx = _gauss_filter(x * x) - mx * mx
    syy = _gauss_filter(y * y) - my * my
    sxy = _gauss_filter(x * y) - mx * my
    s = ((2 * mx * my + C1) * (2 * sxy + C2)) / ((mx ** 2 + my ** 2 + C1) * (sxx + syy + C2))
    return float(s.mean())


def edge_band(gt_depth, radius: int = BAND_RADIUS, jump: float = 1.0) -> np.ndarray:
    """Pixels within ``radius`` px (Chebyshev distance) of a depth jump: two neighbouring
    pixels of ``gt_depth`` whose depths differ by more than ``jump`` frames. bool (H, W);
    all False where the depth has no jump."""
    g = np.asarray(gt_depth, np.float64)
    edge = np.zeros(g.shape, bool)
    dy = np.abs(np.diff(g, axis=0)) > jump
    dx = np.abs(np.diff(g, axis=1)) > jump
    edge[:-1] |= dy
    edge[1:] |= dy
    edge[:, :-1] |= dx
    edge[:, 1:] |= dx
    for axis in (0, 1):  # a square dilation as two running maxima
        c = np.cumsum(np.moveaxis(edge, axis, 0), axis=0, dtype=np.int64)
        c = np.concatenate([np.zeros((1,) + c.shape[1:], np.int64), c])
        n = c.shape[0] - 1
        i = np.arange(n)
        lo, hi = np.clip(i - radius, 0, n), np.clip(i + radius + 1, 0, n)
        edge = np.moveaxis((c[hi] - c[lo]) > 0, 0, axis)
    return edge


def band_psnr(pred, gt, gt_depth, radius: int = BAND_RADIUS) -> float:
    """PSNR (dB) of the all-in-focus image within ``radius`` px of the depth jumps of
    ``gt_depth`` (:func:`edge_band`), where occlusion halos and seams live; NaN without jumps."""
    band = edge_band(gt_depth, radius)
    if not band.any():
        return float("nan")
    p, g = np.asarray(pred, np.float64)[band], np.asarray(gt, np.float64)[band]
    mse = np.mean((p - g) ** 2)
    return float("inf") if mse == 0 else float(10 * math.log10(_max_value(np.asarray(gt)) ** 2 / mse))


def image_metrics(pred, gt, gt_depth=None) -> dict:
    """All-in-focus PSNR and SSIM, and with ``gt_depth`` that has depth jumps, the PSNR
    in the band around them (``aif_band_psnr``, :func:`band_psnr`)."""
    out = {"aif_psnr": psnr(pred, gt), "aif_ssim": ssim(pred, gt)}
    if gt_depth is not None and np.shape(gt_depth) == np.shape(pred)[:2]:
        b = band_psnr(pred, gt, gt_depth)
        if math.isfinite(b):
            out["aif_band_psnr"] = b
    return out


def sparsification(error, confidence, fractions=np.linspace(0.0, 0.99, 100), border=8):
    """Sparsification curves of a confidence map (Ilg et al. 2018).

    Pixels are removed in order of increasing ``confidence`` (least confident first);
    after removing each fraction, the RMSE of the remaining ``error`` is taken. The
    oracle removes the largest errors first. Ties are removed in pixel order.

    Returns
    -------
    curve, oracle : ndarray (len(fractions),)
        RMSE of the kept pixels, in the units of ``error``.
    """
    e2 = _inner(np.asarray(error, np.float64), border).ravel() ** 2
    c = _inner(np.asarray(confidence, np.float64), border).ravel()
    n = e2.size

    def curve(order):
        tail = np.cumsum(e2[order][::-1])[::-1]  # sum of the errors kept after removing i pixels
        i = np.minimum((np.asarray(fractions) * n).astype(int), n - 1)
        return np.sqrt(tail[i] / (n - i))
    return curve(np.argsort(c, kind="stable")), curve(np.argsort(-e2, kind="stable"))


def ause(error, confidence, border=8) -> float:
    """Area Under the Sparsification Error: the mean gap between the confidence's
    sparsification curve and the oracle's over removed fractions 0..0.99 (0 = it ranks
    errors perfectly; the units of ``error``)."""
    fr = np.linspace(0.0, 0.99, 100)
    s, o = sparsification(error, confidence, fr, border)
    return float(np.trapezoid(s - o, fr) / (fr[-1] - fr[0]))
