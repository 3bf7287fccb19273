"""Folders as cameras write them (issue 30): several brackets in one card folder, the
path-only command line, relative config paths."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dffbatch.batch.config import SPLIT_AUTO, SPLIT_OFF, ConfigError, config_for_paths, load_config
from dffbatch.batch.discover import discover
from dffbatch.batch.split import preview_blocks, similarity, split_sequence

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets" / "seed"


def _scene(seed, size=96):
    """A textured scene: smooth blobs plus fine texture, different for each seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = sum(np.sin(2 * np.pi * (rng.uniform(0.5, 2) * xx + rng.uniform(0.5, 2) * yy) + rng.uniform(0, 6))
               for _ in range(3))
    img = 128 + 40 * base + 20 * rng.standard_normal((size, size))
    return np.clip(img, 0, 255)


def _blur(img, k):
    """A box blur of half-width ``k`` (0: sharp): a crude defocus."""
    if k == 0:
        return img
    c = np.cumsum(np.pad(img, k, mode="edge"), axis=0)
    img = (c[2 * k:] - np.vstack([np.zeros((1, c.shape[1])), c[:-2 * k - 1]])) / (2 * k + 1)
    c = np.cumsum(img, axis=1)
    return (c[:, 2 * k:] - np.hstack([np.zeros((c.shape[0], 1)), c[:, :-2 * k - 1]])) / (2 * k + 1)


def _jpeg(path, grey, when=None, distance=None, orientation=None):
    im = Image.fromarray(np.repeat(grey.astype(np.uint8)[:, :, None], 3, axis=2))
    ex = Image.Exif()
    if orientation is not None:
        ex[0x0112] = orientation
    sub = ex.get_ifd(0x8769)
    if when is not None:
        sub[0x9003] = f"2026:12:07 10:{int(when) // 60:02d}:{int(when) % 60:02d}"
        sub[0x9291] = f"{int(round((when % 1) * 100)):02d}"
    if distance is not None:
        sub[0x9206] = float(distance)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=92, exif=ex)
    path.write_bytes(buf.getvalue())


def _card(folder, scenes, start=0.0, interval=0.5, gap=30.0, distances=None):
    """A card folder: DSC_0001.JPG ... with each scene bracketed over 6 frames."""
    folder.mkdir(parents=True, exist_ok=True)
    t, k = start, 1
    for s, seed in enumerate(scenes):
        img = _scene(seed)
        for f in range(6):
            d = None if distances is None else distances[f]
            _jpeg(folder / f"DSC_{k:04d}.JPG", _blur(img, abs(f - 3)), when=t, distance=d)
            t += interval
            k += 1
        t += gap
    return folder


def _entry(path, split="auto"):
    """A resolved ``datasets`` entry; ``split``: auto, none or a resolved mapping."""
    rule = {"auto": SPLIT_AUTO, "none": SPLIT_OFF}.get(split, split) if isinstance(split, str) else split
    return {"path": str(path), "layout": "auto", "include": ["*"], "exclude": [], "recursive": True,
            "split": dict(rule)}


def test_a_card_with_two_brackets_of_one_scene_is_split_by_capture_time(tmp_path):
    card = _card(tmp_path / "card", [1, 1])  # the same scene twice: only the time tells them apart
    stacks = discover(_entry(card))
    assert [len(s.files) for s in stacks] == [6, 6]
    assert [s.id for s in stacks] == ["card__DSC_0001", "card__DSC_0007"]
    assert "capture-time gap before DSC_0007.JPG" in stacks[1].notes[0]
    assert [len(s.files) for s in discover(_entry(card, "none"))] == [12]


def test_a_card_without_exif_is_split_where_the_content_jumps(tmp_path):
    card = tmp_path / "card"
    card.mkdir()
    k = 1
    for seed in (3, 4):
        img = _scene(seed)
        for f in range(6):
            _jpeg(card / f"IMG_{k:04d}.JPG", _blur(img, abs(f - 3)))
            k += 1
    stacks = discover(_entry(card))
    assert [len(s.files) for s in stacks] == [6, 6]
    assert "content jump before IMG_0007.JPG" in stacks[1].notes[0]
    # the test itself: neighbours of one scene are alike, across the cut they are not
    g = [preview_blocks(str(f)) for f in sorted(card.iterdir())]
    sims = [similarity(a, b) for a, b in zip(g[:-1], g[1:])]
    assert min(sims[:5] + sims[6:]) > 0.9 and sims[5] < SPLIT_AUTO["content"]


def test_a_reset_of_the_focus_distance_splits_a_card(tmp_path):
    dist = [0.30, 0.32, 0.34, 0.36, 0.38, 0.40]
    card = _card(tmp_path / "card", [5, 5], gap=0.5, distances=dist)  # no pause, same scene
    rule = {**SPLIT_OFF, "focus": True}
    stacks = discover(_entry(card, rule))
    assert [len(s.files) for s in stacks] == [6, 6]
    assert "focus distance reset before DSC_0007.JPG (0.4 m -> 0.3 m)" in stacks[1].notes[0]


def test_a_single_stray_frame_is_reported_not_made_a_stack(tmp_path):
    card = _card(tmp_path / "card", [1], start=100.0)
    _jpeg(card / "DSC_0000.JPG", _scene(9), when=0.0)  # a test shot a while before the bracket
    skipped = []
    stacks = discover(_entry(card), skipped=skipped)
    assert [len(s.files) for s in stacks] == [6]
    assert skipped and skipped[0][0].endswith("DSC_0000.JPG") and "single frame" in skipped[0][1]


def test_frames_without_layout_are_not_judged_by_content(tmp_path):
    """Noise (or a blank wall) averages out over a block: neighbours correlate by chance."""
    card = tmp_path / "card"
    card.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        _jpeg(card / f"n{i}.jpg", rng.random((800, 800)) * 255)  # 50 px blocks: their means spread ~1.5
    assert [len(s.files) for s in discover(_entry(card))] == [6]
    g = [preview_blocks(str(f)) for f in sorted(card.iterdir())]
    assert similarity(g[0], g[1]) is None


def test_the_readers_cache_gives_each_files_own_facts_when_it_fills_up(tmp_path, monkeypatch):
    """Watch mode rescans read only changed files; a full cache is emptied, never half-used."""
    import dffbatch.batch.split as S
    card = _card(tmp_path / "card", [1, 2])
    files = sorted(str(f) for f in card.iterdir())
    want = [S.exif_facts(f) for f in files]
    monkeypatch.setattr(S, "_SEEN", {})
    monkeypatch.setattr(S, "_SEEN_MAX", 8)  # 12 files: the second call finds it full
    assert S._read_all(S.exif_facts, files[:6]) == want[:6]
    assert S._read_all(S.exif_facts, files) == want
    assert S._read_all(S.exif_facts, files) == want  # and again, the cache full once more


def test_a_slow_even_bracket_is_not_split(tmp_path):
    """3 s between frames is over the 2 s threshold, but no gap is twice the median."""
    card = _card(tmp_path / "card", [1], interval=3.0)
    assert [len(s.files) for s in discover(_entry(card))] == [6]
    assert split_sequence([str(f) for f in sorted(card.iterdir())], dict(SPLIT_AUTO)) == []


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/datasets/seed (the real stacks); absent here")
def test_split_detection_finds_exactly_todays_stacks_on_every_shared_dataset():
    for name in sorted(os.listdir(SHARED)):
        path = SHARED / name
        if not path.is_dir():
            continue
        with_split = discover(_entry(path, "auto"))
        without = discover(_entry(path, "none"))
        assert [(s.id, s.files) for s in with_split] == [(s.id, s.files) for s in without], name


def test_split_is_validated_and_resolved(tmp_path):
    (tmp_path / "d").mkdir()
    cfg = tmp_path / "c.yaml"
    cfg.write_text("datasets:\n  - path: d\n    split: {time: 10}\n")
    e = load_config(cfg)["datasets"][0]
    assert e["split"] == {"time": 10, "focus": False, "content": False, "content_on": "jpeg"}
    cfg.write_text("datasets:\n  - path: d\n    split: {content: 2}\n")
    with pytest.raises(ConfigError, match=r"datasets\[0\]\.split: must be auto, none or a mapping"):
        load_config(cfg)


def test_relative_paths_in_a_config_resolve_against_its_folder(tmp_path, monkeypatch):
    proj = tmp_path / "proj"
    (proj / "configs").mkdir(parents=True)
    (proj / "data").mkdir()
    (proj / "configs" / "run.yaml").write_text("run: {output: ../out}\ndatasets: [../data]\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(proj / "configs" / "run.yaml")
    assert cfg["datasets"][0]["path"] == str(proj / "configs" / ".." / "data")
    assert cfg["run"]["output"] == str(proj / "out")
    # a path typed with --set is relative to where it was typed
    cfg = load_config(proj / "configs" / "run.yaml", ["run.output=here"])
    assert cfg["run"]["output"] == str(elsewhere / "here")


def test_the_bundled_config_runs_from_another_folder(tmp_path):
    out = subprocess.run([sys.executable, "-m", "dffbatch", str(ROOT / "configs" / "run.yaml"), "--dry-run"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"3 jobs -> {ROOT / 'outputs' / 'demo'}" in out.stdout


def test_paths_alone_make_a_config(tmp_path, monkeypatch):
    _card(tmp_path / "card", [1, 2])
    loose = tmp_path / "loose"
    loose.mkdir()
    for i in range(3):
        _jpeg(loose / f"f{i}.jpg", _blur(_scene(7), i))
    _jpeg(loose / "other.jpg", _scene(8))
    monkeypatch.chdir(tmp_path)
    cfg = config_for_paths(["card", str(loose / "f0.jpg"), str(loose / "f1.jpg"), str(loose / "f2.jpg")])
    assert cfg["run"]["name"] == "card" and cfg["run"]["output"] == str(tmp_path / "outputs")
    assert cfg["params"]["refine"] == "wls"  # the defaults
    stacks = [s for e in cfg["datasets"] for s in discover(e)]
    assert [len(s.files) for s in stacks] == [6, 6, 3]
    assert all("other.jpg" not in f for f in stacks[2].files)
    with pytest.raises(ConfigError, match="no such folder or file"):
        config_for_paths(["nope"])
    with pytest.raises(ConfigError, match="one frame is not a focus stack"):
        config_for_paths([str(loose / "f0.jpg")])


@pytest.mark.slow
def test_the_path_only_command_runs_and_writes_a_report(tmp_path):
    card = _card(tmp_path / "card", [1, 2])
    out = subprocess.run([sys.executable, "-m", "dffbatch", str(card), "-o", str(tmp_path / "o"), "--no-progress",
                          "--set", "outputs.plots=false", "--set", "params.align=none"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    run = tmp_path / "o" / "card"
    assert (run / "index.html").is_file()
    man = json.loads((run / "manifest.json").read_text())
    assert man["config"].startswith("command line: dffbatch ")
    recs = sorted(man["jobs"].values(), key=lambda r: r["id"])
    assert [r["status"] for r in recs] == ["ok", "ok"] and [r["n_frames"] for r in recs] == [6, 6]
    assert any("split from card" in n for n in recs[1]["notes"])


def _bad_frame_run(tmp_path, policy, n=5, bad=(2,)):
    data = tmp_path / "data" / "s"
    data.mkdir(parents=True)
    img = _scene(11)
    for i in range(n):
        _jpeg(data / f"f{i}.jpg", _blur(img, abs(i - 2)))
    for i in bad:
        raw = (data / f"f{i}.jpg").read_bytes()
        (data / f"f{i}.jpg").write_bytes(raw[: len(raw) // 2])  # truncated, as a card read cut short
    cfg = tmp_path / "run.yaml"
    cfg.write_text("run: {name: r, output: out}\ndatasets: [data]\noutputs: {plots: false}\n"
                   f"execution: {{workers: 1, on_bad_frame: {policy}}}\n")
    from dffbatch.batch.runner import run
    status = run(str(cfg), progress=False, out=io.StringIO())
    man = json.loads((tmp_path / "out" / "r" / "manifest.json").read_text())
    (rec,) = man["jobs"].values()
    return status, rec, tmp_path / "out" / "r"


def test_an_unreadable_frame_fails_its_job_by_default(tmp_path):
    status, rec, _ = _bad_frame_run(tmp_path, "fail")
    assert status == 1 and rec["status"] == "failed"
    assert rec["error"].startswith(str(tmp_path / "data" / "s" / "f2.jpg") + ": ")


def test_on_bad_frame_skip_drops_the_frame_and_says_so(tmp_path):
    status, rec, run_dir = _bad_frame_run(tmp_path, "skip")
    assert status == 0 and rec["status"] == "ok", rec.get("error")
    assert rec["n_frames"] == 4
    assert rec["skipped_frames"] == [str(tmp_path / "data" / "s" / "f2.jpg")]
    assert "f2.jpg" not in rec["inputs"] and "f3.jpg" in rec["inputs"]
    assert any(n.startswith("skipped unreadable frame f2.jpg (on_bad_frame: skip)") for n in rec["notes"])
    assert rec["positions_source"].startswith("frame numbers in the stack as found")
    import tifffile
    # the scene is sharpest in the dropped frame 2, blurred alike in 1 and 3: the peak
    # between them is at 2 in the stack's own numbers, 1.5 among the frames that remain
    units = tifffile.imread(run_dir / rec["id"] / "depth_units.tif")
    depth = tifffile.imread(run_dir / rec["id"] / "depth.tif")
    assert np.median(units) == pytest.approx(2.0, abs=0.05) and np.median(depth) == pytest.approx(1.5, abs=0.05)
    summary = (run_dir / "summary.csv").read_text().splitlines()
    head, row = summary[0].split(","), summary[1].split(",")
    assert row[head.index("skipped_frames")] == "f2.jpg"
    assert "f2.jpg" in (run_dir / "jobs.js").read_text()


def test_skipping_needs_two_readable_frames(tmp_path):
    status, rec, _ = _bad_frame_run(tmp_path, "skip", n=3, bad=(0, 2))
    assert status == 1 and "fewer than 2 readable frames left after skipping f0.jpg, f2.jpg" in rec["error"]


# ------------------------------------------------------------------ EXIF orientation, ICC

def _oblong(h=40, w=64):
    """An RGB image with no symmetry: a gradient, a corner block and a stripe."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // w, y * 255 // h, (x * y) % 256], axis=2).astype(np.uint8)
    img[:8, :12] = (255, 0, 0)
    return img


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_viewers_apply_it(tmp_path, orientation, fmt):
    from PIL import ImageOps
    from dffbatch.stages.read import iter_previews, read_frame
    ex = Image.Exif()
    ex[0x0112] = orientation
    path = tmp_path / f"f.{fmt.lower()}"
    Image.fromarray(_oblong()).save(path, fmt, exif=ex, **({"quality": 95} if fmt == "JPEG" else {}))
    with Image.open(path) as im:
        want = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    got = read_frame(str(path))
    assert got.shape == want.shape == ((64, 40, 3) if orientation >= 5 else (40, 64, 3))
    assert np.array_equal(got, want)
    scale, full, frames = iter_previews([str(path)] * 2, side=16)
    first = next(frames)
    assert (full or first.shape[:2]) == got.shape[:2]
    assert (first.shape[0] > first.shape[1]) == (orientation >= 5)


def _icc():
    from PIL import ImageCms
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()  # not sRGB: any profile will do


def test_the_reference_frames_icc_profile_and_exif_reach_the_all_in_focus_outputs(tmp_path):
    import tifffile
    from dffbatch.batch.runner import run
    data = tmp_path / "data" / "s"
    data.mkdir(parents=True)
    icc = _icc()
    img = _scene(12, 64)
    for i in range(4):
        ex = Image.Exif()
        ex[0x0112] = 6  # stored 64 tall x 48 wide; the camera says: turn 90 degrees clockwise
        ex[0x010F] = "TestMaker"
        ex[0x0110] = "Model 1"
        frame = np.repeat(_blur(img, abs(i - 1)).astype(np.uint8)[:, :48, None], 3, axis=2)  # 64 x 48, stored
        Image.fromarray(frame).save(data / f"f{i}.jpg", "JPEG", quality=95, exif=ex, icc_profile=icc)
    cfg = tmp_path / "run.yaml"
    cfg.write_text("run: {name: r, output: out}\ndatasets: [data]\noutputs: {plots: false,\n"
                   "  formats: {allfocus: [png, tiff]}}\nexecution: {workers: 1}\n")
    assert run(str(cfg), progress=False, out=io.StringIO()) == 0
    job = next((tmp_path / "out" / "r").glob("*/data__s"))
    with Image.open(job / "allfocus.png") as im:
        assert im.size == (64, 48)  # upright: stored 48 wide x 64 tall, turned by orientation 6
        assert im.info.get("icc_profile") == icc
        ex = im.getexif()
        assert ex.get(0x010F) == "TestMaker" and ex.get(0x0112) == 1  # upright pixels: orientation reset
    for view in ("view/allfocus.webp", "view/thumb.webp"):  # the report shows it in its colours too
        with Image.open(job / view) as im:
            assert im.info.get("icc_profile") == icc, view
    with tifffile.TiffFile(job / "allfocus.tif") as t:
        tags = t.pages[0].tags
        assert bytes(tags[34675].value) == icc and tags[271].value == "TestMaker" and tags[272].value == "Model 1"
        assert t.pages[0].shape[:2] == (48, 64)


# ------------------------------------------------------------------ camera RAW

def _dng(path, scene, neutral=(1, 1, 1), when=None):
    """A minimal DNG (RGGB Bayer, 12 bits, identity colour matrix) written by tifffile,
    as LibRaw reads it; ``neutral``: the camera's as-shot white (AsShotNeutral)."""
    import tifffile
    H, W, _ = scene.shape
    cfa = np.empty((H, W), np.uint16)
    cfa[0::2, 0::2] = scene[0::2, 0::2, 0]
    cfa[0::2, 1::2] = scene[0::2, 1::2, 1]
    cfa[1::2, 0::2] = scene[1::2, 0::2, 1]
    cfa[1::2, 1::2] = scene[1::2, 1::2, 2]

    def rational(vals):
        return [x for v in vals for x in (int(round(v * 10000)), 10000)]
    tags = [(50706, "B", 4, (1, 4, 0, 0), True), (50707, "B", 4, (1, 1, 0, 0), True),
            (50708, "s", 0, "dffbatch test camera", True), (33421, "H", 2, (2, 2), True),
            (33422, "B", 4, (0, 1, 1, 2), True), (50717, "I", 1, (4095,), True), (50714, "I", 1, (0,), True),
            (50721, "2i", 9, rational([1, 0, 0, 0, 1, 0, 0, 0, 1]), True), (50778, "H", 1, (21,), True),
            (50728, "2I", 3, rational(neutral), True)]
    tifffile.imwrite(path, cfa, photometric=32803, extratags=tags, subfiletype=0,
                     **({"datetime": when} if when else {}))


def _raw_scene(h=64, w=96):
    s = np.zeros((h, w, 3))
    s[:, : w // 2] = (3200, 1600, 800)  # warm left half, cool right half (12-bit counts)
    s[:, w // 2:] = (400, 1200, 2800)
    return s


def test_raw_frames_are_demosaiced_linear_16_bit_with_one_white_balance(tmp_path):
    pytest.importorskip("rawpy", reason="the raw extra (rawpy) is not installed")
    from dffbatch.stages.read import iter_frames, read_frame
    a, b = tmp_path / "a.dng", tmp_path / "b.dng"
    _dng(a, _raw_scene())
    _dng(b, _raw_scene(), neutral=(0.5, 1, 0.8))  # the same sensor data, another as-shot white
    fa = read_frame(str(a))
    assert fa.shape == (64, 96, 3) and fa.dtype == np.uint16
    left, right = fa[20:40, 10:30].mean(axis=(0, 1)), fa[20:40, 66:86].mean(axis=(0, 1))
    assert left[0] > left[2] and right[2] > right[0]  # colours where they were
    assert not np.array_equal(fa, read_frame(str(b)))  # each file alone: its own white balance
    sa, sb = iter_frames([str(a), str(b)])
    assert np.array_equal(sa, sb)  # in one stack: the first frame's, so the frames match
    # linear: half the light, half the value (below clipping)
    _dng(tmp_path / "q2.dng", _raw_scene() / 2)
    _dng(tmp_path / "q4.dng", _raw_scene() / 4)
    q2, q4 = (read_frame(str(tmp_path / f"{q}.dng"))[20:40, 66:86].astype(float).mean() for q in ("q2", "q4"))
    assert q4 / q2 == pytest.approx(0.5, abs=0.01)


def test_a_raw_folder_runs_and_names_the_extra_when_rawpy_is_missing(tmp_path, monkeypatch):
    pytest.importorskip("rawpy", reason="the raw extra (rawpy) is not installed")
    import dffbatch.stages.read as read
    data = tmp_path / "data" / "s"
    data.mkdir(parents=True)
    for i in range(3):
        sc = _raw_scene()
        sc[:, ::7] *= 1 - 0.3 * (1 - abs(i - 1))  # stripes, sharpest (strongest) in the middle frame
        _dng(data / f"IMG_{i}.DNG", sc)
    stacks = discover(_entry(tmp_path / "data"))
    assert [len(s.files) for s in stacks] == [3]
    cfg = tmp_path / "run.yaml"
    cfg.write_text("run: {name: r, output: out}\ndatasets: [data]\noutputs: {plots: false, report: false}\n"
                   "execution: {workers: 1}\n")
    from dffbatch.batch.runner import run
    assert run(str(cfg), progress=False, out=io.StringIO()) == 0
    png = (next((tmp_path / "out" / "r").glob("*/data__s")) / "allfocus.png").read_bytes()
    width, height, bits, colour = np.frombuffer(png[16:26], ">u4,>u4,u1,u1")[0]
    assert (width, height, bits, colour) == (96, 64, 16, 2)  # RGB, linear 16-bit as demosaiced
    monkeypatch.setitem(sys.modules, "rawpy", None)  # as without the extra
    with pytest.raises(read.FrameError, match=r'IMG_0.DNG: RAW frames need the rawpy package.*dffbatch\[raw\]'):
        read.read_frame(stacks[0].files[0])


def test_a_raw_card_folder_is_split_by_capture_time(tmp_path):
    pytest.importorskip("rawpy", reason="the raw extra (rawpy) is not installed")
    card = tmp_path / "card"
    card.mkdir()
    for k, t in enumerate([0, 1, 2, 45, 46, 47]):  # two brackets of one scene, 43 s apart
        _dng(card / f"IMG_{k:04d}.DNG", _raw_scene(), when=f"2026:12:07 10:00:{t:02d}")
    stacks = discover(_entry(card))
    assert [len(s.files) for s in stacks] == [3, 3]
    assert "43.0 s capture-time gap before IMG_0003.DNG" in stacks[1].notes[0]
