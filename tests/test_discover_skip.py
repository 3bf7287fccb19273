"""A run never eats its own outputs: discovery skips run folders, the output root and hidden folders."""
import json
import shutil

import yaml

from dffbatch.cli import main
from dffbatch.batch.discover import RUN_MARKER, discover
from test_runner import small_stack


def _cfg(tmp_path, data, out, **dataset):
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump({"run": {"name": "r1", "output": str(out)},
                                 "datasets": [{"path": str(data), **dataset}],
                                 "outputs": {"plots": False, "report": False}, "execution": {"workers": 1}}))
    return p


def _ids(capsys):
    text = capsys.readouterr().out
    return sorted(l.split()[1].rstrip(":") for l in text.splitlines() if l.startswith("stack ")), text


def test_output_root_inside_the_dataset(tmp_path, capsys):
    data = tmp_path / "data"
    small_stack(data / "a")
    small_stack(data / "b", seed=1)
    cfg = _cfg(tmp_path, data, data / "out")
    assert main([str(cfg), "--no-progress"]) == 0
    assert (data / "out" / "r1" / RUN_MARKER).is_file()
    capsys.readouterr()
    # a second run under another name finds exactly the original stacks, and says what it skipped
    assert main([str(cfg), "--set", "run.name=r2", "--dry-run"]) == 0
    ids, text = _ids(capsys)
    assert ids == ["data__a", "data__b"], text
    skipped = [l for l in text.splitlines() if l.startswith("skipped ")]
    assert skipped == [f"skipped {data / 'out'}: the run's output root"], text
    assert main([str(cfg), "--set", "run.name=r2", "--no-progress"]) == 0
    jobs = json.loads((data / "out" / "r2" / "manifest.json").read_text())["jobs"]
    assert sorted(j.split("/")[1] for j in jobs) == ["data__a", "data__b"]
    assert "skipped" in (data / "out" / "r2" / "run.log").read_text()
    capsys.readouterr()
    # a third run under the first name resumes and redoes nothing
    assert main([str(cfg), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "nothing to do: all 2 jobs already done" in out and "workers" not in out  # no pool
    assert len(out.strip().splitlines()) == 1 and "finished" not in out and "index.html" in out, out  # one line


def test_a_copied_run_folder_is_skipped_by_its_marker(tmp_path, capsys):
    data = tmp_path / "data"
    small_stack(data / "a")
    out = tmp_path / "elsewhere"
    cfg = _cfg(tmp_path, data, out)
    assert main([str(cfg), "--no-progress"]) == 0
    shutil.copytree(out / "r1", data / "old_results")   # the marker comes along; the path is not the output root
    capsys.readouterr()
    assert main([str(cfg), "--set", "run.name=r2", "--dry-run"]) == 0
    ids, text = _ids(capsys)
    assert ids == ["data__a"], text
    assert f"skipped {data / 'old_results'}: a dffbatch run folder ({RUN_MARKER})" in text
    # pointing a dataset straight into a run folder (or a glob that reaches into one) finds nothing there
    skipped = []
    assert discover({"path": str(data / "old_results" / "*" / "*")}, skipped=skipped) == []
    assert skipped and all("inside a dffbatch run folder" in why for _, why in skipped)


def test_hidden_folders_and_files_are_skipped_unless_asked(tmp_path):
    data = tmp_path / "data"
    small_stack(data / "a")
    small_stack(data / ".ipynb_checkpoints" / "x", seed=1)
    small_stack(data / ".git" / "y", seed=2)
    small_stack(data / "b", seed=3)
    (data / "b" / ".f09.png").write_bytes((data / "b" / "f00.png").read_bytes())  # a hidden frame
    (data / "b" / "._f10.png").write_bytes(b"AppleDouble")                       # a macOS resource fork
    skipped = []
    stacks = discover({"path": str(data)}, skipped=skipped)
    assert sorted(s.id for s in stacks) == ["data__a", "data__b"]
    assert len(next(s for s in stacks if s.id == "data__b").files) == 4
    assert sorted(p.rsplit("/", 1)[1] for p, _ in skipped) == [".git", ".ipynb_checkpoints"]
    assert all("include_hidden" in why for _, why in skipped)
    stacks = discover({"path": str(data), "include_hidden": True, "layout": "folder"})
    assert sorted(s.id for s in stacks) == ["data__.git__y", "data__.ipynb_checkpoints__x", "data__a", "data__b"]
    assert len(next(s for s in stacks if s.id == "data__b").files) == 5   # .f09 yes, ._f10 never
    # the same rules for the prefix layout and for globs
    flat = tmp_path / "flat"
    for name in ("a", ".hidden"):
        d = flat / name
        small_stack(d)
        for f in sorted(d.iterdir()):
            f.rename(flat / f"{name.strip('.')}_{f.name}")
        d.rmdir()
    (flat / ".cache").mkdir()
    for f in sorted(flat.glob("a_*")):
        (flat / ".cache" / f.name.replace("a_", "c_")).write_bytes(f.read_bytes())
    ids = sorted(s.id for s in discover({"path": str(flat), "layout": "prefix"}))
    assert ids == ["flat__a", "flat__hidden"], ids   # a visible file name with "hidden" in it is fine
    assert [s.id for s in discover({"path": str(tmp_path / "*")}) if ".cache" in s.id] == []


def test_include_hidden_must_be_a_bool(tmp_path, capsys):
    small_stack(tmp_path / "data" / "a")
    cfg = _cfg(tmp_path, tmp_path / "data", tmp_path / "out", include_hidden="yes")
    assert main([str(cfg)]) == 2
    assert "datasets[0].include_hidden: must be true or false" in capsys.readouterr().err
