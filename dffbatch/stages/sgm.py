"""Global depth: semi-global aggregation (Hirschmueller's SGM) of the focus cost volume.

Opt-in (``params.refine: sgm``): unlike the streaming path it keeps the whole focus
volume, H x W x N float32, twice (cost and aggregated cost): ``8 * H * W * N`` bytes,
e.g. 112 MB for 12 frames of 1080 x 1080, 930 MB for 100. :func:`sgm_memory` gives the
figure; the core checks it against the available memory before the volume grows past
it and stops with a clear error instead of being killed.

Cost ``C(p, d) = 1 - F(p, d) / max_d F(p, d)`` (0 at the sharpest frame). Four paths
(left, right, up, down) aggregate ``L(p, d) = C(p, d) + min(L(q, d), L(q, d +- 1) + P1,
min_k L(q, k) + P2') - min_k L(q, k)`` with ``q`` the previous pixel on the path and
``P2' = max(P1, P2 * exp(-|I(p) - I(q)| / 0.05))`` lowered across edges of the
all-in-focus luminance ``I``, so depth may jump where the image does. Depth is the
arg-min of the summed paths refined by a parabola; confidence is the uniqueness of
that minimum, ``(S2 - S1) / S2`` with ``S2`` the best cost two or more frames away.

In ``depth_from_focus`` the result then goes through the same confidence-weighted
joint bilateral filter as ``refine: bilateral`` (which updates the confidence again)
and the median filter.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .base import FrameStage
from .kernels import JIT, kernel

__all__ = ["sgm", "sgm_memory", "KeepVolume"]


def sgm_memory(H, W, N) -> int:
    """Bytes of the volumes SGM holds for N frames of H x W."""
    return 8 * H * W * N


@njit(cache=True, inline="always")
def _step(C, prev, cur, P1, P2):
    N = C.shape[0]
    m = np.float32(1e30)
    for d in range(N):
        if prev[d] < m:
            m = prev[d]
    for d in range(N):
        v = prev[d]
        if d > 0 and prev[d - 1] + P1 < v:
            v = prev[d - 1] + P1
        if d < N - 1 and prev[d + 1] + P1 < v:
            v = prev[d + 1] + P1
        if m + P2 < v:
            v = m + P2
        cur[d] = C[d] + v - m


@kernel(**JIT)
def _aggregate_rows(C, guide, P1, P2, S):
    """Add the left-to-right and right-to-left path costs of every row into ``S``.

    Called on transposed views for the vertical paths.
    """
    H, W, N = C.shape
    for y in prange(H):
        prev = np.empty(N, np.float32)
        cur = np.empty(N, np.float32)
        for direction in range(2):
            for i in range(W):
                x = i if direction == 0 else W - 1 - i
                if i == 0:
                    for d in range(N):
                        cur[d] = C[y, x, d]
                else:
                    xq = x - 1 if direction == 0 else x + 1
                    p2 = max(P1, P2 * math.exp(-abs(guide[y, x] - guide[y, xq]) / 0.05))
                    _step(C[y, x], prev, cur, P1, np.float32(p2))
                for d in range(N):
                    S[y, x, d] += cur[d]
                    prev[d] = cur[d]


@kernel(**JIT)
def _pick(S, depth, conf):
    H, W, N = S.shape
    for y in prange(H):
        for x in range(W):
            s = S[y, x]
            b = 0
            for d in range(1, N):
                if s[d] < s[b]:
                    b = d
            off = 0.0
            if 0 < b < N - 1:
                den = s[b - 1] - 2.0 * s[b] + s[b + 1]
                if den > 0:
                    off = min(0.5, max(-0.5, 0.5 * (s[b - 1] - s[b + 1]) / den))
            depth[y, x] = b + off
            s2 = np.float32(1e30)
            for d in range(N):
                if abs(d - b) >= 2 and s[d] < s2:
                    s2 = s[d]
            conf[y, x] = (s2 - s[b]) / s2 if s2 < 1e29 and s2 > 0 else 0.0


@kernel(**JIT)
def _cost(F, C):
    H, W, N = C.shape
    for y in prange(H):
        for x in range(W):
            m = np.float32(0.0)
            for d in range(N):
                if F[d, y, x] > m:
                    m = F[d, y, x]
            for d in range(N):
                C[y, x, d] = 1.0 - F[d, y, x] / m if m > 0 else 0.0


def sgm(focus_volume, guide, p1=0.05, p2=0.5):
    """Depth and confidence from a focus volume by semi-global aggregation.

    Parameters
    ----------
    focus_volume : ndarray (N, H, W) float32
        The focus measure of every frame.
    guide : ndarray (H, W) float32
        All-in-focus luminance in [0, 1] (smoothness is relaxed across its edges).
    p1, p2 : float
        Penalties for a one-frame and a larger depth change between neighbours
        (cost units: the cost of a frame is in [0, 1]).

    Returns
    -------
    depth, confidence : float32 (H, W)
    """
    F = np.ascontiguousarray(focus_volume, np.float32)
    N, H, W = F.shape
    C = np.empty((H, W, N), np.float32)
    _cost(F, C)
    S = np.zeros((H, W, N), np.float32)
    g = np.ascontiguousarray(guide, np.float32)
    _aggregate_rows(C, g, np.float32(p1), np.float32(p2), S)
    _aggregate_rows(C.transpose(1, 0, 2), g.T, np.float32(p1), np.float32(p2), S.transpose(1, 0, 2))
    depth = np.empty((H, W), np.float32)
    conf = np.empty((H, W), np.float32)
    _pick(S, depth, conf)
    return depth, conf


class KeepVolume(FrameStage):
    """Per-frame stage for the need ``"volume"`` (``refine: sgm``): every frame's focus,
    kept (``maps.volume``); stops with a clear error before it outgrows the memory."""

    timing = "depth"

    def __init__(self):
        self.volume = []

    def update(self, frame, k):
        check_volume_memory(frame.focus.shape, k + 1)
        self.volume.append(frame.focus.copy())

    def finish(self, maps):
        maps.volume, self.volume = self.volume, []


def check_volume_memory(shape, n):
    """Stop SGM with a clear error before its focus volume outgrows the memory."""
    from ..sysinfo import available_memory
    need = sgm_memory(shape[0], shape[1], n)
    avail = available_memory()
    if avail and need > 0.8 * avail:
        raise MemoryError(f"refine 'sgm' needs {need / 2**20:.0f} MB for {n} frames of {shape[1]}x{shape[0]} "
                          f"but only {avail / 2**20:.0f} MB are available; use refine 'bilateral' "
                          "(streaming) or fewer/smaller frames")
