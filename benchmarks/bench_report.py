"""The report at batch size, in headless Chromium.

    python benchmarks/bench_report.py [--data DIR] [--jobs 500] [--keep DIR]

1. Runs the default job on ``--data`` (the 100 focus_stack stacks; plots off) and adds
   up every image its report can load: the thumbnails, the viewer's images of every
   stack, the images in index.html. (The target: at most 20 MB for the 100 stacks; 19.9 MB
   with the grid's depth and confidence thumbnails of issue 30, the latter at half size.)
2. Makes a ``--jobs``-job report from those outputs (each job a folder of hard links to
   a real job's files, its record the real one renamed) and opens it in headless
   Chromium: the time to the first render (first contentful paint; the grid drawn; every
   image of the first screen loaded) and the bytes the first screen loaded (every
   request, by file size), then the same for the stack grid scrolled into view, and
   for its thumbnails switched to depth, then to confidence.

Needs Debian's ``chromium`` and ``chromium-driver`` and selenium (the dev extra).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from urllib.parse import unquote, urlparse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))
DEFAULT = os.path.join(os.path.dirname(ROOT), "shared", "datasets", "seed", "focus_stack")

from browser import chromium, requests, wait  # noqa: E402

VIEWER = ("view/thumb.webp", "view/thumb_depth.jpg", "view/thumb_confidence.jpg", "view/allfocus.webp",
          "view/depth.jpg", "view/confidence.jpg", "view/truth.jpg", "view/error.jpg")


def _jobs(run):
    js = open(os.path.join(run, "jobs.js")).read()
    return json.loads(js[len("window.DFF = "):].rstrip().rstrip(";"))


def referenced_bytes(run):
    """Bytes of every image the report can show: per job its view/ set, plus index.html's <img>."""
    total, n = 0, 0
    for r in _jobs(run)["jobs"]:
        for f in VIEWER:
            p = os.path.join(run, r[0], f)
            if os.path.exists(p):
                total += os.path.getsize(p)
                n += 1
    html = open(os.path.join(run, "index.html")).read()
    for src in set(re.findall(r'<img src="([^"]+)"', html)):
        total += os.path.getsize(os.path.join(run, unquote(src)))
        n += 1
    return total, n


def _first_screen(d, url):
    t = time.perf_counter()
    d.get(url)
    wait(d, "document.body.getAttribute('data-ready')", 60)
    shown = ("Array.from(document.images).filter(i => { const r = i.getBoundingClientRect();"
             " return r.bottom > 0 && r.top < innerHeight && r.width > 0; })")
    wait(d, f"{shown}.every(i => i.complete && i.naturalWidth > 0)", 60)
    wall = time.perf_counter() - t
    fcp = None  # the paint entry is queued after the paint: on a busy machine it can come late
    for _ in range(40):
        fcp = d.execute_script("const p = performance.getEntriesByName('first-contentful-paint')[0];"
                               " return p ? p.startTime : null")
        if fcp is not None:
            break
        time.sleep(0.05)
    return wall, fcp


def _loaded_bytes(urls):
    size = 0
    for u in set(urls):
        p = urlparse(u)
        if p.scheme == "file" and os.path.isfile(unquote(p.path)):
            size += os.path.getsize(unquote(p.path))
    return size


def big_report(run, n_jobs, where):
    """A report of ``n_jobs`` jobs over the real outputs of ``run`` (hard links, records renamed)."""
    from dffbatch.report.page import write_report
    man = json.load(open(os.path.join(run, "manifest.json")))
    real = [r for r in man["jobs"].values() if r["status"] == "ok"]
    recs = []
    for i in range(n_jobs):
        src = real[i % len(real)]
        rec = dict(src, id=f"{src['id'].split('/')[0]}/s{i:05d}")
        dst = os.path.join(where, rec["id"])
        for f in rec["outputs"]:
            os.makedirs(os.path.dirname(os.path.join(dst, f)), exist_ok=True)
            os.link(os.path.join(run, src["id"], f), os.path.join(dst, f))
        recs.append(rec)
    manifest = {k: v for k, v in man.items() if k != "jobs"}
    manifest["jobs_total"] = n_jobs
    t = time.perf_counter()
    write_report(where, manifest, recs)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DEFAULT)
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--keep", help="write the runs here (kept) instead of a temporary folder")
    a = ap.parse_args()
    if not os.path.isdir(a.data):
        print(f"skipped: {a.data} is absent (../shared/datasets is not next to the project)")
        return
    d, why = chromium(1400, 900)
    if d is None:
        print(f"skipped: {why}")
        return
    tmp = a.keep or tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    try:
        from dffbatch.cli import main as cli
        t = time.perf_counter()
        cli([os.path.join(ROOT, "configs", "run.yaml"), "--set", f"datasets=[{a.data}]", "--set",
             f"run.output={tmp}", "--set", "run.name=real", "--set", "outputs.plots=false", "--no-progress"])
        run = os.path.join(tmp, "real")
        n = len(_jobs(run)["jobs"])
        size, files = referenced_bytes(run)
        print(f"{n} stacks from {a.data} ({time.perf_counter() - t:.1f} s): the report references "
              f"{files} images, {size / 1e6:.1f} MB in all ({size / n / 1e3:.0f} kB per stack)")
        big = os.path.join(tmp, "big")
        os.makedirs(big, exist_ok=True)
        tw = big_report(run, a.jobs, big)
        print(f"{a.jobs}-job report written in {tw * 1e3:.0f} ms (index.html {os.path.getsize(os.path.join(big, 'index.html')) / 1e3:.0f} kB,"
              f" jobs.js {os.path.getsize(os.path.join(big, 'jobs.js')) / 1e3:.0f} kB)")
        url = "file://" + os.path.join(big, "index.html")
        for label in ("cold", "warm"):
            requests(d)  # drop what earlier loads logged
            wall, fcp = _first_screen(d, url)
            first = _loaded_bytes(requests(d))
            print(f"  {label}: first contentful paint {'n/a' if fcp is None else f'{fcp:.0f} ms'}; first screen drawn and its images loaded "
                  f"{wall * 1e3:.0f} ms; bytes loaded {first / 1e3:.0f} kB")
        d.execute_script("document.getElementById('grid').scrollIntoView()")
        t = time.perf_counter()
        wait(d, "Array.from(document.querySelectorAll('#grid img')).filter(i => { const r = i.getBoundingClientRect();"
                " return r.bottom > 0 && r.top < innerHeight; }).every(i => i.complete && i.naturalWidth > 0)", 60)
        grid = _loaded_bytes(requests(d))
        print(f"  the stack grid scrolled into view: thumbnails loaded in {(time.perf_counter() - t) * 1e3:.0f} ms, "
              f"{grid / 1e3:.0f} kB more")
        for kind in ("depth", "confidence"):
            t = time.perf_counter()
            d.execute_script(f"document.querySelector('#thumbkind button[data-kind={kind}]').click()")
            wait(d, "Array.from(document.querySelectorAll('#grid img')).filter(i => { const r = i.getBoundingClientRect();"
                    " return r.bottom > 0 && r.top < innerHeight; }).every(i => i.complete && i.naturalWidth > 0)", 60)
            more = _loaded_bytes(requests(d))
            print(f"  the grid's thumbnails switched to {kind}: loaded in {(time.perf_counter() - t) * 1e3:.0f} ms, "
                  f"{more / 1e3:.0f} kB more")
    finally:
        d.quit()
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
