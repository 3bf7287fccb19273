"""Run configuration: load YAML safely, validate every key, expand parameter sweeps.

Every problem is a :class:`ConfigError` whose message names the config file, the key
path and the problem (and a did-you-mean for unknown keys). See ``configs/README.md``
for every key.
"""
from __future__ import annotations

import contextlib
import copy
import difflib
import glob
import hashlib
import itertools
import json
import os
import re
from pathlib import Path

import yaml

from ..params import ALIGN_MODES, COMPOSITES, DEFAULTS, INTERPOLATIONS, MEASURES, REFINES

__all__ = ["ConfigError", "load_config", "config_for_paths", "expand_sweep", "sweep_id", "PARAM_KEYS", "SAFE_NAME"]

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class ConfigError(Exception):
    """An invalid configuration; the message is meant for the user as is."""


PARAM_KEYS = ("measure", "window", "step", "threshold", "interpolation", "median", "composite",
              "refine", "refine_radius", "refine_strength", "align", "align_reference", "align_crop")

#: ``outputs.formats``: the files written for each map. ``auto`` (all-in-focus): PNG where
#: a PNG holds the image exactly (8 or 16 bits, grey or colour), TIFF and an 8-bit PNG
#: preview otherwise (float data, other channel counts).
FORMAT_CHOICES = {"allfocus": ("png", "tiff"), "depth": ("tiff", "png", "png8"), "confidence": ("png", "tiff")}
FORMATS_DEFAULT = {"allfocus": "auto", "depth": ["png8", "tiff"], "confidence": ["png"]}
#: ``outputs.depth_near``: which end of the stack is nearest the camera, for the 8-bit
#: depth image (near = white) and the plots' colour bar.
DEPTH_NEAR = ("first", "last")
TIFF_COMPRESSIONS = ("none", "deflate", "zstd")

_SECTIONS = {
    "run": {"name": "run", "output": "outputs", "seed": 0, "notes": ""},
    "datasets": None,
    "params": dict(DEFAULTS),
    "sweep": {"mode": "product"},
    "outputs": {"plots": True, "mesh": False, "plot_grid": 48, "report": True,
                "formats": dict(FORMATS_DEFAULT), "tiff_compression": "none", "depth_near": "first"},
    "watch": {"settle": 10.0, "marker": None, "events": "auto", "poll": 5.0},
    "execution": {"workers": "auto", "threads_per_worker": "auto", "backend": "local",
                  "address": None, "retries": None, "max_jobs": 5000,
                  "max_pixels": 200_000_000, "on_bad_frame": "fail"},
}
_DATASET_KEYS = {"path": None, "layout": "auto", "include": ["*"], "exclude": [], "positions": None,
                 "include_hidden": False, "channel": None, "recursive": True, "split": "auto"}
LAYOUTS = ("auto", "folder", "prefix", "tiff")


def _fail(ctx, key, msg):
    raise ConfigError(f"{ctx}: {key}: {msg}" if key else f"{ctx}: {msg}")


def _unknown(ctx, where, key, allowed):
    near = difflib.get_close_matches(str(key), list(allowed), n=1)
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    _fail(ctx, f"{where}{key}", f"unknown key{hint}; allowed: {', '.join(allowed)}")


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _check_param(ctx, key, value):
    path = f"params.{key}"
    if key == "measure":
        if value not in MEASURES:
            _fail(ctx, path, f"{value!r} is not a focus measure; choose one of {', '.join(MEASURES)}")
    elif key == "window":
        if not _is_int(value) or value < 1 or value % 2 == 0:
            _fail(ctx, path, f"must be an odd integer >= 1, got {value!r}")
    elif key == "step":
        if not _is_int(value) or value < 1:
            _fail(ctx, path, f"must be an integer >= 1, got {value!r}")
    elif key == "threshold":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value < float("inf")):
            _fail(ctx, path, f"must be a number >= 0, got {value!r}")
    elif key == "interpolation":
        if value not in INTERPOLATIONS:
            _fail(ctx, path, f"{value!r} is not one of {', '.join(INTERPOLATIONS)}")
    elif key == "median":
        if not _is_int(value) or value < 0 or (value > 1 and value % 2 == 0):
            _fail(ctx, path, f"must be 0, 1 or an odd integer >= 3, got {value!r}")
    elif key == "composite":
        if value not in COMPOSITES:
            _fail(ctx, path, f"{value!r} is not one of {', '.join(COMPOSITES)}")
    elif key == "refine":
        if value not in REFINES:
            _fail(ctx, path, f"{value!r} is not one of {', '.join(REFINES)}")
    elif key == "refine_radius":
        if not _is_int(value) or value < 1:
            _fail(ctx, path, f"must be an integer >= 1, got {value!r}")
    elif key == "refine_strength":
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0
                                  or value != value or value == float("inf")):
            _fail(ctx, path, f"must be a number >= 0 or null (the mode's default), got {value!r}")
    elif key == "align":
        if value not in ALIGN_MODES:
            _fail(ctx, path, f"{value!r} is not one of {', '.join(ALIGN_MODES)}")
    elif key == "align_reference":
        if value not in ("middle", "first", "last") and not (_is_int(value) and value >= 0):
            _fail(ctx, path, f"must be middle, first, last or a frame index >= 0, got {value!r}")
    elif key == "align_crop":
        if not isinstance(value, bool):
            _fail(ctx, path, f"must be true or false, got {value!r}")


def _set_path(cfg, dotted, raw, ctx):
    """Apply one ``--set a.b=value`` override (value parsed as YAML)."""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{ctx}: --set {dotted}: cannot parse value {raw!r}: {exc}") from None
    keys = dotted.split(".")
    node = cfg
    for k in keys[:-1]:
        if not isinstance(node, dict):
            raise ConfigError(f"{ctx}: --set {dotted}: {k} is not a section")
        node = node.setdefault(k, {})
    if not isinstance(node, dict):
        raise ConfigError(f"{ctx}: --set {dotted}: not a section")
    if dotted == "run.output" or keys[0] == "datasets":
        value = _from_cwd(value)  # typed on the command line: relative to where it was typed
    node[keys[-1]] = value


def _apply(cfg, overrides, ctx):
    """Apply ``--set key.path=value`` overrides to ``cfg`` in place."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{ctx}: --set {item!r}: expected key.path=value")
        k, v = item.split("=", 1)
        _set_path(cfg, k.strip(), v, ctx)


def _from_cwd(value):
    """Relative paths in a ``--set`` value (a path, a list of them, dataset entries) made
    absolute against the current folder, where the user typed them."""
    if isinstance(value, str) and value and not os.path.isabs(value):
        return os.path.abspath(value)
    if isinstance(value, list):
        return [_from_cwd(v) for v in value]
    if isinstance(value, dict) and "path" in value:
        return {**value, "path": _from_cwd(value["path"])}
    return value


def load_config(path, overrides=(), base_dir=None) -> dict:
    """Load, override, validate and resolve a run config.

    Parameters
    ----------
    path : str or Path
        YAML file.
    overrides : iterable of "key.path=value"
    base_dir : Path, optional
        Relative dataset paths and the output root resolve against it (default: the
        config file's folder, so that a config works from any current folder; paths
        given with ``--set`` resolve against the current folder, where they were typed).

    Returns
    -------
    dict
        The resolved config, every default filled in.
    """
    ctx = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{ctx}: cannot read config: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{ctx}: not valid UTF-8 text (byte {exc.start})") from None
    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{ctx}: invalid YAML{where}: {what}") from None
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise ConfigError(f"{ctx}: the top level must be a mapping of sections "
                          f"({', '.join(_SECTIONS)}), got {type(cfg).__name__}")
    cfg = copy.deepcopy(cfg)
    _apply(cfg, overrides, ctx)
    return validate(cfg, ctx, Path(base_dir) if base_dir else Path(path).resolve().parent)


def config_for_paths(paths, output=None, overrides=()) -> dict:
    """The resolved config of ``dffbatch PATH... [-o OUT]``: the defaults, over folders
    and frame files given on the command line (no YAML).

    Each folder is a dataset entry (``layout: auto``, searched recursively); frame files
    are grouped by their folder into one entry each that reads just those files. The run
    is named after the first path and written under ``output`` (default ``outputs`` in
    the current folder).
    """
    ctx = "command line"
    entries, files = [], {}
    for p in paths:
        full = os.path.abspath(p)
        if os.path.isdir(full):
            entries.append({"path": full})
        elif os.path.isfile(full):
            files.setdefault(os.path.dirname(full), []).append(os.path.basename(full))
        else:
            raise ConfigError(f"{p}: no such folder or file")
    for folder, names in files.items():
        if len(names) == 1 and not names[0].lower().endswith((".tif", ".tiff")):
            raise ConfigError(f"{os.path.join(folder, names[0])}: one frame is not a focus stack; give the folder, "
                              "or at least 2 frames")
        entries.append({"path": folder, "include": [glob.escape(n) for n in names], "recursive": False})
    first = os.path.basename(os.path.abspath(paths[0]).rstrip(os.sep)) or "run"
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.splitext(first)[0] if os.path.isfile(paths[0]) else first)
    name = name.strip("._-")[:100] or "run"
    cfg = {"run": {"name": name, "output": os.path.abspath(output or "outputs")}, "datasets": entries}
    _apply(cfg, overrides, ctx)
    return validate(cfg, ctx, Path.cwd())


class _Errors:
    """Every problem of a config, reported at once: each check runs in ``check()``."""

    def __init__(self):
        self.messages = []

    @contextlib.contextmanager
    def check(self):
        try:
            yield
        except ConfigError as exc:
            self.messages.append(str(exc))

    def raise_if_any(self):
        if len(self.messages) == 1:
            raise ConfigError(self.messages[0])
        if self.messages:
            raise ConfigError(f"{len(self.messages)} problems:\n  " + "\n  ".join(self.messages))


def validate(cfg: dict, ctx: str, base: Path) -> dict:
    """Check and resolve a config; every problem found is reported in one ConfigError."""
    E = _Errors()
    out = {}
    for key in cfg:
        with E.check():
            if not isinstance(key, str) or key not in _SECTIONS:
                _unknown(ctx, "", key, _SECTIONS)
    for sec, defaults in _SECTIONS.items():
        if sec == "datasets":
            continue
        given = cfg.get(sec) or {}
        out[sec] = copy.deepcopy(defaults)
        with E.check():
            if not isinstance(given, dict):
                _fail(ctx, sec, f"must be a mapping, got {type(given).__name__}")
            out[sec] = _with_defaults(ctx, f"{sec}.", given, defaults, E)

    for check in (_check_run, _check_datasets, _check_params, _check_outputs, _check_watch, _check_execution):
        check(cfg, out, ctx, base, E)
    E.raise_if_any()
    n = len(expand_sweep(out))
    if n == 0:
        _fail(ctx, "params", "the sweep is empty")
    return out


def _check_run(cfg: dict, out: dict, ctx: str, base: Path, E: "_Errors") -> None:
    """``run``: a safe folder name, the output folder resolved against the config's, seed, notes."""
    r = out["run"]
    with E.check():
        if not isinstance(r["name"], str) or not SAFE_NAME.match(r["name"]) or ".." in r["name"]:
            _fail(ctx, "run.name", f"{r['name']!r} is not a safe folder name (letters, digits, '.', '_', '-'; "
                                   "no '..', no '/', at most 100 characters)")
    with E.check():
        if not isinstance(r["output"], str) or not r["output"] or "\x00" in r["output"]:
            _fail(ctx, "run.output", f"must be a folder path, got {r['output']!r}")
        r["output"] = str((base / r["output"]).resolve())
    with E.check():
        if not _is_int(r["seed"]):
            _fail(ctx, "run.seed", f"must be an integer, got {r['seed']!r}")
    with E.check():
        if not isinstance(r["notes"], str):
            _fail(ctx, "run.notes", "must be text")


def _check_datasets(cfg: dict, out: dict, ctx: str, base: Path, E: "_Errors") -> None:
    """``datasets``: one entry or a list, each a path or {path: ...}."""
    out["datasets"] = []
    ds = cfg.get("datasets")
    with E.check():
        if ds is None:
            _fail(ctx, "datasets", "missing: give at least one entry with a path")
        if isinstance(ds, (str, dict)):
            ds = [ds]
        if isinstance(ds, list) and not ds:
            _fail(ctx, "datasets", "empty: give at least one entry with a path")
        if not isinstance(ds, list):
            _fail(ctx, "datasets", "must be a list of entries (each a path or {path: ...})")
        for i, entry in enumerate(ds):
            with E.check():
                out["datasets"].append(_dataset(ctx, f"datasets[{i}]", entry, base, E))


def _check_params(cfg: dict, out: dict, ctx: str, base: Path, E: "_Errors") -> None:
    """``params`` (scalars or lists, each value checked) and ``sweep.mode``."""
    p = out["params"]
    for k in PARAM_KEYS:
        with E.check():
            vals = p[k] if isinstance(p[k], list) else [p[k]]
            if not vals:
                _fail(ctx, f"params.{k}", "an empty list gives no jobs")
            for v in vals:
                _check_param(ctx, k, v)
    with E.check():
        if out["sweep"]["mode"] not in ("product", "zip"):
            _fail(ctx, "sweep.mode", f"{out['sweep']['mode']!r} is not one of product, zip")


def _check_outputs(cfg: dict, out: dict, ctx: str, base: Path, E: "_Errors") -> None:
    """``outputs``: switches, the plot grid, formats, the TIFF compression and its codec."""
    o = out["outputs"]
    for k in ("plots", "mesh", "report"):
        with E.check():
            if not isinstance(o[k], bool):
                _fail(ctx, f"outputs.{k}", f"must be true or false, got {o[k]!r}")
    with E.check():
        if not _is_int(o["plot_grid"]) or not 8 <= o["plot_grid"] <= 512:
            _fail(ctx, "outputs.plot_grid", f"must be an integer from 8 to 512, got {o['plot_grid']!r}")
    o["formats"] = _formats(ctx, o["formats"], E)
    with E.check():
        if o["depth_near"] not in DEPTH_NEAR:
            _fail(ctx, "outputs.depth_near", f"must be first or last (the end of the stack focused nearest the "
                                             f"camera), got {o['depth_near']!r}")
    with E.check():
        if o["tiff_compression"] not in TIFF_COMPRESSIONS:
            _fail(ctx, "outputs.tiff_compression",
                  f"{o['tiff_compression']!r} is not one of {', '.join(TIFF_COMPRESSIONS)}")
        if o["tiff_compression"] != "none":
            try:
                import imagecodecs  # noqa: F401
            except ImportError:
                _fail(ctx, "outputs.tiff_compression", f"{o['tiff_compression']} needs the imagecodecs package "
                                                       "(pip install imagecodecs, or dffbatch[codecs])")


def _check_watch(cfg: dict, out: dict, ctx: str, base: Path, E: "_Errors") -> None:
    """``watch`` (``dffbatch watch CONFIG``): when a stack is complete, how changes are seen."""
    w = out["watch"]
    for k in ("settle", "poll"):
        with E.check():
            if not _number(w[k]) or not 0 < w[k] <= 86400:
                _fail(ctx, f"watch.{k}", f"must be a number of seconds > 0, got {w[k]!r}")
    with E.check():
        if w["marker"] is not None and (not isinstance(w["marker"], str) or not w["marker"] or "/" in w["marker"]):
            _fail(ctx, "watch.marker", f"must be a file name or glob in the stack's folder (DONE, *.done) or null, "
                                       f"got {w['marker']!r}")
    with E.check():
        if w["events"] not in ("auto", "poll"):
            _fail(ctx, "watch.events", f"must be auto (file-system events, polling where they do not work) or poll, "
                                       f"got {w['events']!r}")


def _check_execution(cfg: dict, out: dict, ctx: str, base: Path, E: "_Errors") -> None:
    """``execution``: workers, threads, backend, address, retries and the limits."""
    x = out["execution"]
    for k in ("workers", "threads_per_worker"):
        with E.check():
            if x[k] != "auto" and (not _is_int(x[k]) or x[k] < 1):
                _fail(ctx, f"execution.{k}", f"must be 'auto' or an integer >= 1, got {x[k]!r}")
    checks = [
        (x["backend"] not in ("local", "dask"), "execution.backend", f"{x['backend']!r} is not one of local, dask"),
        (x["address"] is not None and not isinstance(x["address"], str), "execution.address",
         "must be a scheduler address such as tcp://host:8786"),
        (x["retries"] is not None and (not _is_int(x["retries"]) or x["retries"] < 0), "execution.retries",
         f"must be an integer >= 0 (or null: 1 local, 2 dask), got {x['retries']!r}"),
        (not _is_int(x["max_pixels"]) or x["max_pixels"] < 1, "execution.max_pixels",
         f"must be an integer >= 1, got {x['max_pixels']!r}"),
        (not _is_int(x["max_jobs"]) or x["max_jobs"] < 1, "execution.max_jobs",
         f"must be an integer >= 1, got {x['max_jobs']!r}"),
        (x["on_bad_frame"] not in ("fail", "skip"), "execution.on_bad_frame",
         f"must be fail (a job with an unreadable frame fails) or skip (the frame is dropped and recorded), "
         f"got {x['on_bad_frame']!r}"),
    ]
    for bad, key, msg in checks:
        with E.check():
            if bad:
                _fail(ctx, key, msg)




def _formats(ctx, given, E):
    """``outputs.formats`` resolved: each map a sorted list of formats (``auto`` kept as is)."""
    if not isinstance(given, dict):
        with E.check():
            _fail(ctx, "outputs.formats", f"must be a mapping of allfocus / depth / confidence to formats, "
                                          f"got {given!r}")
        return dict(FORMATS_DEFAULT)
    out = _with_defaults(ctx, "outputs.formats.", given, FORMATS_DEFAULT, E)
    for k, choices in FORMAT_CHOICES.items():
        v = out[k]
        if k == "allfocus" and v == "auto":
            continue
        vals = [v] if isinstance(v, str) else v
        with E.check():
            if not isinstance(vals, list) or not vals or any(x not in choices for x in vals):
                extra = " or auto" if k == "allfocus" else ""
                _fail(ctx, f"outputs.formats.{k}", f"must be a list of {', '.join(choices)}{extra}, got {v!r}")
            out[k] = sorted(set(vals))
    return out


def _with_defaults(ctx, where, given, defaults, E):
    """``given`` over a copy of ``defaults``; each unknown key is a problem reported to ``E``."""
    for k in given:
        with E.check():
            if k not in defaults:
                _unknown(ctx, where, k, defaults)
    return {**copy.deepcopy(defaults), **{k: v for k, v in given.items() if k in defaults}}


#: ``split: auto``: where a folder of frames holds several stacks (a camera card), cut it
#: at a capture-time gap of more than ``time`` seconds and more than twice the median
#: interval, where the EXIF focus distance falls back (``focus``), and where neighbouring
#: frames look alike less than ``content`` (the correlation of their 16 x 16 block means),
#: tested on the formats of ``content_on`` (``jpeg``: from 1/8-size previews, about 1 ms a
#: frame; ``all``: other formats are decoded in full). See dffbatch.batch.split.
SPLIT_AUTO = {"time": 2.0, "focus": True, "content": 0.8, "content_on": "jpeg"}
SPLIT_OFF = {"time": False, "focus": False, "content": False, "content_on": "jpeg"}


def _split(ctx, where, value):
    """``split``: auto, none, or a mapping of some of time / focus / content (false: off)
    and content_on (jpeg, or all: the default of a mapping that sets content)."""
    if value in ("auto", True):
        return dict(SPLIT_AUTO)
    if value in ("none", False, None):
        return dict(SPLIT_OFF)
    if isinstance(value, dict) and set(value) <= set(SPLIT_AUTO):
        out = {**SPLIT_OFF, "content_on": "all" if value.get("content") else "jpeg", **value}
        ok = (out["time"] is False or (_number(out["time"]) and out["time"] > 0)) \
            and isinstance(out["focus"], bool) \
            and (out["content"] is False or (_number(out["content"]) and 0 < out["content"] < 1)) \
            and out["content_on"] in ("jpeg", "all")
        if ok:
            return out
    _fail(ctx, where, f"must be auto, none or a mapping of time (seconds > 0 or false), focus (true or false), "
                      f"content (a similarity from 0 to 1, or false) and content_on (jpeg or all), got {value!r}")


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


def _dataset(ctx, where, entry, base, E):
    """One resolved ``datasets`` entry; its problems go to ``E`` (the first fatal one raises)."""
    if isinstance(entry, str):
        entry = {"path": entry}
    if not isinstance(entry, dict):
        _fail(ctx, where, f"must be a path or a mapping, got {type(entry).__name__}")
    e = _with_defaults(ctx, f"{where}.", entry, _DATASET_KEYS, E)
    if not isinstance(e["path"], str) or not e["path"] or "\x00" in e["path"]:
        _fail(ctx, f"{where}.path", "missing or not a path")
    p = e["path"]
    has_glob = any(c in p for c in "*?[")
    full = p if os.path.isabs(p) else str(base / p)
    with E.check():
        if not has_glob and not os.path.exists(full):
            _fail(ctx, f"{where}.path", f"{full} does not exist")
    e["path"] = full
    with E.check():
        if e["layout"] not in LAYOUTS:
            _fail(ctx, f"{where}.layout", f"{e['layout']!r} is not one of {', '.join(LAYOUTS)}")
    for k in ("include", "exclude"):
        with E.check():
            if isinstance(e[k], str):
                e[k] = [e[k]]
            if not isinstance(e[k], list) or not all(isinstance(x, str) for x in e[k]):
                _fail(ctx, f"{where}.{k}", "must be a glob pattern or a list of them")
    ch = e["channel"]
    with E.check():
        if ch is not None and (isinstance(ch, bool) or not isinstance(ch, (int, str)) or ch == ""):
            _fail(ctx, f"{where}.channel", f"must be a channel index, a channel name or 'mean', got {ch!r}")
    with E.check():
        if not isinstance(e["recursive"], bool):
            _fail(ctx, f"{where}.recursive", f"must be true or false, got {e['recursive']!r}")
    with E.check():
        e["split"] = _split(ctx, f"{where}.split", e["split"])
    with E.check():
        if not isinstance(e["include_hidden"], bool):
            _fail(ctx, f"{where}.include_hidden", f"must be true or false, got {e['include_hidden']!r}")
    pos = e["positions"]
    with E.check():
        if pos is not None:
            if isinstance(pos, dict):
                if set(pos) != {"start", "step"} or not all(
                        isinstance(pos[k], (int, float)) and not isinstance(pos[k], bool) for k in pos):
                    _fail(ctx, f"{where}.positions", "a mapping must be {start: number, step: number}")
            elif not isinstance(pos, str):
                _fail(ctx, f"{where}.positions", "must be {start, step} or a file name (CSV/JSON beside the frames)")
    return e


def expand_sweep(cfg) -> list:
    """The list of parameter dicts (sweep points) of a resolved config."""
    p = cfg["params"]
    axes = {k: (p[k] if isinstance(p[k], list) else [p[k]]) for k in PARAM_KEYS}
    if cfg["sweep"]["mode"] == "zip":
        lengths = {len(v) for v in axes.values() if len(v) > 1}
        if len(lengths) > 1:
            raise ConfigError(f"sweep.mode zip: list parameters must have one length, got {sorted(lengths)}")
        n = lengths.pop() if lengths else 1
        return [{k: (v[i] if len(v) > 1 else v[0]) for k, v in axes.items()} for i in range(n)]
    keys = list(axes)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(axes[k] for k in keys))]


def sweep_id(params: dict) -> str:
    """Stable short id of a sweep point, e.g. ``sml-w9-1a2b3c4d``."""
    canon = json.dumps({k: params[k] for k in sorted(params)}, sort_keys=True)
    digest = hashlib.sha256(canon.encode()).hexdigest()[:8]
    return f"{params['measure']}-w{params['window']}-{digest}"
