"""Stage *solve*: a global, edge-aware, confidence-weighted depth solve (Numba kernels).

The depth ``u`` minimises the weighted least-squares energy

    E(u) = sum_p w_p (u_p - d_p)^2 + lam * sum_{p~q} a_pq (u_p - u_q)^2

over the 4-neighbour pairs ``p~q``: ``d`` is the measured (raw) depth, ``w`` its
evidence weight in [0, 1] and ``a_pq = exp(-(g_p - g_q)^2 / (2 sigma^2))`` the
affinity of neighbours in the guide image ``g`` (luminance of the all-in-focus image,
in [0, 1]). Depth flows into pixels without evidence (``w`` = 0) from confident
neighbours along image structure, stays as measured where ``w >> lam`` and keeps its
discontinuities where the guide has edges.

The solver is the Fast Global Smoother of Min et al., "Fast Global Image Smoothing
Based on Weighted Least Squares", IEEE TIP 23 (2014), used as a normalised
(confidence-weighted) filter: ``S(w d) / S(w)``, where ``S`` runs ``iterations``
rounds of 1-D tridiagonal solves of ``(I + lam_t L) x = b`` along every row and then
every column (``lam_t = 1.5 lam 4^(T-t) / (4^T - 1)`` as in the paper). That spreads
evidence across whole regions in O(H*W) time and memory. On the renderer's suites it
is also *more accurate* than the exact minimiser of E (sparse direct solve) with the
same weights, whose data term holds weak, noisy pixels to their values: see
``benchmarks/bench_solve.py``.

Every kernel works in float32 on C-contiguous (H, W) maps and writes each output
element from one thread in a fixed order, so results are the same bytes for any
number of Numba threads.
"""
from __future__ import annotations


import numpy as np
from numba import njit, prange

from .kernels import JIT, JIT_DIV, LUT_SIZE, kernel, range_table

__all__ = ["affinities", "fgs_normalized", "wls_solve"]

_MIN_CHUNK = 64  # narrowest band of columns a thread solves


def _col_chunk(W):
    """Band width for the column solves: the columns shared evenly by Numba's threads."""
    import numba
    n = max(1, numba.get_num_threads())
    return max(_MIN_CHUNK, -(-W // n))




@kernel(**JIT)
def affinities(g, sigma, ax, ay):
    """Neighbour affinities of the guide ``g``: ``ax[y, x]`` links (y, x)-(y, x+1), ``ay[y, x]`` (y, x)-(y+1, x).

    ``exp(-dg^2 / (2 sigma^2))`` looked up in a 1024-entry table over ``|dg| < 4 sigma``
    (beyond: 0). The last column of ``ax`` and the last row of ``ay`` are 0 (no neighbour).
    """
    H, W = g.shape
    lut, step = range_table(sigma)
    inv = np.float32(1.0 / step)
    top = np.float32(LUT_SIZE)
    for y in prange(H):
        gy = g[y]
        axy = ax[y]
        for x in range(W - 1):
            axy[x] = lut[int(min(abs(gy[x + 1] - gy[x]) * inv, top))]
        axy[W - 1] = 0.0
        ayy = ay[y]
        if y < H - 1:
            gn = g[y + 1]
            for x in range(W):
                ayy[x] = lut[int(min(abs(gn[x] - gy[x]) * inv, top))]
        else:
            for x in range(W):
                ayy[x] = 0.0


@kernel(**JIT_DIV)
def _smooth_rows(u, v, ax, lam, scratch):
    """Solve ``(I + lam L_row) x = b`` in place along every row, for ``b`` = u and = v (Thomas).

    Each task runs the recurrences of 6 rows side by side, which hides the latency of
    their divisions (6 rows: 1.32 ms a 1080^2 call on 2 threads, against 1.56 for 4 and
    1.44 for 8); the last rows (H mod 6) reuse it with repeated rows masked out.
    """
    H, W = u.shape
    one = np.float32(1.0)
    zero = np.float32(0.0)
    for i in prange((H + 5) // 6):
        y0 = 6 * i
        ya, yb, yc = y0, min(y0 + 1, H - 1), min(y0 + 2, H - 1)
        yd, ye, yf = min(y0 + 3, H - 1), min(y0 + 4, H - 1), min(y0 + 5, H - 1)
        ua, ub, uc, ud, ue, uf = u[ya], u[yb], u[yc], u[yd], u[ye], u[yf]
        va, vb, vc, vd, ve, vf = v[ya], v[yb], v[yc], v[yd], v[ye], v[yf]
        aa, ab, ac, ad, ae, af = ax[ya], ax[yb], ax[yc], ax[yd], ax[ye], ax[yf]
        sa, sb, sc, sd, se, sf = scratch[ya], scratch[yb], scratch[yc], scratch[yd], scratch[ye], scratch[yf]
        # repeated rows (past the end) are solved into their own copies: no write-back race
        if yf == ye and y0 + 5 >= H:
            uf, vf, sf = uf.copy(), vf.copy(), sf.copy()
        if ye == yd and y0 + 4 >= H:
            ue, ve, se = ue.copy(), ve.copy(), se.copy()
        if yd == yc and y0 + 3 >= H:
            ud, vd, sd = ud.copy(), vd.copy(), sd.copy()
        if yc == yb and y0 + 2 >= H:
            uc, vc, sc = uc.copy(), vc.copy(), sc.copy()
        if yb == ya and y0 + 1 >= H:
            ub, vb, sb = ub.copy(), vb.copy(), sb.copy()
        la = lb = lc = ld = le = lf = zero
        pa = pb = pc = pd = pe = pf = zero
        pua = pub = puc = pud = pue = puf = zero
        pva = pvb = pvc = pvd = pve = pvf = zero
        for x in range(W):
            ca, cb, cc = -lam * aa[x], -lam * ab[x], -lam * ac[x]
            cd, ce, cf = -lam * ad[x], -lam * ae[x], -lam * af[x]
            ma = one / (one - la - ca - la * pa)
            mb = one / (one - lb - cb - lb * pb)
            mc = one / (one - lc - cc - lc * pc)
            md = one / (one - ld - cd - ld * pd)
            me = one / (one - le - ce - le * pe)
            mf = one / (one - lf - cf - lf * pf)
            pa, pb, pc, pd, pe, pf = ca * ma, cb * mb, cc * mc, cd * md, ce * me, cf * mf
            sa[x], sb[x], sc[x], sd[x], se[x], sf[x] = pa, pb, pc, pd, pe, pf
            pua = (ua[x] - la * pua) * ma
            pub = (ub[x] - lb * pub) * mb
            puc = (uc[x] - lc * puc) * mc
            pud = (ud[x] - ld * pud) * md
            pue = (ue[x] - le * pue) * me
            puf = (uf[x] - lf * puf) * mf
            pva = (va[x] - la * pva) * ma
            pvb = (vb[x] - lb * pvb) * mb
            pvc = (vc[x] - lc * pvc) * mc
            pvd = (vd[x] - ld * pvd) * md
            pve = (ve[x] - le * pve) * me
            pvf = (vf[x] - lf * pvf) * mf
            ua[x], ub[x], uc[x], ud[x], ue[x], uf[x] = pua, pub, puc, pud, pue, puf
            va[x], vb[x], vc[x], vd[x], ve[x], vf[x] = pva, pvb, pvc, pvd, pve, pvf
            la, lb, lc, ld, le, lf = ca, cb, cc, cd, ce, cf  # the next pixel's sub-diagonal: -lam * link to the left
        for x in range(W - 2, -1, -1):
            ua[x] -= sa[x] * ua[x + 1]
            ub[x] -= sb[x] * ub[x + 1]
            uc[x] -= sc[x] * uc[x + 1]
            ud[x] -= sd[x] * ud[x + 1]
            ue[x] -= se[x] * ue[x + 1]
            uf[x] -= sf[x] * uf[x + 1]
            va[x] -= sa[x] * va[x + 1]
            vb[x] -= sb[x] * vb[x + 1]
            vc[x] -= sc[x] * vc[x + 1]
            vd[x] -= sd[x] * vd[x + 1]
            ve[x] -= se[x] * ve[x + 1]
            vf[x] -= sf[x] * vf[x + 1]


@kernel(**JIT_DIV)
def _smooth_cols(u, v, ay, lam, scratch, chunk):
    """Solve ``(I + lam L_col) x = b`` in place along every column, for ``b`` = u and = v.

    Columns are split into ``chunk``-wide bands, one per thread, each swept row by row
    (streaming through memory; every column's arithmetic is the same whatever the band).
    """
    H, W = u.shape
    n_chunks = (W + chunk - 1) // chunk
    one = np.float32(1.0)
    for ch in prange(n_chunks):
        x0 = ch * chunk
        x1 = min(W, x0 + chunk)
        # row views of the band (the loops over x then vectorise): row 0 has no row above
        c0, s0, u0, v0 = ay[0, x0:x1], scratch[0, x0:x1], u[0, x0:x1], v[0, x0:x1]
        for x in range(x1 - x0):
            c = -lam * c0[x]
            im = one / (one - c)
            s0[x] = c * im
            u0[x] = u0[x] * im
            v0[x] = v0[x] * im
        for y in range(1, H):
            up, cy = ay[y - 1, x0:x1], ay[y, x0:x1]
            sp, sy = scratch[y - 1, x0:x1], scratch[y, x0:x1]
            pu, uy, pv, vy = u[y - 1, x0:x1], u[y, x0:x1], v[y - 1, x0:x1], v[y, x0:x1]
            for x in range(x1 - x0):
                c = -lam * cy[x]
                a = -lam * up[x]
                im = one / (one - a - c - a * sp[x])
                sy[x] = c * im
                uy[x] = (uy[x] - a * pu[x]) * im
                vy[x] = (vy[x] - a * pv[x]) * im
        for y in range(H - 2, -1, -1):
            sy, uy, un, vy, vn = scratch[y, x0:x1], u[y, x0:x1], u[y + 1, x0:x1], v[y, x0:x1], v[y + 1, x0:x1]
            for x in range(x1 - x0):
                uy[x] -= sy[x] * un[x]
                vy[x] -= sy[x] * vn[x]


@kernel(**JIT)
def _weighted_data(d, w, wd, ww):
    H, W = d.shape
    for y in prange(H):
        for x in range(W):
            ww[y, x] = w[y, x]
            wd[y, x] = w[y, x] * d[y, x]


@kernel(**JIT_DIV)
def _normalise(wd, ww, d, eps, out):
    H, W = d.shape
    for y in prange(H):
        for x in range(W):
            s = ww[y, x]
            out[y, x] = wd[y, x] / s if s > eps else d[y, x]


def fgs_normalized(depth, weight, ax, ay, lam, iterations=3, eps=1e-6):
    """Confidence-weighted Fast Global Smoother: ``S(w d) / S(w)`` (Min et al. 2014).

    Parameters
    ----------
    depth, weight : ndarray (H, W) float32
        Data and its weight (>= 0).
    ax, ay : ndarray (H, W) float32
        Neighbour affinities from :func:`affinities`.
    lam : float
        Smoothness (the spatial reach grows as ``sqrt(lam)`` pixels).
    iterations : int
        Rounds of row-then-column solves; ``lam_t = 1.5 lam 4^(T-t) / (4^T - 1)``.

    Returns
    -------
    smoothed : ndarray (H, W) float32
    support : ndarray (H, W) float32
        ``S(w)``: the weight that reached each pixel.
    """
    H, W = depth.shape
    wd = np.empty((H, W), np.float32)
    ww = np.empty((H, W), np.float32)
    scratch = np.empty((H, W), np.float32)
    _weighted_data(depth, weight, wd, ww)
    T = int(iterations)
    chunk = _col_chunk(W)
    for t in range(1, T + 1):
        lam_t = np.float32(1.5 * lam * 4.0 ** (T - t) / (4.0 ** T - 1.0))
        _smooth_rows(wd, ww, ax, lam_t, scratch)
        _smooth_cols(wd, ww, ay, lam_t, scratch, chunk)
    out = np.empty((H, W), np.float32)
    _normalise(wd, ww, depth, np.float32(eps), out)
    return out, ww


def wls_solve(depth, weight, guide, lam=100.0, sigma=0.03, iterations=3):
    """Confidence-weighted, edge-aware global smoothing of a depth map.

    Parameters
    ----------
    depth : ndarray (H, W)
        Measured depth (any unit; frames in dffbatch).
    weight : ndarray (H, W)
        Evidence of each pixel, >= 0 (0: no evidence, the pixel is filled).
    guide : ndarray (H, W)
        Guide image in [0, 1]; smoothing stops at its edges.
    lam : float
        Smoothness lambda of the FGS; its reach is about ``sqrt(lam)`` pixels per pass.
    sigma : float
        Edge sensitivity: guide steps much larger than ``sigma`` stop the smoothing.
    iterations : int
        FGS rounds (rows then columns each).

    Returns
    -------
    depth : ndarray (H, W) float32
    support : ndarray (H, W) float32
        The evidence that reached each pixel (``S(w)``).
    """
    for name, value, ok in (("lam", lam, lambda v: v >= 0), ("sigma", sigma, lambda v: v > 0)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
                or not np.isfinite(value) or not ok(value):
            raise ValueError(f"{name} must be a finite number {'>= 0' if name == 'lam' else '> 0'}, got {value!r}")
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 1:
        raise ValueError(f"iterations must be an integer >= 1, got {iterations!r}")
    d = np.ascontiguousarray(depth, np.float32)
    w = np.ascontiguousarray(weight, np.float32)
    g = np.ascontiguousarray(guide, np.float32)
    if d.ndim != 2 or w.shape != d.shape or g.shape != d.shape:
        raise ValueError(f"depth, weight and guide must be 2-D maps of one shape, got {d.shape}, {w.shape}, {g.shape}")
    if not (np.isfinite(w).all() and (w >= 0).all()):
        raise ValueError("weight must be finite and >= 0")
    ax = np.empty_like(d)
    ay = np.empty_like(d)
    affinities(g, np.float32(sigma), ax, ay)
    return fgs_normalized(d, w, ax, ay, lam, iterations)
