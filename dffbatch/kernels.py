"""Shared Numba helpers: border reflection and the numeric constants of the kernels.

Every kernel in dffbatch follows one convention for borders: **reflection about the
edge pixel** (NumPy's ``np.pad(mode="reflect")``, SciPy's ``mode="mirror"``):
``d c b | a b c d | c b a``. A 1-pixel-wide axis reflects onto itself.

The thread count of the parallel kernels is Numba's (``numba.set_num_threads``);
results are bit-identical whatever it is, because no kernel reduces across rows.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["reflect_index", "pad_reflect", "range_table", "JIT"]

#: Range-weight tables: entries, and the span in sigmas beyond which a weight counts as 0.
LUT_SIZE = 1024
LUT_SPAN = 4.0

#: Options shared by every parallel kernel: cached on disk, GIL released so that the
#: next frame can be decoded in another thread while a kernel runs.
JIT = dict(parallel=True, cache=True, nogil=True)


@njit(cache=True, inline="always")
def reflect_index(i, n):
    """Index ``i`` reflected into ``[0, n)`` about the edge pixels (period ``2n-2``)."""
    if n == 1:
        return 0
    period = 2 * (n - 1)
    i = abs(i) % period
    if i >= n:
        i = period - i
    return i


@njit(**JIT)
def pad_reflect(buf, p):
    """Fill the ``p``-pixel border of ``buf`` (shape ``(H+2p, W+2p)``) by reflection.

    The interior ``buf[p:-p, p:-p]`` must already hold the image. Columns are filled
    first on interior rows, then whole border rows are copied, so corners reflect in
    both axes exactly as ``np.pad(img, p, mode="reflect")``.
    """
    Hp, Wp = buf.shape
    H = Hp - 2 * p
    W = Wp - 2 * p
    for y in prange(p, p + H):
        for i in range(1, p + 1):
            buf[y, p - i] = buf[y, p + reflect_index(-i, W)]
            buf[y, p + W - 1 + i] = buf[y, p + reflect_index(W - 1 + i, W)]
    for i in prange(1, p + 1):
        src_top = p + reflect_index(-i, H)
        src_bot = p + reflect_index(H - 1 + i, H)
        for x in range(Wp):
            buf[p - i, x] = buf[src_top, x]
            buf[p + H - 1 + i, x] = buf[src_bot, x]



@njit(cache=True)
def range_table(sigma):
    """``exp(-d^2 / (2 sigma^2))`` at ``d = i * step`` for i in 0..LUT_SIZE-1, 0 at LUT_SIZE.

    ``step = LUT_SPAN * sigma / LUT_SIZE``; returns ``(table, step)``. The edge-aware
    kernels look weights up here instead of calling ``exp`` per neighbour.
    """
    lut = np.empty(LUT_SIZE + 1, np.float32)
    step = LUT_SPAN * sigma / LUT_SIZE
    for i in range(LUT_SIZE + 1):
        v = i * step / sigma
        lut[i] = np.exp(-0.5 * v * v)
    lut[LUT_SIZE] = 0.0
    return lut, step
