"""Screenshots of a run's report in headless Chromium: first screen, viewer, sweep compare.

    python tools/report_screenshots.py RUN_DIR [--out DIR] [--width 1400] [--height 900]

Writes ``first_screen.png``, ``viewer_allfocus.png``, ``viewer_depth.png``,
``viewer_confidence.png``, ``viewer_layers.png`` (every layer side by side; with ground
truth: estimate, truth and error) and, when the run has several sweep points,
``viewer_sweeps.png``, with ``outputs.mesh`` ``viewer_3d.png``, and copies of the
first stack's depth plots (``plot_2d.png``, ``plot_3d.png``) into ``--out`` (default:
RUN_DIR/screenshots).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from browser import chromium, wait  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--out")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=900)
    a = ap.parse_args(argv)
    run = os.path.abspath(a.run_dir)
    out = a.out or os.path.join(run, "screenshots")
    os.makedirs(out, exist_ok=True)
    d, why = chromium(a.width, a.height)
    if d is None:
        print(f"no screenshots: {why}")
        return 1
    try:
        d.get("file://" + os.path.join(run, "index.html"))
        wait(d, "document.body.getAttribute('data-ready')")
        wait(d, "Array.from(document.querySelectorAll('#grid img')).filter(i => i.getBoundingClientRect().top < "
                "innerHeight).every(i => i.complete)")
        d.execute_script("document.getElementById('grid').scrollIntoView()")
        time.sleep(0.3)
        d.save_screenshot(os.path.join(out, "first_screen.png"))
        cards = d.find_elements("css selector", "#grid .card:not(.failed)")
        if not cards:
            print("no stack to open in the viewer")
            return 1
        cards[0].click()
        for i, layer in enumerate(("allfocus", "depth", "confidence"), 1):
            d.execute_script(f"document.dispatchEvent(new KeyboardEvent('keydown', {{key: '{i}'}}))")
            wait(d, "Array.from(document.querySelectorAll('#vpanels img')).every(i => i.complete && i.naturalWidth)")
            d.save_screenshot(os.path.join(out, f"viewer_{layer}.png"))
        d.execute_script("document.dispatchEvent(new KeyboardEvent('keydown', {key: 'l'}))")
        wait(d, "Array.from(document.querySelectorAll('#vpanels img')).every(i => i.complete && i.naturalWidth)")
        d.save_screenshot(os.path.join(out, "viewer_layers.png"))
        d.execute_script("document.dispatchEvent(new KeyboardEvent('keydown', {key: '2'}))")
        d.execute_script("document.dispatchEvent(new KeyboardEvent('keydown', {key: 's'}))")
        if len(d.find_elements("css selector", "#vpanels .panel")) > 1:
            wait(d, "Array.from(document.querySelectorAll('#vpanels img')).every(i => i.complete && i.naturalWidth)")
            d.save_screenshot(os.path.join(out, "viewer_sweeps.png"))
        d.execute_script("document.dispatchEvent(new KeyboardEvent('keydown', {key: 'Escape'}))")
        cards[0].click()
        three = [b for b in d.find_elements("css selector", "#vtop button") if b.text.endswith("3-D")]
        if three:
            three[0].click()
            wait(d, "document.querySelector('#vpanels .scroll.gl') && "
                    "document.querySelector('#vpanels .scroll.gl').getAttribute('data-rendered')", 30)
            time.sleep(0.2)
            d.save_screenshot(os.path.join(out, "viewer_3d.png"))
        js = open(os.path.join(run, "jobs.js")).read()
        first = next(r for r in json.loads(js[len("window.DFF = "):].rstrip().rstrip(";"))["jobs"] if r[3] == "ok")
        for name, dst in (("depth_2d.png", "plot_2d.png"), ("depth_3d.png", "plot_3d.png")):
            src = os.path.join(run, first[0], name)
            if os.path.exists(src):
                shutil.copy(src, os.path.join(out, dst))
        print(f"screenshots in {out}: {', '.join(sorted(os.listdir(out)))}")
    finally:
        d.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
