"""Plain NumPy references for every kernel (float64, written for clarity, not speed)."""
import numpy as np

LUMA = (0.299, 0.587, 0.114)


def luminance(frame):
    f = frame.astype(np.float64)
    scale = {np.dtype(np.uint8): 1 / 255, np.dtype(np.uint16): 1 / 65535}.get(frame.dtype, 1.0)
    if f.ndim == 3 and f.shape[2] >= 3:
        f = f[..., 0] * LUMA[0] + f[..., 1] * LUMA[1] + f[..., 2] * LUMA[2]
    elif f.ndim == 3:
        f = f[..., 0]
    return f * scale


def shifted(img, dy, dx, pad):
    """img[y+dy, x+dx] with reflected borders."""
    P = np.pad(img, pad, mode="reflect")
    H, W = img.shape
    return P[pad + dy:pad + dy + H, pad + dx:pad + dx + W]


def window_sum(q, window):
    r = window // 2
    P = np.pad(q, r, mode="reflect")
    H, W = q.shape
    out = np.zeros_like(q, dtype=np.float64)
    for dy in range(window):
        for dx in range(window):
            out += P[dy:dy + H, dx:dx + W]
    return out


def window_var(q, window):
    n = window * window
    m = window_sum(q, window) / n
    return np.maximum(window_sum(q * q, window) / n - m * m, 0)


def per_pixel(I, measure, step=1, threshold=0.0):
    s = lambda dy, dx: shifted(I, dy, dx, max(step, 2))  # noqa: E731
    if measure == "sml":
        v = np.abs(2 * I - s(0, -step) - s(0, step)) + np.abs(2 * I - s(-step, 0) - s(step, 0))
        return np.where(v >= threshold, v, 0.0)
    lap = s(-1, 0) + s(1, 0) + s(0, -1) + s(0, 1) - 4 * I
    if measure in ("lape", "lapv"):
        return lap ** 2 if measure == "lape" else lap
    if measure == "lapd":
        return (np.abs(2 * I - s(0, -1) - s(0, 1)) + np.abs(2 * I - s(-1, 0) - s(1, 0))
                + (np.abs(2 * I - s(-1, -1) - s(1, 1)) + np.abs(2 * I - s(-1, 1) - s(1, -1))) / np.sqrt(2))
    if measure in ("teng", "tenv"):
        gx = s(-1, 1) + 2 * s(0, 1) + s(1, 1) - s(-1, -1) - 2 * s(0, -1) - s(1, -1)
        gy = s(1, -1) + 2 * s(1, 0) + s(1, 1) - s(-1, -1) - 2 * s(-1, 0) - s(-1, 1)
        return gx ** 2 + gy ** 2 if measure == "teng" else np.sqrt(gx ** 2 + gy ** 2)
    if measure == "glva":
        return I
    if measure == "wavs":
        a, b, c, d = I, s(0, 1), s(1, 0), s(1, 1)
        return 0.5 * (np.abs(a + b - c - d) + np.abs(a - b + c - d) + np.abs(a - b - c + d))
    raise ValueError(measure)


def focus_measure(frame, measure, window, step=1, threshold=0.0):
    q = per_pixel(luminance(frame), measure, step, threshold)
    if measure == "sml":
        return window_sum(q, window)
    if measure in ("lapv", "tenv", "glva"):
        return window_var(q, window)
    return window_sum(q, window) / window ** 2


def depth(F, interpolation="gaussian"):
    """Reference depth/confidence from a full focus volume F (N, H, W)."""
    N = F.shape[0]
    best = np.argmax(F, axis=0)  # first maximum = lowest index on ties
    f0 = np.take_along_axis(F, best[None], 0)[0]
    fm = np.take_along_axis(F, np.clip(best - 1, 0, N - 1)[None], 0)[0]
    fp = np.take_along_axis(F, np.clip(best + 1, 0, N - 1)[None], 0)[0]
    with np.errstate(all="ignore"):
        if interpolation == "gaussian":
            lm, l0, lp = np.log(np.maximum(fm, 1e-30)), np.log(np.maximum(f0, 1e-30)), np.log(np.maximum(fp, 1e-30))
        else:
            lm, l0, lp = fm, f0, fp
        den = lm - 2 * l0 + lp
        off = np.where(den < 0, 0.5 * (lm - lp) / den, 0.0)
    off = np.clip(np.nan_to_num(off), -0.5, 0.5)
    ok = (best > 0) & (best < N - 1) & (f0 > 0)
    if interpolation == "none":
        ok[:] = False
    d = np.clip(best + np.where(ok, off, 0.0), 0, N - 1)
    with np.errstate(all="ignore"):
        conf = np.where(f0 > 0, (f0 - F.mean(axis=0)) / f0, 0.0)
    return d, best, conf


def median(img, size):
    if size <= 1:
        return img.copy()
    r = size // 2
    P = np.pad(img, r, mode="reflect")
    win = np.lib.stride_tricks.sliding_window_view(P, (size, size))
    return np.median(win.reshape(*img.shape, -1), axis=-1)


def nearest_sample(frame, M, shape):
    """Frame (Hf, Wf, C) sampled at the pixel nearest to M @ (x, y, 1) for every output
    pixel of ``shape`` (H, W); indices clamped to the frame."""
    H, W = shape
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    sx = M[0, 0] * x + M[0, 1] * y + M[0, 2]
    sy = M[1, 0] * x + M[1, 1] * y + M[1, 2]
    ix = np.clip(np.floor(sx + 0.5).astype(int), 0, frame.shape[1] - 1)
    iy = np.clip(np.floor(sy + 0.5).astype(int), 0, frame.shape[0] - 1)
    return frame[iy, ix]


def lanczos_sample(frame, M, shape):
    """Frame (Hf, Wf, C) sampled at M @ (x, y, 1) by Lanczos-3 (6 x 6 taps, weights
    normalised) for every output pixel of ``shape`` (H, W); indices clamped to the frame;
    integer data rounded and clipped to the dtype's range. Plain loops, in the kernel's order.
    The kernel tabulates the weights at 1/1024 px: the offset within the pixel is rounded
    to that step here too."""
    import math
    H, W = shape
    Hf, Wf, C = frame.shape
    top = float(np.iinfo(frame.dtype).max) if frame.dtype.kind in "ui" else None

    def weights(t):
        w = []
        for i in range(6):
            d = t - (i - 2)
            w.append(1.0 if d == 0 else 0.0 if abs(d) >= 3 else
                     3.0 * math.sin(math.pi * d) * math.sin(math.pi * d / 3.0) / (math.pi * d) ** 2)
        s = sum(w)
        return [v / s for v in w]
    out = np.zeros((H, W, C), frame.dtype)
    for y in range(H):
        for x in range(W):
            sx = M[0, 0] * x + M[0, 1] * y + M[0, 2]
            sy = M[1, 0] * x + M[1, 1] * y + M[1, 2]
            x0, y0 = math.floor(sx), math.floor(sy)
            tx, ty = math.floor((sx - x0) * 1024 + 0.5) / 1024, math.floor((sy - y0) * 1024 + 0.5) / 1024
            wx, wy = weights(tx), weights(ty)
            for c in range(C):
                v = 0.0
                for j in range(6):
                    yy = min(max(y0 - 2 + j, 0), Hf - 1)
                    row = 0.0
                    for i in range(6):
                        row += wx[i] * float(frame[yy, min(max(x0 - 2 + i, 0), Wf - 1), c])
                    v += wy[j] * row
                out[y, x, c] = min(max(math.floor(v + 0.5), 0.0), top) if top is not None else v
    return out


# --------------------------------------------------------- pyramids (hybrid composite)
_K32 = (np.float32(1 / 16), np.float32(4 / 16), np.float32(6 / 16))


def blur32(a):
    """The binomial blur of dffbatch.stages.fusion._blur, in float32 (rows, then columns)."""
    k0, k1, k2 = _K32
    for ax in (0, 1):
        n = a.shape[ax]
        pad = [(2, 2) if i == ax else (0, 0) for i in range(a.ndim)]
        p = np.pad(a, pad, mode="reflect")
        tap = [np.take(p, range(i, i + n), axis=ax) for i in range(5)]
        a = (tap[0] + tap[4]) * k0 + (tap[1] + tap[3]) * k1 + tap[2] * k2
    return a


def pyr_down32(a):
    return blur32(np.asarray(a, np.float32))[::2, ::2]


def pyr_up32(a, shape):
    out = np.zeros((shape[0], shape[1]) + a.shape[2:], np.float32)
    out[::2, ::2] = a
    return blur32(out) * np.float32(4.0)


def hybrid(frames, raw, best, focus, fused, p=4, eps=1e-6, lo=2.0, hi=4.0):
    """The hybrid all-in-focus image from whole arrays: level 0 the interpolate blend of
    each frame's Laplacian, levels 1 .. ``fused`` fused with weights (G_l F + eps)^p
    where the weights are decisive (``a``: 0 to 1 as n max(w) / sum(w) goes from
    ``lo`` to ``hi``) and the same level of the (rounded) interpolate image's pyramid
    where not, the levels above them that pyramid's. Returns the interpolate image and
    the hybrid one less it (add it to the rounded interpolate image, as the kernels
    do), float64."""
    lo_ = np.floor(raw.astype(np.float64))
    t = raw - lo_
    low = lo_ < best
    acc, wsum, wmax, low_interp, interp = {}, {}, {}, 0.0, 0.0
    for k, (f, F) in enumerate(zip(frames, focus)):
        f3 = f[:, :, None] if f.ndim == 2 else f
        g = [f3.astype(np.float32)]
        s = [F.astype(np.float32)[:, :, None]]
        for _ in range(fused + 1):
            g.append(pyr_down32(g[-1]))
            s.append(pyr_down32(s[-1]))
        wk = np.where(low, np.where(k == best - 1, 1 - t, 0) + np.where(k == best, t, 0),
                      np.where(k == best, 1 - t, 0) + np.where(k == best + 1, t, 0))[:, :, None]
        low_interp = low_interp + wk * pyr_up32(g[1], g[0].shape[:2]).astype(np.float64)
        interp = interp + wk * f3.astype(np.float64)
        for lv in range(1, fused + 1):
            w = (s[lv][:, :, 0] + np.float32(eps)) ** p
            acc[lv] = acc.get(lv, 0) + w[:, :, None] * (g[lv] - pyr_up32(g[lv + 1], g[lv].shape[:2]))
            wsum[lv] = wsum.get(lv, 0) + w
            wmax[lv] = np.maximum(wmax.get(lv, 0), w)
    top = np.iinfo(frames[0].dtype).max
    own = [np.clip(np.floor(interp + 0.5), 0, top).astype(np.float32)]  # the rounded interpolate image
    for _ in range(fused + 1):
        own.append(pyr_down32(own[-1]))
    img = own[fused + 1]
    n = len(frames)
    for lv in range(fused, 0, -1):
        level = acc[lv] / wsum[lv][:, :, None]
        a = np.clip((n * wmax[lv] / wsum[lv] - lo) / (hi - lo), 0, 1)[:, :, None]
        mine = own[lv] - pyr_up32(own[lv + 1], own[lv].shape[:2])
        img = pyr_up32(img, level.shape[:2]) + a * level + (1 - a) * mine
    return interp, pyr_up32(img, raw.shape) - low_interp


def hybrid_guide(g, base, t0, t1):
    """The depth solve's guide of a hybrid image: its luminance ``g`` where the low-pass
    of ``|g - base|`` (EXPAND(REDUCE)) is above ``t1``, ``base`` below ``t0``, linear between."""
    d = np.abs(g.astype(np.float32) - base.astype(np.float32))[:, :, None]
    spread = pyr_up32(pyr_down32(d), d.shape[:2])[:, :, 0]
    a = np.clip((spread - t0) / (t1 - t0), 0, 1)
    return base + a * (g - base)


# --------------------------------------------------------- calibrated confidence
def confidence_features(fbest, fsecond, fsum, best, n, tau, root, depth, raw, conf, block=8, cap=3.0):
    """The features of dffbatch.stages.confidence, float64 (8, H, W), from whole arrays;
    ``root`` 2: ratios of focus values as square roots (measures of squared quantities)."""
    f0 = fbest.astype(np.float64)
    q = np.where(f0 > 0, np.minimum(fsecond / np.where(f0 > 0, f0, 1), 1), 1.0)
    r = 1 - (np.sqrt(q) if root == 2 else q)
    a = np.maximum(f0 - fsum / n, 0)
    e = r * r * a * a / (a * a + tau * tau)
    H, W = f0.shape
    Hc, Wc = -(-H // block), -(-W // block)
    bm = np.array([[e[i * block:(i + 1) * block, j * block:(j + 1) * block].mean() for j in range(Wc)]
                   for i in range(Hc)])
    near, far = np.empty((H, W)), np.empty((H, W))
    for y in range(H):
        for x in range(W):
            yc, xc = y // block, x // block
            near[y, x] = bm[max(yc - 1, 0):yc + 2, max(xc - 1, 0):xc + 2].mean()
            far[y, x] = bm[max(yc - 4, 0):yc + 5, max(xc - 4, 0):xc + 5].mean()
    end = ((best == 0) | (best == n - 1)).astype(np.float64)
    moved = np.minimum(np.abs(depth.astype(np.float64) - raw), cap)
    c = np.clip(conf.astype(np.float64), 0, 1)
    prior = np.log(0.01 + (1 - np.sqrt(1 - c) if root == 2 else c))
    return np.stack([r, np.log1p(a / tau), end, np.log(0.01 + e), np.log(0.01 + near), np.log(0.01 + far), moved,
                     prior])


def fill_blend(depth, fill, p, p0, power):
    """The fill stage's weights and mix: each pixel keeps its depth in the share ``w``."""
    w = np.clip((p.astype(np.float64) - p0) / (1 - p0), 0, 1) ** power
    return w, w * depth + (1 - w) * fill
