"""The fill stage: regions without confident pixels take their depth from confident surroundings."""
from __future__ import annotations

import numpy as np

import reference as ref
from dffbatch.stages import fill as F
from dffbatch.stages.plan import Settings, build_plan
from dffbatch.stages.base import Grid


def test_kernels_match_their_numpy_reference():
    rng = np.random.default_rng(7)
    H, W = 41, 33
    depth = rng.uniform(0, 11, (H, W)).astype(np.float32)
    fill = rng.uniform(0, 11, (H, W)).astype(np.float32)
    p = rng.uniform(0, 1, (H, W)).astype(np.float32)
    want_w, want = ref.fill_blend(depth, fill, p, F.P0, F.POWER)
    w = np.empty_like(p)
    F._weights(p, np.float32(F.P0), np.float32(F.POWER), w)
    np.testing.assert_allclose(w, want_w, rtol=1e-5, atol=1e-6)
    out = np.empty_like(depth)
    F._keep_or_fill(depth, fill, w, out)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-4)


def _scene():
    """Depth 3 everywhere, confident; a 60 x 60 px square without confidence holding
    specks of made-up depth 9."""
    rng = np.random.default_rng(3)
    H = W = 160
    depth = np.full((H, W), 3.0, np.float32)
    p = np.full((H, W), 0.9, np.float32)
    sl = (slice(50, 110), slice(50, 110))
    depth[sl] = np.where(rng.random(depth[sl].shape) < 0.3, 9.0, 4.0)
    p[sl] = 0.05
    guide = np.full((H, W), 0.5, np.float32)  # no edges: the fill may cross everything
    return depth, p, guide, sl


def test_a_region_without_confidence_is_filled_from_its_surroundings():
    depth, p, guide, sl = _scene()
    out, kept = F.fill_unknown(depth, p, guide)
    inner = out[60:100, 60:100]
    assert np.abs(inner - 3.0).max() < 0.05  # no blotch of 9s or 4s survives
    assert kept[60:100, 60:100].max() < 0.01
    # confident pixels (w = 0.64 at p = 0.9) mix their depth with a fill of the same depth
    np.testing.assert_allclose(out[p > F.P0], depth[p > F.P0], atol=1e-5)


def test_the_fill_stops_at_an_edge_of_the_guide():
    depth, p, guide, sl = _scene()
    depth[:, :80], guide[:, :80] = 3.0, 0.2       # left half: another object, darker, at depth 3
    depth[:, 80:] = 8.0                            # right half at depth 8, whose confident pixels ...
    p[:, 80:] = 0.05
    p[:, 140:] = 0.9                               # ... lie only at the far right
    out, kept = F.fill_unknown(depth, p, guide)
    assert np.abs(out[60:100, 90:130] - 8.0).max() < 0.05  # filled from its own side of the edge


def test_only_the_global_solve_adds_the_fill():
    for refine in ("none", "median", "bilateral", "sgm", "wls"):
        s = Settings("lapd", 9, 1, 0.0, "gaussian", 5, "interpolate", refine, 7, 1.0)
        names = [type(st).__name__ for st in build_plan(s, Grid()).post]
        assert names == (["Refine", "Fill", "Calibrate"] if refine == "wls" else ["Refine", "Calibrate"])
