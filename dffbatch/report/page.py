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
import json
import os
from collections import defaultdict

import numpy as np

from ..batch.config import PARAM_KEYS
from ..stages.write import atomic_bytes, atomic_chunks, write_text

__all__ = ["write_summary", "write_report", "rank_sweeps"]

#: The original method of Nayar & Nakagawa as configured by the original script.
#: The original method's settings (median filter only, no alignment, the all-in-focus
#: image blended from the frames around the depth) -- marked in the ranking.
BASELINE = {"measure": "sml", "window": 3, "interpolation": "gaussian", "median": 3,
            "refine": "median", "align": "none", "composite": "interpolate"}

_METRICS = ("rmse", "mae", "bad1", "rmse_affine", "aif_psnr", "aif_ssim", "aif_band_psnr", "best_frame_psnr")


def write_summary(path, records):
    """``summary.csv``: a row per record (any iterable: rows stream to disk, one at a time)."""
    cols = ["job", "sweep", "stack", "status", "error", "n_frames", "skipped_frames", *PARAM_KEYS,
            "confidence_mean", "low_confidence", "align_model", "align_applied", *_METRICS,
            "t_read", "t_measure", "t_depth", "t_composite", "t_refine", "t_write", "t_plots", "t_total"]

    def rows():
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for i, r in enumerate(records):
            sweep, _, stack = r["id"].partition("/")
            t = r.get("timings", {})
            m = r.get("metrics", {})
            al = r.get("alignment") or {}
            w.writerow([r["id"], sweep, stack, r["status"], r.get("error") or "", r.get("n_frames", ""),
                        _skipped(r) or "", *[r["params"].get(k, "") for k in PARAM_KEYS],
                        _fmt(r.get("confidence_mean")), _fmt(r.get("low_confidence")), al.get("model", ""),
                        "" if "applied" not in al else int(bool(al["applied"])),
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
    """Sweep points ranked by mean depth RMSE over their stacks with ground truth.

    ``records``: any iterable (one pass; only a few numbers per record are kept).
    """
    by = {}
    for r in records:
        m = r.get("metrics", {})
        if r["status"] != "ok" or "rmse" not in m:
            continue
        a = by.setdefault(r["id"].partition("/")[0], {"params": r["params"], "rmse": [], "mae": [], "bad1": [],
                                                      "aif_psnr": [], "band": [], "gain": []})
        for k in ("rmse", "mae", "bad1"):
            a[k].append(m[k])
        a["aif_psnr"].append(m.get("aif_psnr", np.nan))
        if "aif_band_psnr" in m:
            a["band"].append(m["aif_band_psnr"])
        if "aif_psnr" in m and "best_frame_psnr" in m:
            a["gain"].append(m["aif_psnr"] - m["best_frame_psnr"])
    rows = []
    for sweep, a in by.items():
        rows.append({"sweep": sweep, "params": a["params"], "n": len(a["rmse"]),
                     "rmse": float(np.mean(a["rmse"])), "mae": float(np.mean(a["mae"])),
                     "bad1": float(np.mean(a["bad1"])), "aif_psnr": float(np.mean(a["aif_psnr"])),
                     "aif_band_psnr": float(np.mean(a["band"])) if a["band"] else float("nan"),
                     "aif_gain_min": float(min(a["gain"])) if a["gain"] else float("nan")})
    rows.sort(key=lambda r: (r["rmse"], -r["aif_psnr"]))
    return rows


def _e(v):
    return html.escape(str(v), quote=True)


def _img(src, alt):
    return f'<a href="{_e(src)}"><img src="{_e(src)}" alt="{_e(alt)}" loading="lazy"></a>'


def _asset(name) -> str:
    from importlib.resources import files
    return files("dffbatch").joinpath("report", "assets", name).read_text(encoding="utf-8")


def _job_row(r, sweep_index):
    """One row of ``jobs.js`` (the order of ``J`` in report.js)."""
    m = r.get("metrics", {})
    shape = r.get("shape") or []
    o = r.get("outputs") or {}
    views = ((1 if "view/thumb.webp" in o else 0) | (2 if "view/error.jpg" in o else 0) | (4 if "view/mesh.js" in o else 0)
             | (8 if "view/thumb_depth.jpg" in o and "view/thumb_confidence.jpg" in o else 0))
    sweep, _, stack = r["id"].partition("/")
    return [r["id"], sweep_index.setdefault(sweep, len(sweep_index)), stack, r["status"], r.get("n_frames"),
            f"{shape[0]}x{shape[1]}" if len(shape) >= 2 else None, (r.get("timings") or {}).get("total"),
            r.get("confidence_mean"), r.get("low_confidence"), m.get("rmse"), m.get("aif_psnr"),
            r.get("error"), views, ((r.get("alignment") or {}).get("note")) or None, m.get("aif_band_psnr"),
            _skipped(r)]


def _skipped(r):
    """The unreadable frames a job dropped (``on_bad_frame: skip``), by file name, or None."""
    return "; ".join(os.path.basename(f) for f in r.get("skipped_frames") or ()) or None


def _sweep_labels(params_of):
    """Each sweep point labelled by the parameters that differ between the points (all equal: none)."""
    keys = [k for k in PARAM_KEYS if len({json.dumps(p.get(k), default=str) for p in params_of.values()}) > 1]
    return {s: ", ".join(f"{k} {p.get(k)}" for k in keys) for s, p in params_of.items()}


def write_report(run_dir, manifest, records, n_jobs=None, max_failures=200):
    """Write ``index.html`` and ``jobs.js`` (and ranking charts when ground truth exists).

    ``records``: a list, or a callable returning a fresh iterator over them (the run
    store: a large run is never held in memory). One pass counts and collects the
    failures and the sweep points; a second streams every job into ``jobs.js`` (loaded
    by a plain script tag: works from file://, no server, no network), from which the
    page draws a paged grid of thumbnails, a sortable, filterable job table and the
    viewer (``dffbatch/report/assets/report.js``, inlined).
    """
    source = records if callable(records) else (lambda: iter(records))
    n_ok = n_failed = 0
    failures, params_of, gt, mesh = [], {}, False, False
    for r in source():
        params_of.setdefault(r["id"].partition("/")[0], r.get("params") or {})
        if r["status"] != "ok":
            n_failed += 1
            if len(failures) < max_failures:
                failures.append((r["id"], r.get("error")))
            continue
        n_ok += 1
        gt = gt or "rmse" in (r.get("metrics") or {})
        mesh = mesh or "view/mesh.js" in (r.get("outputs") or {})
    labels = _sweep_labels(params_of)
    index = {s: i for i, s in enumerate(params_of)}
    sweeps = [{"id": s, "label": labels[s]} for s in params_of]

    def rows():
        head = {"sweeps": sweeps, "gt": gt}
        yield ("window.DFF = " + json.dumps(head)[:-1] + ', "jobs": [').encode()
        for i, r in enumerate(source()):
            yield ((",\n" if i else "\n") + json.dumps(_job_row(r, index), default=str)).encode()
        yield b"\n]};\n"
    atomic_chunks(os.path.join(run_dir, "jobs.js"), rows())
    if mesh:  # the 3-D view's library (three.js, bundled; see tools/build_vendor.py), loaded on demand
        from importlib.resources import files
        atomic_bytes(os.path.join(run_dir, "three-bundle.js"),
                     files("dffbatch").joinpath("report", "assets", "vendor", "three-bundle.js").read_bytes())
    total = manifest.get("jobs_total", n_ok + n_failed)
    parts = [f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dffbatch run {_e(manifest['run'])}</title><style>{_asset("report.css")}</style></head><body>
<h1>dffbatch run <code>{_e(manifest['run'])}</code></h1>
<p class="small">{n_ok} ok, {n_failed} failed, {_e(total)} jobs &middot; status {_e(manifest.get('status'))} &middot;
started {_e(manifest.get('started'))} &middot; finished {_e(manifest.get('finished'))} &middot;
dffbatch {_e((manifest.get('versions') or {}).get('dffbatch'))} &middot; <a href="summary.csv">summary.csv</a> &middot;
<a href="manifest.json">manifest.json</a> &middot; <a href="run.log">run.log</a></p>"""]
    if failures:
        more = f" (the first {len(failures)}; all in summary.csv)" if n_failed > len(failures) else ""
        parts.append(f"<h2 class='bad'>Failures: {n_failed}{more}</h2><table><tr><th>job</th><th>reason</th></tr>"
                     + "".join(f"<tr><td>{_e(j)}</td><td>{_e(e)}</td></tr>" for j, e in failures) + "</table>")
    ranking = rank_sweeps(source())
    if ranking:
        parts.append(_ranking_html(run_dir, ranking, source()))
    parts.append("""<h2>Stacks</h2>
<div class="bar"><input id="filter" type="search" placeholder="filter: stack, status, sweep, error">
<label class="small">order <select id="sort"></select></label>
<span id="thumbkind" class="seg" role="group" aria-label="thumbnails"><span class="small">thumbnails</span>
<button type="button" data-kind="allfocus">all-in-focus</button><button type="button" data-kind="depth">depth</button><button
 type="button" data-kind="confidence">confidence</button></span><span id="thumblegend" class="small"></span>
<button id="cprev">&larr;</button><button id="cnext">&rarr;</button> <span id="cardinfo" class="small"></span>
<span class="small">click a stack for the viewer: all-in-focus, depth, confidence at full size</span></div>
<div id="grid" class="grid"></div>
<h2>Jobs</h2><p><button id="prev">&larr;</button> <button id="next">&rarr;</button> <span id="pageinfo"></span>
<span class="small">(click a column to sort; the filter above applies)</span></p><table id="jobs"></table>
<div id="viewer" role="dialog" aria-label="viewer"><div class="top" id="vtop"></div><div class="panels" id="vpanels"></div></div>
<script src="jobs.js"></script>""")
    parts.append(f"<script>{_asset('report.js')}</script>\n</body></html>\n")
    write_text(os.path.join(run_dir, "index.html"), "\n".join(parts))


def _ranking_html(run_dir, ranking, records):
    from .plots import bar_chart_png, error_map_png
    # columns for the parameters the points differ in; the shared ones in a line above
    # (with 18 parameters as columns the table ran off the page, most of them constant)
    keys = [k for k in PARAM_KEYS if len({json.dumps(r["params"].get(k), default=str) for r in ranking}) > 1]
    shared = [k for k in PARAM_KEYS if k not in keys and ranking[0]["params"].get(k) is not None]
    rows = ["<h2>Sweep ranking (mean depth RMSE, frames; ground truth)</h2>"
            + (f'<p class="small">{"every point" if len(ranking) > 1 else "parameters"}: '
               + ", ".join(f"{k} <b>{_e(ranking[0]['params'].get(k))}</b>" for k in shared) + "</p>" if shared else "")
            + '<div class="wide"><table><tr><th>#</th><th>sweep</th>'
            + "".join(f"<th>{k}</th>" for k in keys)
            + "<th>stacks</th><th>RMSE</th><th>MAE</th><th>&gt;1 frame</th><th>AiF PSNR (dB)</th>"
              "<th>AiF PSNR at depth jumps (dB)</th><th>min AiF gain over best frame (dB)</th></tr>"]
    for i, r in enumerate(ranking, 1):
        base = all(r["params"].get(k) == v for k, v in BASELINE.items())
        label = _e(r["sweep"]) + (" <b>(baseline: original method)</b>" if base else "")
        rows.append(f"<tr><td>{i}</td><td>{label}</td>"
                    + "".join(f"<td>{_e(r['params'].get(k))}</td>" for k in keys)
                    + f"<td>{r['n']}</td><td>{r['rmse']:.4f}</td><td>{r['mae']:.4f}</td><td>{r['bad1']:.3f}</td>"
                      f"<td>{r['aif_psnr']:.2f}</td><td>{r['aif_band_psnr']:.2f}</td><td>{r['aif_gain_min']:.2f}</td></tr>")
    rows.append("</table></div>")
    by_measure = defaultdict(list)
    for r in ranking:
        by_measure[r["params"]["measure"]].append(r["rmse"])
    labels = sorted(by_measure, key=lambda m: min(by_measure[m]))
    if len(labels) > 1:  # one measure would make a one-bar chart: the table says it all
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
