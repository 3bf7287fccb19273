"""Shared Numba helpers: border reflection and the numeric constants of the kernels.

Every kernel in dffbatch follows one convention for borders: **reflection about the
edge pixel** (NumPy's ``np.pad(mode="reflect")``, SciPy's ``mode="mirror"``):
``d c b | a b c d | c b a``. A 1-pixel-wide axis reflects onto itself.

The thread count of the parallel kernels is Numba's (``numba.set_num_threads``);
results are bit-identical whatever it is, because no kernel reduces across rows.

Every parallel kernel comes twice (:func:`kernel`): compiled with ``parallel=True``, and
as a serial twin of the same source (``prange`` runs as ``range``). The twins compile in
less than half the time (the unaligned path: 13.6 s against 31.6 s of compiling,
``benchmarks/compile_profile.py --groups plain``; Numba's parallel lowering is the
difference) but run 4-7% slower on one thread than the parallel kernels do
(``profile_stages.py``; ``settle_warped`` 1.20x, ``reduce_level`` 1.18x, the others
0.9-1.3x: Numba outlines a ``prange`` body into a function of its own, which LLVM
optimises apart). So they serve a first run: its batch workers (one kernel thread each)
call the twins (:func:`use_twins`) while the parallel kernels compile in the background
for the runs after it (:mod:`dffbatch.batch.warmup`). The bytes are the same (tests: 1
against 2 threads, and a run on twins against one on parallel kernels).
"""
from __future__ import annotations

import functools
import glob
import hashlib
import math
import os
import types as pytypes

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

__all__ = ["reflect_index", "pad_reflect", "range_table", "logf", "expf", "full", "zeros", "spread_blocks", "readonly", "JIT", "JIT_DIV", "kernel", "Kernel",
           "use_twins"]

#: Range-weight tables: entries, and the span in sigmas beyond which a weight counts as 0.
LUT_SIZE = 1024
LUT_SPAN = 4.0

#: Options shared by every parallel kernel: cached on disk, GIL released so that the
#: next frame can be decoded in another thread while a kernel runs.
JIT = dict(parallel=True, cache=True, nogil=True)
#: :data:`JIT` for kernels that divide: floating-point division by zero gives inf or nan
#: as in NumPy instead of a Python exception, so no check per division keeps LLVM from
#: vectorising the loop (the kernels' arithmetic guards the results either way).
JIT_DIV = dict(JIT, error_model="numpy")

_HERE = os.path.dirname(os.path.abspath(__file__))


def _sources_digest(folder: str = _HERE) -> bytes:
    """SHA-256 of the names and bytes of every module in ``folder`` (this package's by
    default; read again only when a file's size or modification time changes)."""
    return _digest(tuple((f, st.st_mtime_ns, st.st_size)
                         for f in sorted(glob.glob(os.path.join(folder, "*.py"))) for st in [os.stat(f)]))


@functools.lru_cache(maxsize=8)
def _digest(stats) -> bytes:
    h = hashlib.sha256()
    for f, _, _ in stats:
        h.update(os.path.basename(f).encode() + b"\0")
        with open(f, "rb") as fh:
            h.update(fh.read())
    return h.digest()


def _key_the_cache_to_the_package() -> None:
    """Numba keys a cached function to its own file only, and the machine code of a kernel
    holds the functions it calls from other files: once ``depth.py`` changed,
    ``fused.py``'s cached ``frame_pass`` still ran the old ``_update_row`` (wrong results,
    silently, in a checkout updated by ``git pull``). This package's cached functions are
    keyed to the bytes of all its modules instead: any change recompiles them all.
    (Numba's locator classes, as 0.59-0.68 name them; other versions keep Numba's own key.)"""
    from numba.core import caching
    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)
    bases = [getattr(caching, n, None) or getattr(caching, "_" + n, None)
             for n in ("UserProvidedCacheLocator", "InTreeCacheLocator")]
    if impl is None or None in bases:
        return
    folders = getattr(impl, "_package_folders", None)
    if folders is None:  # the first copy of this module in the process: the locators
        folders = impl._package_folders = set()
        made = []
        for base in bases:
            class PackageLocator(base):
                @classmethod
                def from_function(cls, py_func, py_file):
                    if os.path.dirname(os.path.abspath(py_file)) not in folders:
                        return None  # not this package's: Numba's own locators
                    return super().from_function(py_func, py_file)

                def get_source_stamp(self):
                    folder = os.path.dirname(os.path.abspath(self._py_file))
                    return super().get_source_stamp(), _sources_digest(folder)
            made.append(PackageLocator)
        impl._locator_classes[:0] = made
    folders.add(_HERE)


_key_the_cache_to_the_package()  # before the first cached function below is made


#: Whether calls on one Numba thread run the serial twins (:func:`use_twins`).
_TWINS = [False]


def use_twins(on: bool) -> None:
    """Calls on one Numba thread run the kernels' serial twins (``on``) or the parallel
    kernels (the default): a first run's batch workers use the twins, which compile
    faster; everything else the parallel kernels, which run faster."""
    _TWINS[0] = bool(on)


class Kernel:
    """A parallel kernel and its serial twin: with :func:`use_twins`, calls on one Numba
    thread run the twin.

    The twin is compiled from a copy of the function under another name
    (``<name>_serial``), so that Numba's on-disk cache keeps the two apart. Each is
    compiled on its first call, as a plain dispatcher is; ``compile``, ``signatures``
    and ``py_func`` are those of the variant the current thread count selects.
    """

    def __init__(self, fn, opts):
        functools.update_wrapper(self, fn)
        self.parallel = numba.njit(**opts)(fn)
        twin = pytypes.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial", fn.__defaults__,
                                    fn.__closure__)
        twin.__qualname__ = fn.__qualname__ + "_serial"
        twin.__doc__ = fn.__doc__
        self.serial = numba.njit(**{k: v for k, v in opts.items() if k != "parallel"})(twin)

    @property
    def variant(self):
        """The dispatcher a call now runs: the twin on one thread if twins are in use, else
        the parallel one."""
        return self.serial if _TWINS[0] and numba.get_num_threads() == 1 else self.parallel

    def __call__(self, *args):
        return self.variant(*args)

    def compile(self, sig):
        return self.variant.compile(sig)

    @property
    def signatures(self):
        return self.variant.signatures

    @property
    def py_func(self):
        return self.variant.py_func


def kernel(**opts):
    """Decorator: ``@kernel(**JIT)`` makes a :class:`Kernel` (``opts`` those of the parallel one)."""
    return lambda fn: Kernel(fn, opts)


#: Elements a task of :func:`_fill` sets (a 256 KiB run of 4-byte words).
_FILL_RUN = 1 << 16


@kernel(**JIT)
def _fill(flat, value):
    """``flat[:] = value`` (1-D), in runs shared by Numba's threads."""
    n = flat.shape[0]
    for i in prange((n + _FILL_RUN - 1) // _FILL_RUN):
        for j in range(i * _FILL_RUN, min(n, (i + 1) * _FILL_RUN)):
            flat[j] = value


def full(shape, value, dtype) -> np.ndarray:
    """``np.full(shape, value, dtype)`` set by Numba's threads.

    A stack's state arrays are allocated afresh for each call, from memory the heap
    reuses, which ``np.zeros`` and ``np.full`` then set on one thread (6.7 ms of a
    default 1080^2 call, 80 MB): here the threads share it. Set as 4-byte words where
    the array's size allows (one compiled kernel for every 4-byte dtype), else zeros as
    bytes, else by NumPy."""
    a = np.empty(shape, dtype)
    if a.nbytes % 4 == 0 and a.dtype.itemsize <= 4:
        bits = np.full(4 // a.dtype.itemsize, value, a.dtype).view(np.uint32)[0]
        _fill(a.reshape(-1).view(np.uint32), bits)
    elif not np.array(value, a.dtype).any():
        _fill(a.reshape(-1).view(np.uint8), np.uint8(0))
    else:
        a.fill(value)
    return a


def zeros(shape, dtype) -> np.ndarray:
    """``np.zeros(shape, dtype)`` set by Numba's threads (see :func:`full`)."""
    return full(shape, 0, dtype)


def readonly(a):
    """A read-only view of ``a``, for the kernels' input images.

    Numba compiles a kernel once per argument type, and a read-only array (Pillow's
    decoded PNGs) is another type than a writable one (JPEGs, TIFFs, copies): passing
    every input image read-only keeps one compiled kernel per dtype, so that the first
    run's warm-up covers the jobs (a second fused pass took 7 s in the workers).
    """
    v = a.view()
    v.flags.writeable = False
    return v


@intrinsic
def _f32_bits(typingctx, x):
    """The bits of a float32 as an int32 (a bit cast, no conversion)."""
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.int32(types.float32), codegen


@intrinsic
def _bits_f32(typingctx, i):
    """The float32 whose bits are the int32 ``i``."""
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


_LN2 = np.float32(math.log(2.0))
_MIN_NORMAL = np.float32(np.finfo(np.float32).tiny)


@njit(cache=True, inline="always")
def logf(x):
    """Natural logarithm of a float32 ``x`` >= 0, without branches (LLVM vectorises loops
    that call it: 8x faster than libm's ``logf`` on a 1080^2 array), within 2.5 ulp of
    the exact value; ``ln 1 = 0`` exactly and the sign is that of ``x - 1``. ``x`` =
    m 2^e with m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh(s), s = (m - 1) / (m + 1),
    by its series to s^9 (|s| <= 0.172). Subnormals are scaled by 2^64 first; 0 gives -inf.
    """
    x = np.float32(x)
    small = x < _MIN_NORMAL
    xs = x * np.float32(18446744073709551616.0) if small else x
    i = _f32_bits(xs)
    e = (i - np.int32(0x3F3504F3)) >> np.int32(23)  # 0x3F3504F3: the bits of sqrt(1/2)
    m = _bits_f32(i - (e << np.int32(23)))
    s = (m - np.float32(1.0)) / (m + np.float32(1.0))
    s2 = s * s
    p = np.float32(2.0 / 9.0)
    p = p * s2 + np.float32(2.0 / 7.0)
    p = p * s2 + np.float32(2.0 / 5.0)
    p = p * s2 + np.float32(2.0 / 3.0)
    p = p * s2 + np.float32(2.0)
    v = (np.float32(e) - (np.float32(64.0) if small else np.float32(0.0))) * _LN2 + s * p
    return v if x > np.float32(0.0) else np.float32(-np.inf)


_LOG2E = np.float32(1.0 / math.log(2.0))
#: ln 2 in two parts (Cody and Waite): k * _LN2_HI is exact for |k| < 2^9.
_LN2_HI, _LN2_LO = np.float32(0.693359375), np.float32(-2.12194440e-4)
#: Beyond these, ``expf`` is 0 and inf (exp(-87) = 1.6e-38, exp(88) = 1.7e38: the normal range).
_EXP_LO, _EXP_HI = np.float32(-87.0), np.float32(88.0)


@njit(cache=True, inline="always")
def expf(x):
    """``exp`` of a float32 ``x`` without branches (LLVM vectorises loops that call it),
    within 1 ulp of the exact value over [-87, 88] (0.54 measured); 0 below that range
    and inf above it (where exp leaves the normal floats), nan for nan.
    ``x = k ln 2 + r`` with ``|r| <= ln 2 / 2``, ``exp r`` by Cephes' ``expf`` polynomial,
    times the float32 ``2^k`` built from its bits."""
    x = np.float32(x)
    xc = min(max(x, _EXP_LO), _EXP_HI)
    k = math.floor(xc * _LOG2E + np.float32(0.5))
    r = (xc - k * _LN2_HI) - k * _LN2_LO
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    v = ((p * r) * r + r + np.float32(1.0)) * _bits_f32((np.int32(k) + np.int32(127)) << np.int32(23))
    v = np.float32(np.inf) if x > _EXP_HI else v
    return np.float32(0.0) if x < _EXP_LO else v


@njit(cache=True, inline="always")
def spread_blocks(b, blocks, out, blocks2, out2):
    """``out[x] = blocks[x // b]`` and ``out2[x] = blocks2[x // b]`` over a row (``out`` as
    long as the row, ``blocks`` its blocks of ``b`` pixels, the last one partial): rows of
    per-block values laid out per pixel, so that the loops reading them vectorise (no
    division per pixel). Two at once: one pass, as the callers need two."""
    W = out.shape[0]
    for xc in range(blocks.shape[0]):
        for x in range(xc * b, min(W, xc * b + b)):
            out[x] = blocks[xc]
            out2[x] = blocks2[xc]


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


@kernel(**JIT)
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
