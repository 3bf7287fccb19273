"""Issue 6's tables from a finished refinement sweep.

    python -m dffbatch synth --suite refine outputs/refine_scenes --size 256 256 --frames 12
    python -m dffbatch configs/sweep_refine.yaml
    python benchmarks/refine_table.py [outputs/sweep_refine/summary.csv]

Depth: mean RMSE over each scene's clean and noisy rendering (clean/noisy in brackets),
and the change against median-only (lapd, window 9, median 5: the default path).
All-in-focus: PSNR of ``pyramid`` against ``select`` per scene.
"""
import csv
import sys
from collections import defaultdict

GROUPS = ("step-checker", "step-lowtex", "sphere-lowtex", "slant-noise", "terrain-noise", "sinusoid-noise")


def main(path="outputs/sweep_refine/summary.csv"):
    runs = defaultdict(dict)
    for r in csv.DictReader(open(path, newline="")):
        if r["status"] != "ok":
            continue
        scene = r["stack"].split("__")[-1]
        runs[(int(r["window"]), r["refine"], int(r["median"]), r["composite"])][scene] = \
            (float(r["rmse"]), float(r["aif_psnr"]))
    base = runs[(9, "median", 5, "select")]

    def mean(res, g, i=0):
        return (res[g + "-clean"][i] + res[g + "-noisy"][i]) / 2

    print("depth RMSE, mean of clean and noisy (clean/noisy), change against median-only")
    print(f"{'window refine median composite':32}{'all':>7}  " + "  ".join(f"{g:>26}" for g in GROUPS))
    for key in sorted(runs, key=lambda k: sum(v[0] for v in runs[k].values()) / len(runs[k])):
        res = runs[key]
        cells = []
        for g in GROUPS:
            m = mean(res, g)
            cells.append(f"{m:.3f} {(m / mean(base, g) - 1) * 100:+4.0f}% ({res[g + '-clean'][0]:.2f}/"
                         f"{res[g + '-noisy'][0]:.2f})")
        allm = sum(v[0] for v in res.values()) / len(res)
        print(f"{'%d %s %d %s' % key:32}{allm:7.3f}  " + "  ".join(f"{c:>26}" for c in cells))
    print("\nall-in-focus PSNR (dB), window 9, median 5, refine median: select -> pyramid")
    sel, pyr = runs[(9, "median", 5, "select")], runs[(9, "median", 5, "pyramid")]
    for scene in sorted(sel):
        print(f"  {scene:24}{sel[scene][1]:7.2f} -> {pyr[scene][1]:6.2f}  ({pyr[scene][1] - sel[scene][1]:+.2f})")


if __name__ == "__main__":
    main(*sys.argv[1:])
