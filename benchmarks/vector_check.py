"""Does LLVM vectorise the per-frame and per-stack kernels? (issue 17)

    python benchmarks/vector_check.py

Compiles the kernels afresh (bypassing Numba's on-disk cache, whose code cannot be
inspected) on a small default call, then counts in each kernel's assembly the packed
AVX instructions on ``ymm`` registers (8 float32 lanes) against scalar floating-point
ones. A kernel with no packed instruction runs one value at a time.
"""
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    from numba.core.caching import NullCache
    from dffbatch import composite, depth, fused, measure, solve
    from dffbatch import depth_from_focus
    kernels = [fused.frame_pass, measure._luma_into, measure._pointwise, measure.box_sum, depth.update_best,
               depth.finish_depth, composite.blend, solve._smooth_rows,
               solve._smooth_cols]
    for k in kernels:
        k._cache = NullCache()  # compile here, so that the assembly can be read
    rng = np.random.default_rng(0)
    depth_from_focus([rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(3)], prefetch=0)
    measure.FocusMeasure((64, 64), "lapd", 9)(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
                                              np.empty((64, 64), np.float32))
    print(f"{'kernel':28}{'packed ymm':>12}{'scalar fp':>12}")
    for k in kernels:
        for asm in k.inspect_asm().values():
            packed = len(re.findall(r"\bv\w+p[sd]\s+.*%ymm", asm)) + len(re.findall(r"\bvp\w+\s+.*%ymm", asm))
            scalar = len(re.findall(r"\bv\w+s[sd]\s+", asm))
            print(f"{k.__module__.split('.')[-1] + '.' + k.__name__:28}{packed:>12}{scalar:>12}")
            break


if __name__ == "__main__":
    main()
