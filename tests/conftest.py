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
    from dffbatch.truth.synth import render_stack
    frames, g, af, _ = render_stack("slant", "noise", size=(H, W), n_frames=n,
                                    blur_per_frame=1.5, layers_per_frame=4, seed=seed,
                                    bit_depth=16 if dtype == np.uint16 else 8)
    return frames, g


def wait_for_recorded(run_dir, n, proc=None, limit=120):
    """Records of the run's store once it holds ``n`` finished jobs (the runner's own progress signal)."""
    import json
    import sqlite3
    import time
    deadline = time.time() + limit
    while time.time() < deadline and (proc is None or proc.poll() is None):
        try:
            db = sqlite3.connect(f"file:{run_dir / 'jobs.sqlite'}?mode=ro", uri=True)
            try:
                rows = db.execute("SELECT record FROM jobs WHERE status = 'ok'").fetchall()
            finally:
                db.close()
        except sqlite3.Error:
            rows = []
        if len(rows) >= n:
            return {r["id"]: r for r in (json.loads(t) for (t,) in rows)}
        time.sleep(0.02)
    return {}


def rolled_stream(n, H=128, W=128):
    """A stream of n frames (one random RGB texture rolled a pixel per frame), for memory tests."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    for k in range(n):
        yield np.roll(base, k, axis=1)
