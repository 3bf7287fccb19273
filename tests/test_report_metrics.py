"""Rankings, the summary's columns, all-in-focus figures and SSIM, against exact expected values."""
import csv

import numpy as np
import pytest

from dffbatch.batch.config import PARAM_KEYS
from dffbatch.truth.metrics import ssim
from dffbatch.report.page import rank_sweeps, write_summary


def _rec(sweep, stack, rmse, psnr=None, best=None, status="ok", **params):
    m = {"rmse": rmse, "mae": rmse / 2, "bad1": 0.0}
    if psnr is not None:
        m["aif_psnr"] = psnr
    if best is not None:
        m["best_frame_psnr"] = best
    return {"id": f"{sweep}/{stack}", "status": status, "params": {"measure": sweep, **params}, "metrics": m,
            "timings": {"total": 1.5}, "n_frames": 7, "error": None if status == "ok" else "boom"}


def test_rank_sweeps_orders_by_mean_rmse_then_psnr_and_gives_the_worst_gain():
    recs = [_rec("b", "s1", 0.4, 30, 25), _rec("b", "s2", 0.2, 32, 31),      # mean 0.3, gains 5 and 1
            _rec("a", "s1", 0.5, 40, 20), _rec("a", "s2", 0.5, 40, 20),      # mean 0.5
            _rec("c", "s1", 0.3, 35, 34), _rec("c", "s2", 0.3, 33, 30),      # mean 0.3, higher psnr than b
            _rec("d", "s1", 0.1, status="failed"),                           # failed: not ranked
            {"id": "e/s1", "status": "ok", "params": {}, "metrics": {}}]     # no ground truth: not ranked
    rows = rank_sweeps(recs)
    assert [r["sweep"] for r in rows] == ["c", "b", "a"]                     # 0.3 (psnr 34) < 0.3 (psnr 31) < 0.5
    by = {r["sweep"]: r for r in rows}
    assert by["b"]["rmse"] == pytest.approx(0.3) and by["b"]["n"] == 2
    assert by["b"]["aif_gain_min"] == pytest.approx(1.0)                     # the smaller of 5 and 1
    assert by["c"]["aif_gain_min"] == pytest.approx(1.0) and by["a"]["aif_gain_min"] == pytest.approx(20.0)
    assert np.isnan(rank_sweeps([_rec("x", "s", 0.1, 30)])[0]["aif_gain_min"])  # no best-frame figure


def test_summary_columns_and_values(tmp_path):
    recs = [_rec("p1", "s1", 0.25, 31.5, 30.0, window=9), _rec("p1", "s2", 0.5, status="failed")]
    recs[0].update(confidence_mean=0.8125, low_confidence=0.0625,
                   alignment={"mode": "auto", "model": "similarity", "applied": True})
    write_summary(tmp_path / "summary.csv", iter(recs))  # any iterable: rows stream
    rows = list(csv.reader(open(tmp_path / "summary.csv", newline="")))
    assert rows[0] == ["job", "sweep", "stack", "status", "error", "n_frames", "skipped_frames", *PARAM_KEYS, "confidence_mean",
                       "low_confidence", "align_model", "align_applied", "rmse", "mae", "bad1",
                       "rmse_affine", "aif_psnr", "aif_ssim", "aif_band_psnr", "best_frame_psnr", "t_read", "t_measure",
                       "t_depth",
                       "t_composite", "t_refine", "t_write", "t_plots", "t_total"]
    r = dict(zip(rows[0], rows[1]))
    assert (r["job"], r["sweep"], r["stack"], r["status"], r["error"]) == ("p1/s1", "p1", "s1", "ok", "")
    assert (r["measure"], r["window"], r["rmse"], r["aif_psnr"], r["best_frame_psnr"], r["t_total"]) == \
        ("p1", "9", "0.2500", "31.5000", "30.0000", "1.5000")
    assert (r["confidence_mean"], r["low_confidence"], r["align_model"], r["align_applied"]) == \
        ("0.8125", "0.0625", "similarity", "1")
    r2 = dict(zip(rows[0], rows[2]))
    assert (r2["confidence_mean"], r2["align_model"], r2["align_applied"]) == ("", "", "")
    assert dict(zip(rows[0], rows[2]))["error"] == "boom" and len(rows) == 3


def _ssim_reference(a, b):
    """Wang et al. 2004 with SciPy's Gaussian filter (sigma 1.5, radius 5, mirrored borders)."""
    from scipy.ndimage import gaussian_filter
    f = lambda x: gaussian_filter(x, 1.5, truncate=5 / 1.5, mode="mirror")  # noqa: E731
    C1, C2 = 0.01 ** 2, 0.03 ** 2
    ma, mb = f(a), f(b)
    va, vb, cov = f(a * a) - ma * ma, f(b * b) - mb * mb, f(a * b) - ma * mb
    return float(np.mean((2 * ma * mb + C1) * (2 * cov + C2) / ((ma ** 2 + mb ** 2 + C1) * (va + vb + C2))))


@pytest.mark.parametrize("kind", ["grey", "rgb"])
def test_ssim_matches_an_independent_implementation(kind):
    rng = np.random.default_rng(4)
    shape = (40, 52) if kind == "grey" else (40, 52, 3)
    a = rng.integers(0, 256, shape).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 31, shape), 0, 255).astype(np.uint8)
    lum = (lambda x: x.astype(np.float64) / 255) if kind == "grey" else \
        (lambda x: (x.astype(np.float64) / 255) @ np.array([0.299, 0.587, 0.114]))
    assert ssim(b, a) == pytest.approx(_ssim_reference(lum(b), lum(a)), abs=1e-9)
    assert ssim(a, a) == pytest.approx(1.0)


def test_the_report_streams_every_job_into_its_data_file(tmp_path):
    import json
    from dffbatch.report.page import write_report
    n = 1050
    recs = []
    for i in range(n):
        r = _rec("p" if i % 2 else "q", f"s{i:04d}", 0.1, status="failed" if i % 100 == 7 else "ok")
        r["params"] = {"measure": "lapd", "window": 9 if i % 2 else 5}
        r["timings"] = {"total": float(i % 37)}
        r["confidence_mean"], r["low_confidence"] = 0.2 + (i % 50) / 100, 0.01
        r["shape"] = [30, 40, 3]
        r["outputs"] = {"view/thumb.webp": "x"}
        recs.append(r)
    recs[7]["error"] = "frame 3: <bad> & broken"
    calls = []
    manifest = {"run": "big", "versions": {}, "jobs_total": n, "status": "finished"}
    write_report(tmp_path, manifest, lambda: (calls.append(1), iter(recs))[1], n_jobs=n)  # streamed, not a list
    html = (tmp_path / "index.html").read_text()
    assert f"{n - 11} ok, 11 failed" in html and "Failures: 11" in html and "p/s0007" in html
    assert "&lt;bad&gt; &amp; broken" in html and "<bad>" not in html  # escaped
    js = (tmp_path / "jobs.js").read_text()
    data = json.loads(js[len("window.DFF = "):].rstrip().rstrip(";"))
    rows = data["jobs"]
    assert len(rows) == n and rows[7][:4] == ["p/s0007", 1, "s0007", "failed"] and rows[7][11] == recs[7]["error"]
    assert rows[0][:7] == ["q/s0000", 0, "s0000", "ok", 7, "30x40", 0.0] and rows[0][12] == 1
    assert [s["label"] for s in data["sweeps"]] == ["window 5", "window 9"]  # only what differs
    assert data["gt"] is True  # the records carry depth RMSE
    assert "<script src=\"jobs.js\"></script>" in html and "http" not in html.split("<body>")[1]  # nothing remote
    assert len(calls) >= 2  # the records are read as a stream, more than once, never kept


def test_the_size_of_a_non_square_stack_is_height_x_width(tmp_path):
    """jobs.js gives a stack's size as "HxW" (numpy's order), as report.js's aspect() reads it."""
    import json
    from PIL import Image
    from dffbatch.report.page import write_report
    from dffbatch.report.views import write_views
    H, W = 48, 96
    af = np.zeros((H, W, 3), np.uint8)
    r = _rec("p", "wide", 0.1)
    r["shape"] = list(af.shape)  # as the job records it: the all-in-focus image's shape
    r["outputs"] = write_views(tmp_path / "p" / "wide", af, np.zeros((H, W), np.float32), np.ones((H, W), np.float32), 7)
    write_report(tmp_path, {"run": "r", "versions": {}}, [r])
    js = (tmp_path / "jobs.js").read_text()
    row = json.loads(js[len("window.DFF = "):].rstrip().rstrip(";"))["jobs"][0]
    assert row[5] == "48x96" and Image.open(tmp_path / "p" / "wide" / "view/thumb.webp").size == (W, H)
    assert row[12] == 1 | 8  # the view/ images and the depth and confidence thumbnails of the grid's toggle


def test_the_measure_chart_needs_two_measures(tmp_path):
    from dffbatch.report.page import write_report
    manifest = {"run": "r", "versions": {}, "jobs_total": 4}
    one = [_rec("p1", "s1", 0.2, 30, 25), _rec("p2", "s1", 0.3, 30, 25)]  # both measure-less: one group
    for r in one:
        r["params"] = {"measure": "lapd"}
    write_report(tmp_path, manifest, one)
    assert not (tmp_path / "ranking_measures.png").exists()
    two = [dict(one[0], params={"measure": "lapd"}), dict(one[1], params={"measure": "sml"})]
    write_report(tmp_path, manifest, two)
    assert (tmp_path / "ranking_measures.png").exists() and "ranking_measures.png" in (tmp_path / "index.html").read_text()


def test_the_sweep_ranking_has_a_column_per_parameter_that_differs(tmp_path):
    import re
    from dffbatch.report.page import write_report
    recs = [_rec("p1", "s1", 0.2, 30, 25), _rec("p2", "s1", 0.3, 30, 25)]
    recs[0]["params"] = {"measure": "lapd", "window": 9, "refine": "wls"}
    recs[1]["params"] = {"measure": "sml", "window": 9, "refine": "wls"}
    write_report(tmp_path, {"run": "r", "versions": {}, "jobs_total": 2}, recs)
    page = (tmp_path / "index.html").read_text()
    table = page[page.index("Sweep ranking"):]
    head = re.findall(r"<th>([^<]*)</th>", table[:table.index("</tr>")])
    # with a column for each of the 18 parameters the table ran off the page
    assert head[:3] == ["#", "sweep", "measure"] and "window" not in head and "refine" not in head, head
    shared = table[:table.index("<table>")]
    assert "window <b>9</b>" in shared and "refine <b>wls</b>" in shared and "measure" not in shared


def test_edge_band_is_the_chebyshev_neighbourhood_of_depth_jumps():
    from dffbatch.truth.metrics import edge_band
    g = np.zeros((40, 50))
    g[10:25, 12:30] = 6.0
    g[30:, :] = 0.5  # a step of half a frame: not a jump
    jumps = np.zeros(g.shape, bool)
    jumps[:-1] |= np.abs(np.diff(g, axis=0)) > 1
    jumps[1:] |= np.abs(np.diff(g, axis=0)) > 1
    jumps[:, :-1] |= np.abs(np.diff(g, axis=1)) > 1
    jumps[:, 1:] |= np.abs(np.diff(g, axis=1)) > 1
    ys, xs = np.nonzero(jumps)
    yy, xx = np.mgrid[0:40, 0:50]
    dist = np.min(np.maximum(np.abs(yy[..., None] - ys), np.abs(xx[..., None] - xs)), axis=-1)
    assert np.array_equal(edge_band(g, 5), dist <= 5)
    assert not edge_band(np.full((8, 8), 3.0), 5).any()


def test_band_psnr_counts_only_the_band_and_joins_the_image_metrics():
    from dffbatch.truth.metrics import band_psnr, edge_band, image_metrics
    g = np.zeros((64, 64))
    g[20:40, 20:40] = 8.0
    gt = np.full((64, 64, 3), 100, np.uint8)
    pred = gt.copy()
    pred[0:3, 60:64] = 0  # far from the jump: outside the band of 5 px
    band = edge_band(g, 5)
    assert not band[0:3, 60:64].any()
    pred[20:22, 20:40] = 110  # inside the band: 40 pixels x 3 channels off by 10
    want = 10 * np.log10(255 ** 2 / (10 ** 2 * 40 / band.sum()))
    assert abs(band_psnr(pred, gt, g, 5) - want) < 1e-9
    m = image_metrics(pred, gt, g)
    assert set(m) == {"aif_psnr", "aif_ssim", "aif_band_psnr"} and m["aif_band_psnr"] < m["aif_psnr"] + 50
    assert "aif_band_psnr" not in image_metrics(pred, gt, np.zeros((64, 64)))  # no jump, no band
