"""Plant single-line bugs one at a time and check that the test suite catches each.

    python tools/mutants.py [--only NAME ...] [--list]

For every mutant: a temporary copy of the package, the tests and the bundled dataset
(Numba's on-disk cache comes along, so only the mutated module recompiles), one line
replaced, then the README's test command with ``-x`` in the copy. A mutant *survives*
when the suite still passes. Slow (up to a suite run per survivor): not part of CI;
its result goes in the closing notes. Exit status 1 if any mutant survives.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: name: (file, text as it stands, text planted, what the bug is)
MUTANTS = {
    "fill-keeps-doubt": ("dffbatch/stages/fill.py", "            t = w[y, x]\n",
                         "            t = np.float32(1.0) - w[y, x]\n",
                         "the fill replaces the confident pixels and keeps the doubtful ones"),
    "fill-loose-guide": ("dffbatch/stages/fill.py", "LAMBDA, SIGMA = 400.0, 0.01", "LAMBDA, SIGMA = 400.0, 10.0",
                         "the fill crosses object outlines (no edge stops it)"),
    "warmup-one-helper": ("dffbatch/batch/warmup.py", "        j = load.index(min(load))", "        j = 0",
                          "the whole compile list goes to the first helper while the others idle"),
    "confidence-unknown-cap": ("dffbatch/stages/confidence.py",
                               "out[y, x] = min(p, unknown) if feats[5, y, x] < bare else p", "out[y, x] = p",
                               "a bare backdrop (no evidence within reach) reads as confident"),
    "hybrid-top-level": ("dffbatch/stages/hybrid.py", "img = readonly(interp)  # above the fused levels",
                         "img = low_interp  # above the fused levels",
                         "the hybrid's coarse levels from the blended low-pass, not the interpolate image"),
    "depth8-near-white": ("dffbatch/report/views.py", '    if near == "first":\n        t = np.float32(1.0) - t',
                          '    if near != "first":\n        t = np.float32(1.0) - t', "depth8.png with near = black"),
    "job-key-ignores-inputs": ("dffbatch/batch/jobs.py", '"inputs": fp,', '"inputs": [],',
                               "resume serves stale results after a frame changes"),
    "depth-png-scale": ("dffbatch/batch/jobs.py", "scale = 65535.0 / max(res.n_frames - 1, 1)",
                        "scale = 65535.0 / max(res.n_frames, 1)", "depth.png scaled by 65535/N, not 65535/(N-1)"),
    "subframe-offset-sign": ("dffbatch/stages/depth.py", "max(-half, half * num / den)", "max(-half, -half * num / den)",
                             "sub-frame offset points away from the peak"),
    "confidence-formula": ("dffbatch/stages/depth.py", "cy[x] = (f0 - fsy[x] * inv_n) / f0 if f0 > 0.0",
                           "cy[x] = (f0 - fsy[x] * inv_n) / (f0 + 1) if f0 > 0.0",
                           "confidence no longer the relative prominence"),
    "composite-frame-choice": ("dffbatch/stages/composite.py", "            ma = ones if b == kk else zero\n            mb",
                               "            ma = ones if b != kk else zero\n            mb",
                               "select composite copies from the wrong frames"),
    "resume-output-check": ("dffbatch/batch/runner.py", "                if [st.st_size, st.st_mtime_ns] != stats[name]:",
                            "                if False:", "resume keeps damaged outputs"),
    "positions-key": ("dffbatch/batch/jobs.py",
                      "positions = [positions, input_fingerprint([os.path.join(os.path.dirname(stack.files[0]), "
                      "positions)])]", "positions = positions", "an edited positions file is not seen"),
    "second-peak-neighbour": ("dffbatch/stages/depth.py", "later = v if (kk - b >= 2 and v > sec) else sec",
                              "later = v if (kk - b >= 1 and v > sec) else sec",
                              "the peak's own neighbour counts as a second peak"),
    "evidence-amplitude": ("dffbatch/stages/depth.py", "out[y, x] = rp * (a * a / (a * a + t2))", "out[y, x] = rp",
                           "no texture is trusted like texture"),
    "fgs-no-normalise": ("dffbatch/stages/solve.py", "out[y, x] = wd[y, x] / s if s > eps else d[y, x]",
                         "out[y, x] = wd[y, x] if s > eps else d[y, x]", "the solve forgets to divide by S(w)"),
    "luma-weights": ("dffbatch/stages/measure.py", "np.float32(0.114 * scale)", "np.float32(0.214 * scale)",
                     "luminance weights that do not sum to 1"),
    "median-off-by-one": ("dffbatch/stages/refine.py", "    r = size // 2\n    H, W = depth.shape",
                          "    r = size // 2 + 1\n    H, W = depth.shape", "median window one pixel too wide"),
    "hidden-folders": ("dffbatch/batch/discover.py", 'if d.startswith(".") and not hidden:', "if False:",
                       "hidden folders read as stacks"),
    "channel-index": ("dffbatch/stages/hyperstack.py", 'want = {"T": t, "Z": z, "C": c}', 'want = {"T": t, "Z": z, "C": 0}',
                      "every channel read from channel 0"),
    "depth-units-interp": ("dffbatch/stages/post.py",
                           "maps.depth_units = np.interp(maps.depth, np.arange(maps.n), self.positions)",
                           "maps.depth_units = (self.positions[0] + maps.depth * (self.positions[-1] - self.positions[0])"
                           " / (maps.n - 1))",
                           "physical depth linear between the end positions"),
    "rank-order": ("dffbatch/report/page.py", "    rows.sort(key=lambda r: (r[\"rmse\"], -r[\"aif_psnr\"]))",
                   "    rows.sort(key=lambda r: (-r[\"rmse\"], -r[\"aif_psnr\"]))",
                   "sweep points ranked worst first"),
    "wls-reach-swapped": ("dffbatch/stages/post.py", "out[y, x] = t * d_near[y, x] + (np.float32(1.0) - t) * d_far[y, x]",
                          "out[y, x] = t * d_far[y, x] + (np.float32(1.0) - t) * d_near[y, x]",
                          "the far solve where evidence reached, the near one elsewhere"),
    "settle-wrong-neighbour": ("dffbatch/stages/composite.py", "                    if d < np.float32(k):",
                               "                    if d > np.float32(k):",
                               "aligned interpolate samples the neighbour the blend does not read"),
    "formats-depth-png-dropped": ("dffbatch/batch/jobs.py", '    if "png" in fmts["depth"]:', "    if False:",
                                  "outputs.formats.depth: [png] writes nothing"),
    "report-sort-reversed": ("dffbatch/report/assets/report.js", "return (x < y ? -1 : 1) * dir;",
                             "return (x < y ? 1 : -1) * dir;", "the job table sorts the wrong way round"),
    "hybrid-below-own-lowpass": ("dffbatch/stages/hybrid.py", "p = E_prev[i] if k > 0 else E[i]", "p = E[i]",
                                 "the hybrid's level 0 takes a frame's own low-pass for the frame below"),
    "hybrid-weight-power": ("dffbatch/stages/hybrid.py", "            for _ in range(log2p):",
                            "            for _ in range(log2p + 1):", "coarse levels weighed by F^8, not F^4"),
    "band-too-narrow": ("dffbatch/truth/metrics.py", "np.clip(i + radius + 1, 0, n)", "np.clip(i + radius, 0, n)",
                        "the halo band one pixel short on one side"),
}


def _copy(dst):
    # everything the suite reads: the package, the tests, the bundled dataset, the configs
    # the tests run, pyproject.toml (pytest's options) and tools/ (the browser tests' driver,
    # the vendored library's pins; not its node_modules)
    for name in ("dffbatch", "tests", "dataset", "configs", "tools", "pyproject.toml", "README.md"):
        src = os.path.join(ROOT, name)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(dst, name), ignore=shutil.ignore_patterns("node_modules", "__pycache__"))
        else:
            shutil.copy2(src, os.path.join(dst, name))


def run_mutant(name, spec, timeout):
    path, old, new, _ = spec
    with tempfile.TemporaryDirectory(prefix="dffbatch-mutant-") as tmp:
        _copy(tmp)
        f = os.path.join(tmp, path)
        text = open(f, encoding="utf-8").read()
        if old is not None:  # None: the control, the copy as it is
            if text.count(old) != 1:
                return "not planted", f"{path}: the text occurs {text.count(old)} times"
            open(f, "w", encoding="utf-8").write(text.replace(old, new))
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"], cwd=tmp,
                           env=dict(os.environ, PYTHONPATH=tmp), capture_output=True, text=True, timeout=timeout)
        took = time.perf_counter() - t
        if r.returncode == 0:
            return "SURVIVED", f"{took:.0f} s"
        failed = [l.split(" ")[1] for l in r.stdout.splitlines() if l.startswith("FAILED ") or l.startswith("ERROR ")]
        return "caught", f"{took:.0f} s by {failed[0] if failed else r.stdout.strip().splitlines()[-1]}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--timeout", type=int, default=900)
    a = ap.parse_args()
    names = a.only or list(MUTANTS)
    if a.list:
        for n in names:
            print(f"{n:26} {MUTANTS[n][0]:24} {MUTANTS[n][3]}")
        return 0
    # the control: the unmutated copy must pass, or every mutant would look caught
    status, detail = run_mutant("control", ("dffbatch/__init__.py", None, None, ""), a.timeout)
    if status != "SURVIVED":
        print(f"control: the unmutated copy fails the suite ({detail}); fix that first", flush=True)
        return 2
    print(f"{'control (no mutant)':26} {'passes':11} {detail}", flush=True)
    survivors = 0
    for n in names:
        status, detail = run_mutant(n, MUTANTS[n], a.timeout)
        survivors += status != "caught"
        print(f"{n:26} {status:11} {detail}", flush=True)
    print(f"{len(names) - survivors} of {len(names)} caught")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
