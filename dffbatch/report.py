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
    """Sweep points ranked by mean depth RMSE over their stacks with ground truth.

    ``records``: any iterable (one pass; only a few numbers per record are kept).
    """
    by = {}
    for r in records:
        m = r.get("metrics", {})
        if r["status"] != "ok" or "rmse" not in m:
            continue
        a = by.setdefault(r["id"].partition("/")[0], {"params": r["params"], "rmse": [], "mae": [], "bad1": [],
                                                      "aif_psnr": [], "gain": []})
        for k in ("rmse", "mae", "bad1"):
            a[k].append(m[k])
        a["aif_psnr"].append(m.get("aif_psnr", np.nan))
        if "aif_psnr" in m and "best_frame_psnr" in m:
            a["gain"].append(m["aif_psnr"] - m["best_frame_psnr"])
    rows = []
    for sweep, a in by.items():
        rows.append({"sweep": sweep, "params": a["params"], "n": len(a["rmse"]),
                     "rmse": float(np.mean(a["rmse"])), "mae": float(np.mean(a["mae"])),
                     "bad1": float(np.mean(a["bad1"])), "aif_psnr": float(np.mean(a["aif_psnr"])),
                     "aif_gain_min": float(min(a["gain"])) if a["gain"] else float("nan")})
    rows.sort(key=lambda r: (r["rmse"], -r["aif_psnr"]))
    return rows


def _e(v):
    return html.escape(str(v), quote=True)


def _img(src, alt):
    return f'<a href="{_e(src)}"><img src="{_e(src)}" alt="{_e(alt)}" loading="lazy"></a>'


#: Above this many jobs the report is a summary and a paged table (see _write_large_report).
LARGE_RUN = 300


def write_report(run_dir, manifest, records, n_jobs=None):
    """Write ``index.html`` (and ranking charts when ground truth exists).

    ``records``: a list, or a callable returning a fresh iterator over them (the run
    store: a large run is never held in memory). Runs of more than :data:`LARGE_RUN`
    jobs get the large-run report.
    """
    source = records if callable(records) else (lambda: iter(records))
    n = n_jobs if n_jobs is not None else (len(records) if not callable(records) else manifest.get("jobs_total", 0))
    if n > LARGE_RUN:
        return _write_large_report(run_dir, manifest, source)
    records = list(source())
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


_TABLE_JS = """
<script src="jobs.js"></script>
<script>
(function () {
  var cols = ["job", "status", "frames", "time (s)", "mean confidence", "low-confidence share", "rmse", "AiF PSNR"];
  var rows = window.DFF_JOBS || [], view = rows, page = 0, per = 100, key = -1, dir = 1;
  var gt = rows.some(function (r) { return r[6] !== null; });
  var show = cols.map(function (c, i) { return i < 6 || gt; });
  var table = document.getElementById("jobs"), info = document.getElementById("pageinfo");
  function cell(v, i, r) {
    if (i === 0) { return "<a href='" + encodeURI(r[0]) + "/'>" + esc(r[0]) + "</a>"; }
    if (v === null || v === undefined) { return ""; }
    return typeof v === "number" ? (Number.isInteger(v) ? v : v.toFixed(3)) : esc(v);
  }
  function esc(t) { return String(t).replace(/[&<>"']/g, function (c) {
    return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]; }); }
  function render() {
    var h = "<tr>" + cols.map(function (c, i) { return show[i] ? "<th data-i='" + i + "'>" + c +
      (i === key ? (dir > 0 ? " &#9650;" : " &#9660;") : "") + "</th>" : ""; }).join("") + "</tr>";
    view.slice(page * per, page * per + per).forEach(function (r) {
      h += "<tr" + (r[1] !== "ok" ? " class='bad'" : "") + ">" + r.map(function (v, i) {
        return show[i] ? "<td>" + cell(v, i, r) + "</td>" : ""; }).join("") + "</tr>"; });
    table.innerHTML = h;
    info.textContent = view.length ? "rows " + (page * per + 1) + "-" + Math.min(view.length, page * per + per) +
      " of " + view.length : "no rows";
  }
  table.addEventListener("click", function (e) {
    var i = e.target.getAttribute && e.target.getAttribute("data-i"); if (i === null) { return; }
    i = +i; dir = key === i ? -dir : 1; key = i;
    view.sort(function (a, b) { var x = a[i], y = b[i]; if (x === y) { return 0; } if (x === null) { return 1; }
      if (y === null) { return -1; } return (x < y ? -1 : 1) * dir; }); page = 0; render(); });
  document.getElementById("filter").addEventListener("input", function (e) {
    var q = e.target.value.toLowerCase(); view = rows.filter(function (r) {
      return !q || (r[0] + " " + r[1]).toLowerCase().indexOf(q) >= 0; }); page = 0; render(); });
  document.getElementById("prev").onclick = function () { if (page > 0) { page--; render(); } };
  document.getElementById("next").onclick = function () { if ((page + 1) * per < view.length) { page++; render(); } };
  render();
})();
</script>"""


def _job_row(r):
    m = r.get("metrics", {})
    return [r["id"], r["status"], r.get("n_frames"), (r.get("timings") or {}).get("total"),
            r.get("confidence_mean"), r.get("low_confidence"), m.get("rmse"), m.get("aif_psnr")]


def _write_large_report(run_dir, manifest, source, top=20, max_failures=200):
    """A report that holds at any size: the summary first, every job in a paged table.

    One pass over the records keeps only counts and top-k lists; a second streams the
    rows into ``jobs.js`` (loaded by a plain script tag: works from file://, no server,
    no network), which the page shows 100 at a time, sortable and filterable.
    """
    import heapq
    import json
    n_ok = n_failed = 0
    failures, slowest, least = [], [], []
    for i, r in enumerate(source()):
        if r["status"] != "ok":
            n_failed += 1
            if len(failures) < max_failures:
                failures.append((r["id"], r.get("error")))
            continue
        n_ok += 1
        t = (r.get("timings") or {}).get("total") or 0.0
        item = (t, i, r["id"], r.get("n_frames"))
        (heapq.heappush if len(slowest) < top else heapq.heappushpop)(slowest, item)
        c = r.get("confidence_mean")
        if c is not None:
            item = (-c, i, r["id"], r.get("low_confidence"))
            (heapq.heappush if len(least) < top else heapq.heappushpop)(least, item)

    def rows():
        yield b"window.DFF_JOBS = ["
        for i, r in enumerate(source()):
            yield ((",\n" if i else "\n") + json.dumps(_job_row(r), default=str)).encode()
        yield b"\n];\n"
    atomic_chunks(os.path.join(run_dir, "jobs.js"), rows())
    parts = [f"""<!doctype html><html><head><meta charset="utf-8"><title>dffbatch run {_e(manifest['run'])}</title>
<style>body{{font-family:sans-serif;margin:1.5em;color:#222}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left}} th{{cursor:pointer;background:#f4f4f4}}
.bad{{color:#b00}} .small{{font-size:12px;color:#555}} .cols{{display:flex;gap:2em;flex-wrap:wrap}}</style>
</head><body><h1>dffbatch run <code>{_e(manifest['run'])}</code></h1>
<p>{n_ok} ok, {n_failed} failed, {_e(manifest.get('jobs_total'))} jobs &middot; status {_e(manifest.get('status'))}
&middot; started {_e(manifest.get('started'))} &middot; finished {_e(manifest.get('finished'))} &middot;
<a href="summary.csv">summary.csv</a> &middot; <a href="manifest.json">manifest.json</a> &middot;
<a href="run.log">run.log</a></p>"""]
    if failures:
        more = f" (the first {len(failures)}; all in summary.csv)" if n_failed > len(failures) else ""
        parts.append(f"<h2 class='bad'>Failures: {n_failed}{more}</h2><table><tr><th>job</th><th>reason</th></tr>"
                     + "".join(f"<tr><td>{_e(j)}</td><td>{_e(e)}</td></tr>" for j, e in failures) + "</table>")
    parts.append("<div class='cols'><div><h2>Slowest</h2><table><tr><th>job</th><th>s</th><th>frames</th></tr>"
                 + "".join(f"<tr><td><a href='{_e(j)}/'>{_e(j)}</a></td><td>{t:.2f}</td><td>{_e(n)}</td></tr>"
                           for t, _, j, n in sorted(slowest, reverse=True)) + "</table></div>")
    parts.append("<div><h2>Least confident</h2><table><tr><th>job</th><th>mean confidence</th>"
                 "<th>low-confidence share</th></tr>"
                 + "".join(f"<tr><td><a href='{_e(j)}/'>{_e(j)}</a></td><td>{-c:.3f}</td><td>{_e(lo)}</td></tr>"
                           for c, _, j, lo in sorted(least, reverse=True)) + "</table></div></div>")
    ranking = rank_sweeps(source())
    if ranking:
        parts.append(_ranking_html(run_dir, ranking, source()))
    parts.append("<h2>Jobs</h2><p><input id='filter' placeholder='filter: job or status'> "
                 "<button id='prev'>&larr;</button> <button id='next'>&rarr;</button> <span id='pageinfo'></span>"
                 " <span class='small'>(click a column to sort)</span></p><table id='jobs'></table>")
    parts.append(_TABLE_JS + "\n</body></html>\n")
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
