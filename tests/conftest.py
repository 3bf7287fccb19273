import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT.parent / "shared" / "datasets" / "seed"
sys.path.insert(0, str(Path(__file__).parent))


def seed_path(*parts):
    """A path under ../shared/datasets/seed, or skip the test with a clear reason."""
    p = SEED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real dataset {p} is absent (../shared/datasets is not next to the project)")
    return p


def blurred_stack(H=48, W=64, n=9, seed=0, dtype=np.uint8):
    """Textured stack where pixel (y, x) is sharpest at a known frame: a slant."""
    from dffbatch.synth import render_stack
    frames, g, af, _ = render_stack("slant", "noise", size=(H, W), n_frames=n,
                                    blur_per_frame=1.5, layers_per_frame=4, seed=seed,
                                    bit_depth=16 if dtype == np.uint16 else 8)
    return frames, g
