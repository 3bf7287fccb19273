"""The report in a real browser (headless Chromium from Debian's chromium and chromium-driver,
driven by selenium): on a run of the bundled dataset with a 2 x 2 sweep, every image of the
first screen loads, the job table sorts and filters, the viewer opens and flips (layers,
sweep points, stacks), the grid's toggle swaps every thumbnail for depth or confidence (each
sweep point its own), and the page makes no console error and no request outside the run."""
import os
import sys
from pathlib import Path

import pytest

from dffbatch.cli import main

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from browser import chromium, console_errors, requests, wait  # noqa: E402


def _shown(make_run):
    """Headless Chromium (or a skip that says why) on the report of the run ``make_run()``
    writes, once the page is ready: yields (driver, run folder)."""
    d, why = chromium(1400, 900)
    if d is None:
        pytest.skip(why)
    run = make_run()
    d.get((run / "index.html").as_uri())
    wait(d, "document.body.getAttribute('data-ready')")
    try:
        yield d, run
    finally:
        d.quit()


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    def demo():
        out = tmp_path_factory.mktemp("report")
        assert main([str(ROOT / "configs/run.yaml"), "--set", f"run.output={out}", "--set", "params.window=[9, 5]",
                     "--set", "params.refine=[wls, median]", "--set", "outputs.mesh=true", "--no-progress"]) == 0
        return out / "demo"
    yield from _shown(demo)


@pytest.fixture(scope="module")
def oblong(tmp_path_factory):
    """A report of two non-square stacks, 48 x 96 (wide) and 96 x 48 (tall), written directly."""
    import numpy as np
    from dffbatch.report.page import write_report
    from dffbatch.report.views import write_views

    def two_stacks():
        run = tmp_path_factory.mktemp("oblong")
        recs = []
        for stack, (H, W) in (("wide", (48, 96)), ("tall", (96, 48))):
            af = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
            depth, conf = np.zeros((H, W), np.float32), np.ones((H, W), np.float32)
            recs.append({"id": f"p/{stack}", "status": "ok", "params": {}, "metrics": {}, "n_frames": 5,
                         "shape": [H, W, 3], "outputs": write_views(run / "p" / stack, af, depth, conf, 5)})
        write_report(run, {"run": "oblong", "versions": {}}, recs)
        return run
    yield from _shown(two_stacks)


def test_thumbnails_of_non_square_stacks_keep_their_aspect_ratio(oblong):
    d, run = oblong  # the size column is height x width (numpy's order); a swap gave 0.5 for 2.0 and back
    shown = wait(d, "Array.from(document.querySelectorAll('#grid img')).every(i => i.complete) && "
                    "Array.from(document.querySelectorAll('#grid img')).map(i => { const r = i.getBoundingClientRect();"
                    " return [i.alt, i.naturalWidth / i.naturalHeight, r.width / r.height]; })")
    assert sorted(s[0] for s in shown) == ["tall", "wide"] and [r[3] for r in _table(d)] == ["48x96", "96x48"]
    for stack, natural, box in shown:
        want = 2.0 if stack == "wide" else 0.5
        assert natural == pytest.approx(want) and box == pytest.approx(want, rel=0.02), shown
    for i, want in enumerate((2.0, 0.5)):  # the viewer: fitted (contained) and 1:1, never stretched
        d.find_elements("css selector", "#grid .card")[i].click()
        _loaded(d)
        fit = d.execute_script("const i = document.querySelector('#vpanels img');"
                               " return [i.naturalWidth / i.naturalHeight, getComputedStyle(i).objectFit];")
        assert fit == [pytest.approx(want), "contain"]
        d.find_element("css selector", "#vpanels img").click()  # 1:1
        r = d.execute_script("const r = document.querySelector('#vpanels img').getBoundingClientRect();"
                             " return [r.width, r.height];")
        assert r == pytest.approx([96, 48] if want == 2.0 else [48, 96], abs=1), r
        d.find_element("css selector", "#vpanels img").click()  # back to fit
        _key(d, "Escape")
    assert console_errors(d) == []


def _table(d):
    return d.execute_script("return Array.from(document.querySelectorAll('#jobs tr')).slice(1)"
                            ".map(tr => Array.from(tr.cells).map(c => c.textContent))")


def _key(d, key):
    d.execute_script(f"document.dispatchEvent(new KeyboardEvent('keydown', {{key: '{key}'}}))")


_SHOWN = ("(() => { const im = Array.from(document.images).filter(i => { const r = i.getBoundingClientRect();"
          " return r.bottom > 0 && r.top < innerHeight && r.width > 0; });"
          " return im.length && im.every(i => i.complete) ? im.map(i => [i.src, i.naturalWidth]) : null; })()")


def test_every_image_of_the_first_screen_loads(page):
    d, run = page
    d.execute_script("window.scrollTo(0, 0)")
    shown = wait(d, _SHOWN)  # the sweep ranking's error maps come first with ground truth
    assert all(w > 0 for _, w in shown), shown
    d.execute_script("document.getElementById('grid').scrollIntoView()")
    shown = wait(d, _SHOWN)
    thumbs = [s for s, _ in shown if "/view/thumb.webp" in s]
    assert len(thumbs) >= 5 and all(w > 0 for _, w in shown), shown  # a row of thumbnails at 1400 x 900
    assert d.execute_script("return document.querySelectorAll('#grid .card').length") == 12


def test_the_job_table_sorts_and_filters(page):
    d, run = page
    assert len(_table(d)) == 12
    head = [h.text for h in d.find_elements("css selector", "#jobs th")]
    assert "depth RMSE (frame)" in head[-3] and "depth jumps" in head[-1]  # ground truth: its columns are there
    col = head.index("time (s)")
    d.find_elements("css selector", "#jobs th")[col].click()
    t = [float(r[col]) for r in _table(d)]
    assert t == sorted(t) and len(t) == 12
    d.find_elements("css selector", "#jobs th")[col].click()
    t = [float(r[col]) for r in _table(d)]
    assert t == sorted(t, reverse=True)
    rmse = head.index("depth RMSE (frame)")
    d.find_elements("css selector", "#jobs th")[rmse].click()
    v = [float(r[rmse]) for r in _table(d)]
    assert v == sorted(v)
    box = d.find_element("id", "filter")
    box.send_keys("step")
    rows = _table(d)
    assert len(rows) == 4 and all("dataset__step" in r[0] for r in rows)
    assert d.execute_script("return document.querySelectorAll('#grid .card').length") == 4  # the grid follows
    box.clear()
    box.send_keys("refine median")  # sweep labels name the parameters that differ
    assert len(_table(d)) == 6
    d.execute_script("const f = document.getElementById('filter'); f.value = ''; f.dispatchEvent(new Event('input'))")
    assert len(_table(d)) == 12


def _viewer(d):
    return d.execute_script("return {open: document.getElementById('viewer').classList.contains('open'),"
                            " imgs: Array.from(document.querySelectorAll('#vpanels img')).map(i => i.src),"
                            " title: document.querySelector('#vtop .title') && document.querySelector('#vtop .title').textContent}")


def _loaded(d):
    return wait(d, "Array.from(document.querySelectorAll('#vpanels img')).every(i => i.complete) && "
                   "Array.from(document.querySelectorAll('#vpanels img')).map(i => i.naturalWidth)")


def test_the_viewer_opens_and_flips(page):
    d, run = page
    d.execute_script("window.scrollTo(0, 0)")
    d.find_elements("css selector", "#grid .card")[0].click()
    v = _viewer(d)
    assert v["open"] and len(v["imgs"]) == 1 and v["imgs"][0].endswith("/view/allfocus.webp")
    first = v["imgs"][0]
    assert _loaded(d)[0] == 256  # full size
    for key, name in (("2", "depth.jpg"), ("3", "confidence.jpg"), ("4", "truth.jpg"), ("5", "error.jpg")):
        _key(d, key)
        v = _viewer(d)
        assert v["imgs"][0].endswith("/view/" + name) and v["imgs"][0].rsplit("/", 2)[0] == first.rsplit("/", 2)[0]
        assert _loaded(d)[0] > 0
    _key(d, "ArrowDown")  # the same stack at the next sweep point
    v2 = _viewer(d)
    assert v2["title"] == v["title"] and v2["imgs"][0] != v["imgs"][0] and v2["imgs"][0].endswith("/view/error.jpg")
    _key(d, "s")  # every sweep point side by side
    v3 = _viewer(d)
    assert len(v3["imgs"]) == 4 and len({i.split("/")[-4] for i in v3["imgs"]}) == 4
    assert all(w > 0 for w in _loaded(d))
    _key(d, "l")  # every layer side by side: estimate, truth and error among them
    v4 = _viewer(d)
    assert [i.rsplit("/", 1)[1] for i in v4["imgs"]] == ["allfocus.webp", "depth.jpg", "confidence.jpg",
                                                         "truth.jpg", "error.jpg"]
    # the panels start level: a depth label with its colour scale wrapped to two lines and
    # took its image 15 px lower than its neighbours'
    tops = d.execute_script("return Array.from(document.querySelectorAll('#vpanels .scroll'))"
                            ".map(s => s.getBoundingClientRect().top)")
    assert len(tops) == 5 and max(tops) - min(tops) < 1, tops
    _key(d, "ArrowRight")  # the next stack
    assert _viewer(d)["title"] != v["title"]
    d.find_elements("css selector", "#vpanels img")[0].click()  # 1:1
    assert d.execute_script("return document.querySelector('#vpanels .scroll').classList.contains('zoom')")
    _key(d, "Escape")
    assert not _viewer(d)["open"]


def test_no_console_error_and_no_request_outside_the_run(page):
    d, run = page
    d.get((run / "index.html").as_uri())  # a fresh load, then every part of the page used once
    wait(d, "document.body.getAttribute('data-ready')")
    d.find_elements("css selector", "#grid .card")[0].click()
    for k in ("2", "3", "s", "l", "6", "ArrowRight", "Escape"):
        _key(d, k)
    d.find_elements("css selector", "#jobs th")[1].click()
    urls = requests(d)
    assert urls and all(u.startswith(run.as_uri() + "/") or u.startswith("data:") for u in urls), \
        [u for u in urls if not u.startswith(run.as_uri())]
    assert console_errors(d) == []


def test_the_3d_view_turns_the_mesh_in_webgl(page):
    d, run = page
    d.get((run / "index.html").as_uri())
    wait(d, "document.body.getAttribute('data-ready')")
    card = next(c for c in d.find_elements("css selector", "#grid .card") if "dataset__step" in c.text)
    card.click()
    _key(d, "6")
    job = wait(d, "document.querySelector('#vpanels .scroll.gl') && "
                  "document.querySelector('#vpanels .scroll.gl').getAttribute('data-rendered')", 30)
    assert job.endswith("/dataset__step")
    pix = d.execute_script("""const c = document.querySelector('#vpanels canvas'), g = c.getContext('webgl2') || c.getContext('webgl');
        const w = c.width, h = c.height, a = new Uint8Array(w * h * 4); g.readPixels(0, 0, w, h, g.RGBA, g.UNSIGNED_BYTE, a);
        let bg = 0, n = 0; for (let i = 0; i < a.length; i += 4 * 97) { n++; if (a[i] === 0x16 && a[i + 1] === 0x16) bg++; }
        return [w, h, bg / n];""")
    assert pix[0] > 200 and 0.1 < pix[2] < 0.95, pix  # the surface covers part of the canvas, the background the rest
    before = d.execute_script("return document.querySelector('#vpanels canvas').toDataURL()")
    from selenium.webdriver import ActionChains
    canvas = d.find_element("css selector", "#vpanels canvas")
    ActionChains(d).move_to_element(canvas).click_and_hold().move_by_offset(120, 30).release().perform()
    assert d.execute_script("return document.querySelector('#vpanels canvas').toDataURL()") != before  # it turned
    assert console_errors(d) == []
    assert all(u.startswith(run.as_uri() + "/") or u.startswith("data:") for u in requests(d))


# ---------------------------------------------------------------- the grid's thumbnail toggle

_GRID = ("Array.from(document.querySelectorAll('#grid .card')).map(c => { const i = c.querySelector('img');"
         " return [c.getAttribute('data-job'), i && i.getAttribute('src'), i && i.src, i && i.complete && i.naturalWidth]; })")


def _file(src):
    """The file on disk behind a file:// URL."""
    from urllib.parse import unquote, urlparse
    return Path(unquote(urlparse(src).path))


def _pixels(path_or_png):
    import io

    import numpy as np
    from PIL import Image
    src = io.BytesIO(path_or_png) if isinstance(path_or_png, bytes) else path_or_png
    return np.asarray(Image.open(src).convert("RGB")).astype(int)


def _toggle(d, label):
    b = [b for b in d.find_elements("css selector", "#thumbkind button") if b.text == label]
    assert len(b) == 1, [x.text for x in d.find_elements("css selector", "#thumbkind button")]
    b[0].click()


def _shown_thumbs(d):
    """[job, src, absolute URL, natural width] of every card, once the images in view have loaded."""
    d.execute_script("document.getElementById('grid').scrollIntoView()")
    return wait(d, f"(() => {{ const g = {_GRID}; const vis = Array.from(document.querySelectorAll('#grid img'))"
                   ".filter(i => { const r = i.getBoundingClientRect(); return r.bottom > 0 && r.top < innerHeight; });"
                   " return vis.length && vis.every(i => i.complete && i.naturalWidth > 0) ? g : null; })()")


def test_the_grid_toggle_swaps_every_thumbnail_to_depth_or_confidence_and_keeps_it(page):
    d, run = page
    d.get((run / "index.html").as_uri())
    wait(d, "document.body.getAttribute('data-ready')")
    assert [b.text for b in d.find_elements("css selector", "#thumbkind button")] == \
        ["all-in-focus", "depth", "confidence"]
    assert d.execute_script("return document.querySelector('#thumbkind button.on').textContent") == "all-in-focus"
    aif = _shown_thumbs(d)
    assert len(aif) == 12 and all(s.endswith("/view/thumb.webp") for _, s, _, _ in aif)
    card = d.find_elements("css selector", "#grid .card img")[0]
    shot = _pixels(card.screenshot_as_png)  # what the page shows, not only which file it names
    assert d.find_element("id", "thumblegend").text == ""
    for label, name, grey in (("depth", "thumb_depth.jpg", False), ("confidence", "thumb_confidence.jpg", True)):
        _toggle(d, label)
        # what the colours mean, beside the toggle (a sure stack's confidence is near white)
        assert d.find_element("id", "thumblegend").text.startswith("P(depth within 1 frame)" if grey else
                                                                   "first frame")
        now = _shown_thumbs(d)
        assert [j for j, *_ in now] == [j for j, *_ in aif]  # the same cards, in the same order
        assert all(s == a[1].replace("thumb.webp", name) for (_, s, _, _), a in zip(now, aif)), now
        # depth at the size of thumb.webp, confidence at half of it (as the viewer's)
        assert all(w in (0, -(-a[3] // (2 if grey else 1))) or not a[3] for (*_, w), a in zip(now, aif)), now
        assert d.execute_script("return location.hash") == f"#thumbs={label}"
        for (_, _, url, _), a in zip(now, aif):
            mine, theirs = _pixels(_file(url)), _pixels(_file(a[2]))
            theirs = theirs[::2, ::2] if grey else theirs
            assert mine.shape == theirs.shape and abs(mine - theirs).mean() > 10, (url, abs(mine - theirs).mean())
            assert grey == bool((mine.max(axis=2) == mine.min(axis=2)).all()), url  # confidence is grey, depth viridis
        card = d.find_elements("css selector", "#grid .card img")[0]
        wait(d, "document.querySelector('#grid .card img').complete")
        assert abs(_pixels(card.screenshot_as_png) - shot).mean() > 10  # the card shows another image
    d.refresh()  # the choice is kept: in the URL (#thumbs=confidence), so a reload or a copied link keeps it
    wait(d, "document.body.getAttribute('data-ready')")
    assert d.execute_script("return document.querySelector('#thumbkind button.on').textContent") == "confidence"
    assert all(s.endswith("/view/thumb_confidence.jpg") for _, s, _, _ in _shown_thumbs(d))
    d.find_element("id", "filter").send_keys("step")  # filtering and paging draw the chosen kind
    assert all(s.endswith("/view/thumb_confidence.jpg") for _, s, _, _ in _shown_thumbs(d))
    d.find_elements("css selector", "#grid .card img")[0].click()  # the viewer opens on what the grid shows
    wait(d, "document.getElementById('viewer').classList.contains('open')")
    assert d.execute_script("return document.querySelector('#viewer button.on').textContent") == "3 confidence"
    _key(d, "Escape")
    _toggle(d, "all-in-focus")
    assert [s for _, s, _, _ in _shown_thumbs(d)] == [s for j, s, _, _ in aif if j.endswith("/dataset__step")]
    assert d.execute_script("return location.hash") == "#thumbs=allfocus"
    assert console_errors(d) == []


def test_each_sweep_point_shows_its_own_thumbnail(page):
    """The demo's sweep, window 9 / 5 x refine wls / median. The all-in-focus image is composited
    before refine runs, so the two refine points of a window share its pixels (the grid repeated
    one picture); their depth differs, and the depth thumbnails show it."""
    d, run = page
    d.get("about:blank")  # then a fresh load, not a jump within the page: the link chooses depth
    d.get((run / "index.html").as_uri() + "#thumbs=depth")
    wait(d, "document.body.getAttribute('data-ready')")
    assert d.execute_script("return document.querySelector('#thumbkind button.on').textContent") == "depth"
    d.find_element("id", "filter").send_keys("dataset__step")
    shown = _shown_thumbs(d)
    assert len(shown) == 4 and len({j.split("/")[0] for j, *_ in shown}) == 4  # four sweep points, one stack
    assert all(s.endswith("/dataset__step/view/thumb_depth.jpg") for _, s, _, _ in shown)
    assert len({s for _, s, _, _ in shown}) == 4  # each point's own file ...
    files = [_file(u) for _, _, u, _ in shown]
    assert len({f.read_bytes() for f in files}) == 4  # ... with its own bytes
    px = [_pixels(f) for f in files]
    for i in range(4):
        for k in range(i):
            assert abs(px[i] - px[k]).mean() > 0.2, (files[i], files[k])  # and its own picture
    assert console_errors(d) == []


@pytest.fixture(scope="module")
def kinds(tmp_path_factory):
    """A report of three jobs written directly: 'new' with every thumbnail, 'old' as a run
    written before the depth and confidence thumbnails (neither on disk nor in its record),
    'lost' whose thumb_depth.jpg was deleted from the run folder."""
    import numpy as np
    from dffbatch.report.page import write_report
    from dffbatch.report.views import write_views

    def three():
        run = tmp_path_factory.mktemp("kinds")
        recs = []
        for stack in ("new", "old", "lost"):
            H, W = 64, 96
            af = np.random.default_rng(3).integers(0, 256, (H, W, 3), dtype=np.uint8)
            depth = np.tile(np.linspace(0, 4, W, dtype=np.float32), (H, 1))
            conf = np.tile(np.linspace(0, 1, H, dtype=np.float32)[:, None], (1, W))
            out = write_views(run / "p" / stack, af, depth, conf, 5)
            if stack == "old":
                for name in ("view/thumb_depth.jpg", "view/thumb_confidence.jpg"):
                    del out[name]
                    (run / "p" / stack / name).unlink()
            if stack == "lost":
                (run / "p" / stack / "view/thumb_depth.jpg").unlink()
            recs.append({"id": f"p/{stack}", "status": "ok", "params": {}, "metrics": {}, "n_frames": 5,
                         "shape": [H, W, 3], "outputs": out})
        write_report(run, {"run": "kinds", "versions": {}}, recs)
        return run
    yield from _shown(three)


def test_a_job_without_map_thumbnails_shows_its_full_size_map_or_says_what_is_missing(kinds):
    d, run = kinds
    _toggle(d, "depth")
    got = wait(d, "(() => { const c = Array.from(document.querySelectorAll('#grid .card'));"
                  " const r = c.map(x => { const i = x.querySelector('img'), p = x.querySelector('.ph');"
                  " return [x.getAttribute('data-job'), i ? i.getAttribute('src') : null, i ? i.complete && i.naturalWidth : null,"
                  " p ? p.textContent : null]; });"
                  " return r.every(x => x[2] || x[3]) ? r : null; })()")
    by = {j: (s, w, ph) for j, s, w, ph in got}
    assert by["p/new"][:2] == ("p/new/view/thumb_depth.jpg", 96)
    assert by["p/old"][:2] == ("p/old/view/depth.jpg", 96)  # the viewer's depth image, not a broken one
    assert by["p/lost"][:1] == (None,) and "no depth image (thumb_depth.jpg)" in by["p/lost"][2]
    _toggle(d, "confidence")
    got = wait(d, "Array.from(document.querySelectorAll('#grid img')).every(i => i.complete && i.naturalWidth) && "
                  "Array.from(document.querySelectorAll('#grid img')).map(i => [i.getAttribute('src'), i.naturalWidth])")
    assert got == [["p/new/view/thumb_confidence.jpg", 48], ["p/old/view/confidence.jpg", 48],
                   ["p/lost/view/thumb_confidence.jpg", 48]]
    _toggle(d, "all-in-focus")
    assert all(e["message"].count("thumb_depth.jpg") for e in console_errors(d))  # only the file deleted
