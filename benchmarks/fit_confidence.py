"""Fit and check the calibrated confidence (dffbatch/stages/confidence.py) on ground truth.

    python benchmarks/fit_confidence.py [--size 256] [--frames 12] [--out reliability.png] [--check-only]
    python benchmarks/fit_confidence.py --select     # which features each mode uses (fitting suites only)
    python benchmarks/fit_confidence.py --real DIR   # real stacks: confidence before and after, plots

``confidence`` is the probability that the depth is within one frame of the truth. This
script renders the renderer's suites, runs every refine mode with three focus measures
(lapd, sml, tenv) and three windows (5, 9, 15), and

1. fits the logistic model of each refine mode (its intercept and one coefficient per
   feature of :data:`USE`) on the ``sweep``, ``halo`` and ``bare`` suites, then the slope
   of the modes that keep their weight's order (``RANK_SLOPE``, :func:`fit_slope`), and
   prints ``COEF``, ``RANK_SLOPE``, ``UNKNOWN`` and ``FLAT`` to paste into
   ``dffbatch/stages/confidence.py`` (skipped with ``--check-only``: the constants in the
   code are checked as they are);
2. checks it on the ``refine``, ``flat`` and ``bare2`` suites, not used to fit: the expected
   calibration error (ECE, 10 equal-width bins, pixel-weighted) per refine mode and
   measure, the reliability table, and a reliability diagram PNG;
3. compares the ranking quality with the previous confidence (peak prominence, or the
   ``wls`` evidence weight): AUSE (area under the sparsification error curve, lower is
   better) per scene class; ``*`` marks a class where the calibrated confidence ranks
   worse than the previous one.

``--select`` chooses the features of each mode without a fill on the fitting suites
alone: of the sets with the prior whose fit keeps every coefficient (none dropped for its
sign), those whose AUSE is no worse than the prior's on any fitting scene class (within
5e-4), the one with the lowest calibration error on the fitting suites. :data:`USE` holds
its choice for ``none`` and ``sgm``; for ``median`` and ``bilateral`` it chose sets that
missed the calibration on the check suites (ECE 0.060 and 0.077 with ``tenv``), so their
per-pixel model keeps every feature and sets each stack's calibration only: the stage
projects it, per stack, onto a strictly increasing function of the mode's own weight
(``confidence.ranked``, with the slope ``RANK_SLOPE``), so their AUSE, taken per stack,
is the weight's. ``--select`` fits the per-pixel model (``probability`` with ``coef``).
``--slope-by logloss`` fits that slope for the lowest log loss instead of the lowest
calibration error (it missed the calibration with ``bilateral`` and ``tenv``: 0.053).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

MODES = ("none", "median", "bilateral", "sgm", "wls")
MEASURES = ("lapd", "sml", "tenv")
WINDOWS = (5, 9, 15)
FIT_SUITES, CHECK_SUITES = ("sweep", "halo", "bare"), ("refine", "flat", "bare2")
BORDER = 8
SAMPLE = 3  # every 3rd pixel in each direction enters the fit
#: The features each mode's model uses (``--select``); the others are 0.
ALL = ("ratio", "amplitude", "end", "evidence", "support", "reach", "moved", "prior")
USE = {"none": ("end", "support", "prior"), "median": ALL, "bilateral": ALL, "sgm": ("prior",), "wls": ALL}


def _runs(suites, size, n, modes=MODES, measures=MEASURES, windows=WINDOWS):
    """Yield (suite, scene, mode, measure, window, features, old confidence, new, |error|)."""
    from dffbatch import depth_from_focus
    from dffbatch.stages import confidence as C
    from dffbatch.truth.synth import render_stack
    from dffbatch.truth.synth_cli import SUITE_RENDER, SUITES
    seen = {}
    orig = C.Calibrate.run

    def run(self, maps):  # keeps what the stage sees: the features and the previous confidence
        seen["features"], seen["old"] = C.features(maps, self.refine), maps.confidence.copy()
        return orig(self, maps)

    C.Calibrate.run = run
    try:
        for suite in suites:
            for name, (shape, tex, noise, seed) in SUITES[suite].items():
                fr, g, _, _ = render_stack(shape, tex, (size, size), n, noise=noise, seed=seed,
                                           **SUITE_RENDER.get(suite, {}))
                for mode in modes:
                    for measure in measures:
                        for window in windows:
                            r = depth_from_focus(fr, refine=mode, measure=measure, window=window, align="none",
                                                 composite="interpolate")
                            yield (suite, name, mode, measure, window, seen["features"], seen["old"],
                                   r.confidence, np.abs(r.depth - g))
    finally:
        C.Calibrate.run = orig


def _inner(a):
    return a[..., BORDER:-BORDER, BORDER:-BORDER]


def fit_signed(X, y, w, signs):
    """:func:`fit_logistic` with each coefficient held to its sign: while the free fit of
    the features left gives one the wrong sign, the worst of them is dropped (set to 0)."""
    keep = list(range(X.shape[1]))
    while True:
        b = fit_logistic(X[:, keep], y, w)
        wrong = [(b[1 + i] * signs[k], i) for i, k in enumerate(keep) if b[1 + i] * signs[k] < 0]
        if not wrong:
            full = np.zeros(X.shape[1] + 1)
            full[0] = b[0]
            for i, k in enumerate(keep):
                full[1 + k] = b[1 + i]
            return full
        keep.pop(min(wrong)[1])


def fit_logistic(X, y, w, l2=1e-3, iterations=50):
    """Weighted logistic regression by Newton's method (IRLS): coefficients (intercept first)."""
    A = np.column_stack([np.ones(len(X)), X])
    beta = np.zeros(A.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(A @ beta, -30, 30)))
        g = A.T @ (w * (p - y)) + l2 * np.r_[0.0, beta[1:]]
        Hm = (A * (w * p * (1 - p))[:, None]).T @ A + l2 * np.diag(np.r_[0.0, np.ones(len(beta) - 1)])
        step = np.linalg.solve(Hm, g)
        beta -= step
        if np.abs(step).max() < 1e-7:
            break
    return beta


def ece(p, ok, bins=10):
    """Expected calibration error: the pixel-weighted mean |observed - predicted| over equal-width bins."""
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total, rows = 0.0, []
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(ok[m].mean() - p[m].mean())
            rows.append((b / bins, (b + 1) / bins, int(m.sum()), float(p[m].mean()), float(ok[m].mean())))
        else:
            rows.append((b / bins, (b + 1) / bins, 0, np.nan, np.nan))
    return total / len(p), rows


def _flat_modes():
    """The modes without a stage after the refine (a fill): a flat focus curve is their
    own depth's, capped at ``FLAT``; the others keep the ``UNKNOWN`` cap."""
    from dffbatch.stages.plan import AFTER_REFINE
    return tuple(m for m in MODES if not AFTER_REFINE.get(m))


def _samples(F, err):
    from dffbatch.stages.confidence import FEATURES
    X = _inner(F)[:, ::SAMPLE, ::SAMPLE].reshape(len(FEATURES), -1).T.astype(np.float64)
    y = (_inner(err)[::SAMPLE, ::SAMPLE].ravel() <= 1.0).astype(np.float64)
    return X, y


def fit(size, n, slope_by="ece"):
    """The logistic model of each mode over its features (:data:`USE`), and the caps:
    ``UNKNOWN``, the share of the pixels without evidence within 72 px that are within a
    frame of the truth, over every mode (the probability those pixels get with ``wls``;
    they stay out of its fit), and ``FLAT``, per mode without a fill, the share of the
    pixels with a flat focus curve within a frame (they stay out of its fit)."""
    from dffbatch.stages import confidence as C
    from dffbatch.stages.confidence import FEATURES, REACH_MIN, SIGNS
    bare = np.log(0.01 + REACH_MIN)
    flat_modes = _flat_modes()
    data = {m: ([], [], []) for m in MODES}
    far_ok, far_w = 0.0, 0.0
    flat_ok, flat_w = dict.fromkeys(flat_modes, 0.0), dict.fromkeys(flat_modes, 0.0)
    ranked_runs = {m: [] for m in C.RANK_SLOPE}
    for suite, name, mode, measure, window, F, _, _, err in _runs(FIT_SUITES, size, n):
        X, y = _samples(F, err)
        if mode in ranked_runs:  # the whole stack's planes: the projection is per stack
            ranked_runs[mode].append((measure, F, err))
        far = X[:, FEATURES.index("reach")] < bare
        far_ok += y[far].sum() / len(y)  # every run weighs alike
        far_w += far.sum() / len(y)
        if mode in flat_modes:
            out = X[:, FEATURES.index("amplitude")] <= 0
            flat_ok[mode] += y[out].sum() / len(y)
            flat_w[mode] += out.sum() / len(y)
        else:
            out = far
        data[mode][0].append(X[~out])
        data[mode][1].append(y[~out])
        data[mode][2].append(np.full((~out).sum(), 1.0 / len(y)))
    coef = {}
    for mode, (X, y, w) in data.items():
        X, y, w = np.concatenate(X), np.concatenate(y), np.concatenate(w)
        coef[mode] = fit_subset(X, y, w * len(w) / w.sum(), [FEATURES.index(f) for f in USE.get(mode, ALL)], SIGNS)
    unknown = far_ok / far_w if far_w else 0.0
    flat = {m: flat_ok[m] / flat_w[m] if flat_w[m] else 1.0 for m in flat_modes}
    print("COEF = {")
    for mode, b in coef.items():
        print(f'    "{mode}": ({", ".join(f"{v:.4g}" for v in b)}),')
    print("}")
    print(f"features: intercept, {', '.join(FEATURES)}")
    slope = {m: fit_slope(runs, coef[m], m, slope_by) for m, runs in ranked_runs.items()}
    print("RANK_SLOPE = {" + ", ".join(f'"{m}": {k:.2f}' for m, k in slope.items()) + "}")
    print(f"UNKNOWN = {unknown:.3f}  (pixels without evidence within reach: {far_w / max(len(data), 1):.1f} runs' worth)")
    print("FLAT = {" + ", ".join(f'"{m}": {v:.3f}' for m, v in flat.items()) + "}  (flat focus curves: "
          + ", ".join(f"{m} {flat_w[m]:.1f}" for m in flat_modes) + " runs' worth)")
    return coef, unknown, flat, slope


#: The slopes :func:`fit_slope` tries.
SLOPES = np.round(np.arange(0.5, 3.0001, 0.05), 2)


def fit_slope(runs, coef, mode, by="ece"):
    """The slope ``k`` of a mode of ``RANK_SLOPE`` (confidence.ranked: ``sigmoid(k logit(q)
    + d)`` per stack), of :data:`SLOPES`, on the fitting suites, the per-pixel model
    ``coef`` just fitted: ``by`` ``"ece"`` the one with the lowest calibration error
    (the worst over the measures, every inner pixel, as :func:`check` takes it), or
    ``"logloss"`` the lowest log loss on the pixels of the model's fit (the same samples
    and weights: every run alike, flat curves out). ``runs``: (measure, features, |error|)
    of whole stacks. What the stage runs: ``probability`` with ``coef``, then ``ranked``'s
    own steps."""
    from dffbatch.stages import confidence as C
    amp, prior = C.FEATURES.index("amplitude"), C.FEATURES.index("prior")
    s = (slice(None, None, SAMPLE),) * 2
    prepared = []
    for measure, F, err in runs:
        p = C.probability(F, mode, coef)
        flat = F[amp] <= 0.0
        prepared.append((measure, p, None if flat.all() else C._rank_inputs(p, F[prior], flat),
                         ~_inner(flat)[s], _inner(err) <= 1.0))
    loss, worst = [], []
    for k in SLOPES:
        total, weight, pooled = 0.0, 0.0, {}
        for measure, p, inputs, use, ok in prepared:
            out = p.copy()
            if inputs is not None:
                keep, lq, target = inputs
                out[keep] = C.leveled(lq, target, float(k))
            out = _inner(out)
            a = pooled.setdefault(measure, ([], []))
            a[0].append(out.ravel())
            a[1].append(ok.ravel())
            q = np.clip(out[s][use].astype(np.float64), 1e-7, 1 - 1e-7)
            total += -np.sum(np.where(ok[s][use], np.log(q), np.log1p(-q))) / use.size
            weight += use.sum() / use.size
        loss.append(total / weight)
        worst.append(max(ece(np.concatenate(a[0]), np.concatenate(a[1]))[0] for a in pooled.values()))
    best = int(np.argmin(worst if by == "ece" else loss))
    print(f"{mode}: slope, log loss (fitting samples), worst ECE over the measures (fitting suites); "
          f"by {by}: {SLOPES[best]:.2f}" + ("  (at the grid's edge)" if best in (0, len(SLOPES) - 1) else ""))
    for i in range(0, len(SLOPES), 4):
        print("   " + "  ".join(f"{k:.2f} {v:.5f} {e:.4f}" for k, v, e in zip(SLOPES[i:i + 4], loss[i:i + 4],
                                                                             worst[i:i + 4])))
    return float(SLOPES[best])


def fit_subset(X, y, w, keep, signs):
    """:func:`fit_signed` over the columns ``keep`` of ``X``; the other coefficients 0."""
    b = fit_signed(X[:, keep], y, w, [signs[k] for k in keep])
    full = np.zeros(X.shape[1] + 1)
    full[0] = b[0]
    full[1 + np.asarray(keep)] = b[1:]
    return full


def select(size, n):
    """The features of each mode without a fill, chosen on the fitting suites alone (see
    the module docstring): every set with the prior, its fit, its calibration error and
    its AUSE against the prior's per scene class (window 9, mean over measures)."""
    import itertools
    from dffbatch.stages import confidence as C
    from dffbatch.truth.metrics import ause
    flat_modes = _flat_modes()
    amp = C.FEATURES.index("amplitude")
    data = {m: ([], [], []) for m in flat_modes}
    runs = {m: [] for m in flat_modes}
    for suite, name, mode, measure, window, F, old, _, err in _runs(FIT_SUITES, size, n, modes=flat_modes):
        X, y = _samples(F, err)
        keep = X[:, amp] > 0
        data[mode][0].append(X[keep])
        data[mode][1].append(y[keep])
        data[mode][2].append(np.full(keep.sum(), 1.0 / len(y)))
        runs[mode].append((f"{suite}/{name.split('-')[0]}-{name.split('-')[1]}", measure, window,
                           np.ascontiguousarray(_inner(F)), _inner(old), _inner(err)))
    others = [k for k, f in enumerate(C.FEATURES) if f != "prior"]
    prior = C.FEATURES.index("prior")
    for mode in flat_modes:
        X, y, w = (np.concatenate(a) for a in data[mode])
        w = w * len(w) / w.sum()
        base = {}
        for cls, measure, window, F, old, err in runs[mode]:
            if window == 9:
                base.setdefault(cls, []).append(ause(err, old, 0))
        rows = []
        for bits in itertools.product((0, 1), repeat=len(others)):
            keep = [k for k, b in zip(others, bits) if b] + [prior]
            c = fit_subset(X, y, w, keep, C.SIGNS)
            if any(c[1 + k] == 0 for k in keep):
                continue  # the sign rule dropped one: the same model as a smaller set
            new, pooled = {}, {}
            for cls, measure, window, F, old, err in runs[mode]:
                p = C.probability(F, mode, c)
                a = pooled.setdefault(measure, ([], []))
                a[0].append(p[::2, ::2].ravel())
                a[1].append(err[::2, ::2].ravel() <= 1.0)
                if window == 9:
                    new.setdefault(cls, []).append(ause(err, p, 0))
            worse = [(cls, np.mean(base[cls]), np.mean(v)) for cls, v in new.items()
                     if np.mean(v) > np.mean(base[cls]) + 5e-4]
            e = max(ece(np.concatenate(p), np.concatenate(o))[0] for p, o in pooled.values())
            rows.append((len(worse), e, tuple(C.FEATURES[k] for k in keep), worse))
        rows.sort(key=lambda r: (r[0], r[1]))
        print(f"{mode}: feature sets by the number of fitting scene classes ranked worse than the prior, then ECE")
        for nw, e, feats, worse in rows[:6]:
            print(f"  {nw} worse, ECE {e:.3f}: {', '.join(feats)}"
                  + "".join(f"; {c} {o:.3f}->{v:.3f}" for c, o, v in worse[:3]))


def check(size, n, out):
    from dffbatch.truth.metrics import ause
    pooled = {}
    aus = {}
    for suite, name, mode, measure, window, _, old, new, err in _runs(CHECK_SUITES, size, n):
        p, ok = _inner(new).ravel(), (_inner(err).ravel() <= 1.0)
        a = pooled.setdefault((mode, measure), ([], []))
        a[0].append(p)
        a[1].append(ok)
        cls = f"{suite}/{name.split('-')[0]}-{name.split('-')[1]}"
        if window == 9:
            aus.setdefault((cls, mode), []).append((ause(err, old), ause(err, new)))
    print(f"calibration on {'+'.join(CHECK_SUITES)} (not used to fit), ECE (10 bins) per refine mode and measure:")
    print(f"{'refine':10} " + " ".join(f"{m:>7}" for m in MEASURES) + "   mean conf  share ok")
    worst = 0.0
    tables = {}
    for mode in MODES:
        cells = []
        for measure in MEASURES:
            p, ok = (np.concatenate(x) for x in pooled[(mode, measure)])
            e, rows = ece(p, ok)
            worst = max(worst, e)
            cells.append(f"{e:7.3f}")
            if measure == "lapd":
                tables[mode] = rows
                mp, mo = p.mean(), ok.mean()
        print(f"{mode:10} " + " ".join(cells) + f"   {mp:9.3f}  {mo:8.3f}")
    print(f"worst ECE: {worst:.3f}")
    print("reliability table (lapd, window 5/9/15 pooled): bin, pixels, mean predicted, observed")
    for mode, rows in tables.items():
        print(f"  {mode}: " + "  ".join(f"[{lo:.1f},{hi:.1f}) {c} {pp:.2f}/{oo:.2f}" for lo, hi, c, pp, oo in rows
                                        if c))
    print("AUSE (lower ranks better), window 9, mean over measures: previous -> calibrated")
    classes = sorted({c for c, _ in aus})
    print(f"{'class':28} " + " ".join(f"{m:>15} " for m in MODES))
    for c in classes:
        cells = []
        for mode in MODES:
            v = np.array(aus[(c, mode)])
            o, nw = v[:, 0].mean(), v[:, 1].mean()
            cells.append(f"{o:.3f}->{nw:.3f}" + ("*" if round(nw, 3) > round(o, 3) else " "))
        print(f"{c:28} " + " ".join(f"{x:>16}" for x in cells))
    _diagram(tables, out)


def _diagram(tables, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfect calibration")
    for mode, rows in tables.items():
        pts = [(pp, oo) for _, _, c, pp, oo in rows if c]
        ax.plot(*zip(*pts), marker="o", ms=3, label=mode)
    ax.set_xlabel("predicted P(|depth error| <= 1 frame)")
    ax.set_ylabel("observed share within 1 frame")
    ax.set_title(f"confidence reliability, lapd\n(renderer {' + '.join(CHECK_SUITES)}: not used to fit)", fontsize=11)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    print(f"reliability diagram written to {out}")


def real(out_dir, stacks=("balls/25", "keyboard/32", *(f"focus_stack/{i}" for i in (1, 4, 5, 7, 27, 33, 56, 62, 80,
                                                                                          91)))):
    """Real stacks (../shared/datasets/seed): mean confidence and low-confidence share,
    before (the refine mode's own number; low: below 0.1) and after (the probability;
    low: below 0.5), and the 2-D plot and confidence.png of each in ``out_dir``."""
    import glob
    import re
    from dffbatch import depth_from_focus
    from dffbatch.report.plots import depth_2d_png
    from dffbatch.report.views import confidence_u8
    from dffbatch.stages import confidence as C
    from dffbatch.stages.read import read_frame
    from dffbatch.stages.write import write_png
    seed = os.path.join(os.path.dirname(ROOT), "shared", "datasets", "seed")
    if not os.path.isdir(seed):
        print(f"real stacks skipped: {seed} is absent")
        return
    os.makedirs(out_dir, exist_ok=True)
    seen = {}
    orig = C.Calibrate.run

    def run(self, maps):
        seen["old"] = maps.confidence.copy()
        return orig(self, maps)

    C.Calibrate.run = run
    key = lambda p: int(re.search(r"(\d+)\.\w+$", p).group(1))  # noqa: E731
    print(f"{'stack':16} {'before: mean':>12} {'low<0.1':>8}   {'after: mean':>11} {'low<0.5':>8}")
    try:
        for name in stacks:
            folder, _, idx = name.partition("/")
            pat = (os.path.join(seed, folder, f"{idx}__refocus_*.jpg") if folder == "focus_stack"
                   else os.path.join(seed, folder, idx, "*.jpg"))
            files = sorted(glob.glob(pat), key=key)
            if not files:
                print(f"{name}: absent")
                continue
            r = depth_from_focus([read_frame(f) for f in files])
            old, new = seen["old"], r.confidence
            print(f"{name:16} {old.mean():12.3f} {(old < 0.1).mean():8.1%}   {new.mean():11.3f} "
                  f"{(new < C.LOW).mean():8.1%}", flush=True)
            tag = name.replace("/", "_")
            with open(os.path.join(out_dir, f"{tag}_depth_2d.png"), "wb") as fh:
                fh.write(depth_2d_png(r.depth, name, confidence=new, near_low=True))
            write_png(os.path.join(out_dir, f"{tag}_confidence.png"), confidence_u8(new))
    finally:
        C.Calibrate.run = orig
    print(f"plots and confidence maps written to {out_dir}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--out", default="reliability.png")
    ap.add_argument("--check-only", action="store_true")
    ap.add_argument("--slope-by", choices=("ece", "logloss"), default="ece",
                    help="what RANK_SLOPE minimises on the fitting suites (see fit_slope)")
    ap.add_argument("--select", action="store_true", help="only the choice of each mode's features (fitting suites)")
    ap.add_argument("--real", metavar="DIR", help="only the real stacks: their figures, plots and confidence maps into DIR")
    a = ap.parse_args()
    if a.real:
        real(a.real)
        return
    if a.select:
        select(a.size, a.frames)
        return
    if not a.check_only:
        from dffbatch.stages import confidence as C
        coef, C.UNKNOWN, flat, slope = fit(a.size, a.frames, a.slope_by)
        C.COEF.update({m: tuple(float(v) for v in b) for m, b in coef.items()})
        C.RANK_SLOPE.update(slope)
        C.FLAT.clear()
        C.FLAT.update(flat)
    check(a.size, a.frames, a.out)


if __name__ == "__main__":
    main()
