"""Stage *report*: ``summary.csv`` and a self-contained ``index.html`` per run.

The HTML opens from disk with no server; every file name and value is escaped.
When jobs carry ground-truth metrics, sweep points are ranked by mean depth RMSE
(then all-in-focus PSNR), with a bar chart per focus measure and the error maps of
the best and worst points.
"""
from __future__ import annotations

import csv
import html
import io
import os
from collections import defaultdict

import numpy as np

from .config import PARAM_KEYS
from .write import atomic_bytes, atomic_chunks, write_text

__all__ = ["write_summary", "write_report", "rank_sweeps"]

#: The original method of Nayar & Nakagawa as configured by the original script.
#: The original method's settings (median filter only, no alignment, the all-in-focus
#: image blended from the frames around the depth) -- marked in the ranking.
BASELINE = {"measure": "sml", "window": 3, "interpolation": "gaussian", "median": 3,
            "refine": "median", "align": "none", "composite": "interpolate"}

_METRICS = ("rmse", "mae", "bad1", "rmse_affine", "aif_psnr", "aif_ssim", "best_frame_psnr")


def write_summary(path, records):
    """``summary.csv``: a row per record (any iterable: rows stream to disk, one at a time)."""
    cols = ["job", "sweep", "stack", "status", "error", "n_frames", *PARAM_KEYS, *_METRICS,
            "t_read", "t_measure", "t_depth", "t_composite", "t_refine", "t_write", "t_plots", "t_total"]

    def rows():
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for i, r in enumerate(records):
            sweep, _, stack = r["id"].partition("/")
            t = r.get("timings", {})
            m = r.get("metrics", {})
            w.writerow([r["id"], sweep, stack, r["status"], r.get("error") or "", r.get("n_frames", ""),
                        *[r["params"].get(k, "") for k in PARAM_KEYS],
                        *[_fmt(m.get(k)) for k in _METRICS],
                        *[_fmt(t.get(k)) for k in ("read", "measure", "depth", "composite", "refine", "write",
                                                   "plots", "total")]])
            if i % 256 == 255:
                yield buf.getvalue().encode("utf-8")
                buf.seek(0)
                buf.truncate()
        yield buf.getvalue().encode("utf-8")
    atomic_chunks(path, rows())


def _fmt(v):
    if v is None or v == "":
        return ""
    return f"{v:.4f}" if isinstance(v, float) else v


def rank_sweeps(records):
    """Sweep points ranked by mean depth RMSE over their stacks with ground truth."""
    by = defaultdict(list)
    for r in records:
        if r["status"] == "ok" and "rmse" in r.get("metrics", {}):
            by[r["id"].partition("/")[0]].append(r)
    rows = []
    for sweep, rs in by.items():
        gain = [r["metrics"]["aif_psnr"] - r["metrics"]["best_frame_psnr"] for r in rs
                if "aif_psnr" in r["metrics"] and "best_frame_psnr" in r["metrics"]]
        rows.append({"sweep": sweep, "params": rs[0]["params"], "n": len(rs),
                     "rmse": float(np.mean([r["metrics"]["rmse"] for r in rs])),
                     "mae": float(np.mean([r["metrics"]["mae"] for r in rs])),
                     "bad1": float(np.mean([r["metrics"]["bad1"] for r in rs])),
                     "aif_psnr": float(np.mean([r["metrics"].get("aif_psnr", np.nan) for r in rs])),
                     "aif_gain_min": float(min(gain)) if gain else float("nan")})
    rows.sort(key=lambda r: (r["rmse"], -r["aif_psnr"]))
    return rows


def _e(v):
    return html.escape(str(v), quote=True)


def _img(src, alt):
    return f'<a href="{_e(src)}"><img src="{_e(src)}" alt="{_e(alt)}" loading="lazy"></a>'


def write_report(run_dir, manifest, records):
    """Write ``index.html`` (and ranking charts when ground truth exists)."""
    ok = [r for r in records if r["status"] == "ok"]
    bad = [r for r in records if r["status"] != "ok"]
    parts = [f"""<!doctype html><html><head><meta charset="utf-8"><title>dffbatch run {_e(manifest['run'])}</title>
<style>body{{font-family:sans-serif;margin:1.5em;color:#222}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left}} img{{width:220px;margin:2px;border:1px solid #ddd}}
.card{{display:inline-block;vertical-align:top;margin:6px;padding:6px;border:1px solid #ddd}}
.row{{white-space:nowrap;overflow-x:auto}} .row .card{{white-space:normal}}
.bad{{color:#b00}} .small{{font-size:12px;color:#555}}</style></head><body>
<h1>dffbatch run <code>{_e(manifest['run'])}</code></h1>
<p class="small">started {_e(manifest.get('started'))} &middot; finished {_e(manifest.get('finished'))} &middot;
dffbatch {_e(manifest['versions'].get('dffbatch'))} &middot; {_e(len(ok))} ok, {_e(len(bad))} failed,
{_e(manifest.get('jobs_total'))} jobs &middot; <a href="summary.csv">summary.csv</a> &middot;
<a href="manifest.json">manifest.json</a> &middot; <a href="run.log">run.log</a></p>"""]
    if bad:
        parts.append("<h2 class='bad'>Failures</h2><table><tr><th>job</th><th>reason</th></tr>")
        parts += [f"<tr><td>{_e(r['id'])}</td><td>{_e(r.get('error'))}</td></tr>" for r in bad]
        parts.append("</table>")
    ranking = rank_sweeps(records)
    if ranking:
        parts.append(_ranking_html(run_dir, ranking, records))
    parts.append("<h2>Results</h2>")
    # one row per stack, its sweep points side by side (e.g. aligned next to unaligned)
    by_stack = defaultdict(list)
    for r in ok:
        by_stack[r["id"].partition("/")[2]].append(r)
    for stack, rs in by_stack.items():
        parts.append("<div class='row'>" + (f"<h3>{_e(stack)}</h3>" if len(rs) > 1 else ""))
        for r in rs:
            sweep = r["id"].partition("/")[0]
            base = f"{sweep}/{stack}"
            m = r.get("metrics", {})
            mtxt = " &middot; ".join(f"{k} {_e(_fmt(m[k]))}" for k in ("rmse", "aif_psnr") if k in m)
            what = ", ".join(f"{k} {_e(r['params'].get(k))}" for k in ("align", "refine", "composite")
                             if len(rs) > 1 and r["params"].get(k) not in (None, "none"))
            imgs = "".join(_img(f"{base}/{f}", f) for f in ("allfocus.png", "depth_2d.png", "depth_3d.png",
                                                             "alignment.png") if f in r.get("outputs", {}))
            note = (r.get("alignment") or {}).get("note")
            note = f"<br><span class='small'>alignment: {_e(note)}</span>" if note else ""
            parts.append(f"<div class='card'><b>{_e(stack)}</b><br><span class='small'>{_e(sweep)} &middot; "
                         f"{_e(r.get('n_frames'))} frames {mtxt}{' &middot; ' + what if what else ''}</span>"
                         f"{note}<br>{imgs}</div>")
        parts.append("</div>")
    parts.append("<h2>Jobs</h2><table><tr><th>job</th><th>status</th><th>frames</th><th>rmse</th>"
                 "<th>AiF PSNR</th><th>time (s)</th></tr>")
    for r in records:
        m = r.get("metrics", {})
        parts.append(f"<tr><td>{_e(r['id'])}</td><td class='{'bad' if r['status'] != 'ok' else ''}'>"
                     f"{_e(r['status'])}</td><td>{_e(r.get('n_frames', ''))}</td><td>{_e(_fmt(m.get('rmse')))}</td>"
                     f"<td>{_e(_fmt(m.get('aif_psnr')))}</td><td>{_e(_fmt(r.get('timings', {}).get('total')))}</td></tr>")
    parts.append("</table></body></html>\n")
    write_text(os.path.join(run_dir, "index.html"), "\n".join(parts))


def _ranking_html(run_dir, ranking, records):
    from .plots import bar_chart_png, error_map_png
    rows = ["<h2>Sweep ranking (mean depth RMSE, frames; ground truth)</h2><table><tr><th>#</th><th>sweep</th>"
            + "".join(f"<th>{k}</th>" for k in PARAM_KEYS)
            + "<th>stacks</th><th>RMSE</th><th>MAE</th><th>&gt;1 frame</th><th>AiF PSNR (dB)</th>"
              "<th>min AiF gain over best frame (dB)</th></tr>"]
    for i, r in enumerate(ranking, 1):
        base = all(r["params"].get(k) == v for k, v in BASELINE.items())
        label = _e(r["sweep"]) + (" <b>(baseline: original method)</b>" if base else "")
        rows.append(f"<tr><td>{i}</td><td>{label}</td>"
                    + "".join(f"<td>{_e(r['params'].get(k))}</td>" for k in PARAM_KEYS)
                    + f"<td>{r['n']}</td><td>{r['rmse']:.4f}</td><td>{r['mae']:.4f}</td><td>{r['bad1']:.3f}</td>"
                      f"<td>{r['aif_psnr']:.2f}</td><td>{r['aif_gain_min']:.2f}</td></tr>")
    rows.append("</table>")
    by_measure = defaultdict(list)
    for r in ranking:
        by_measure[r["params"]["measure"]].append(r["rmse"])
    labels = sorted(by_measure, key=lambda m: min(by_measure[m]))
    atomic_bytes(os.path.join(run_dir, "ranking_measures.png"),
                 bar_chart_png(labels, [min(by_measure[m]) for m in labels], "best mean depth RMSE (frame)",
                               "best sweep point per focus measure"))
    rows.append(_img("ranking_measures.png", "RMSE per measure"))
    if len(ranking) > 1:
        import tifffile
        for tag, r in (("best", ranking[0]), ("worst", ranking[-1])):
            rec = next((x for x in records if x["id"].startswith(r["sweep"] + "/") and x["status"] == "ok"), None)
            if rec is None:
                continue
            d = os.path.join(run_dir, rec["id"])
            try:
                gt_path = rec.get("gt_depth")
                if gt_path and os.path.exists(gt_path):
                    gt = tifffile.imread(gt_path)
                    if rec.get("crop"):
                        y0, y1, x0, x1 = rec["crop"]
                        gt = gt[y0:y1, x0:x1]
                    err = tifffile.imread(os.path.join(d, "depth.tif")) - gt
                    atomic_bytes(os.path.join(run_dir, f"error_{tag}.png"),
                                 error_map_png(err, f"{tag}: {r['sweep']} on {rec['id'].partition('/')[2]}"))
                    rows.append(_img(f"error_{tag}.png", f"{tag} error map"))
            except OSError:
                pass
    return "\n".join(rows)
