"""One job = one stack x one sweep point: read -> depth_from_focus -> write.

``run_job`` is what every backend executes (process pool or Dask): it takes a plain
dict and returns a plain dict, never raises for a bad stack (the error is recorded
with the file named), and writes every file atomically into the job's folder.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import time
import traceback

import numpy as np

from ..params import LOW_CONFIDENCE as LOW, STRENGTH_DEFAULT
from ..stages.read import FrameError, iter_frames

__all__ = ["make_job", "run_job", "input_fingerprint", "OUTPUT_VERSION"]

#: Bumped whenever the outputs of a job change for the same inputs and parameters.
OUTPUT_VERSION = 7  # 2: confidence.png; 3: outputs.formats, view/ images; 4: confidence a probability, depth8.png; 5: wls fill;
# 6: hybrid falls back to interpolate where focus is undecided, and the wls guide with it;
# 7: the confidence of refine median and bilateral keeps the order of their own weight per stack
# Not bumped for view/thumb_depth.jpg and thumb_confidence.jpg (the report grid's toggle): a
# resumed older job keeps its results and the report shows its full-size view/depth.jpg and
# confidence.jpg instead (jobs.js's views bit 8 says which jobs have the thumbnails).



def failed_record(job, error):
    """The record of a job that failed outside :func:`run_job` (its worker died or raised)."""
    return {"id": job["id"], "key": job["key"], "status": "failed", "error": error,
            "params": job["params"], "inputs": {}, "outputs": {}, "timings": {}, "metrics": {}, "notes": []}

def input_fingerprint(files) -> list:
    """Cheap identity of the inputs: name, size and modification time of each file."""
    out = []
    for f in files:
        try:
            st = os.stat(f)
            out.append([f, st.st_size, st.st_mtime_ns])
        except OSError:
            out.append([f, -1, -1])
    return out


def estimate_memory(files, params, multipage=False) -> int:
    """Rough peak bytes of one job, from the first frame's header and the parameters.

    Frames in flight (the one measured, the one prefetched, decoder scratch), about 20
    float32 H x W planes (luminance, measure, state, depth, confidence and its 7 feature
    planes, filter), the composite (1 frame for ``select``, 3 for ``interpolate``, 13 for
    ``hybrid``: interpolate's and 5 low-pass planes at 2 bytes a sample, two float64
    pyramids for ``pyramid``), SGM's focus volume (8 bytes x H x W x frames), the 11 planes of the
    ``wls`` solve (its input, weights, guide affinities, the two smoothed maps and their
    scratch), plus 200 MB for the
    interpreter, Numba and matplotlib. Unreadable headers count as 200 MB (the job will
    fail with its own message).
    """
    from ..stages.read import image_size
    try:
        w, h, pages = image_size(files[0])
    except Exception:  # noqa: BLE001
        return 200 << 20
    frame = w * h * (8 if files[0].lower().endswith((".tif", ".tiff")) else 3)
    comp = params.get("composite")
    composite = {"interpolate": 3 * frame, "hybrid": 13 * frame, "pyramid": 2 * 1.34 * w * h * 3 * 8}.get(comp, frame)
    n = pages if multipage else len(files)
    volume = 8 * w * h * n if params.get("refine") == "sgm" else 0
    solve = w * h * 4 * 11 if params.get("refine", "wls") == "wls" else 0
    return int(4 * frame + composite + w * h * 4 * 20 + volume + solve + (200 << 20))


def make_job(stack, params, sweep, run_dir, outputs, max_pixels=None, on_bad_frame="fail") -> dict:
    """The job of one stack at one sweep point.

    ``params``, ``outputs`` and the stack's file list are shared with the caller and
    between jobs, not copied (nothing changes them): the parent holds every job of a
    run, 100 000 at a time.
    """
    fp = input_fingerprint(stack.files)
    # the key holds the parameters as they will run: a default that changes between
    # versions (refine_strength: null) makes a different job, not a stale resume
    effective = dict(params)
    if effective.get("refine_strength") is None:
        effective["refine_strength"] = STRENGTH_DEFAULT.get(effective.get("refine"))
    positions = stack.positions
    if isinstance(positions, str) and stack.files:  # a file beside the frames: its identity too
        positions = [positions, input_fingerprint([os.path.join(os.path.dirname(stack.files[0]), positions)])]
    key = {"v": OUTPUT_VERSION, "params": effective, "inputs": fp, "hyper": stack.hyper,
           "positions": positions, "outputs": outputs}
    if on_bad_frame != "fail":  # a result without a bad frame is not the result a strict run wants
        key["on_bad_frame"] = on_bad_frame
    key_src = json.dumps(key, sort_keys=True, default=str)
    return {
        "id": f"{sweep}/{stack.id}",
        "sweep": sweep,
        "stack": stack.id,
        "files": stack.files,
        "multipage": stack.multipage,
        "layout": stack.layout,
        "positions": stack.positions,
        "hyper": stack.hyper,
        "stack_notes": stack.notes,
        "params": params,
        "outputs": outputs,
        "out_dir": os.path.join(run_dir, sweep, stack.id),
        "max_pixels": max_pixels,
        "on_bad_frame": on_bad_frame,
        "key": hashlib.sha256(key_src.encode()).hexdigest()[:16],
    }


def _positions(spec, folder, n):
    if spec is None:
        return None
    if isinstance(spec, dict):
        return [spec["start"] + spec["step"] * k for k in range(n)]
    path = os.path.join(folder, spec)
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        if path.lower().endswith(".json"):
            vals = json.loads(text)
            vals = vals.get("positions", vals) if isinstance(vals, dict) else vals
        else:
            vals = [row[0] for row in csv.reader(text.splitlines()) if row and row[0].strip()
                    and not row[0].lstrip().startswith("#")]
            if vals and not re.match(r"^\s*[-+0-9.]", vals[0]):
                vals = vals[1:]  # header
        vals = [float(v) for v in vals]
    except (OSError, ValueError, TypeError) as exc:
        raise FrameError(f"{path}: cannot read focus positions ({exc})") from None
    if len(vals) != n:
        raise FrameError(f"{path}: {len(vals)} focus positions for {n} frames")
    return vals


def _gt(folder):
    import tifffile
    gt = {}
    p = os.path.join(folder, "gt_depth.tif")
    if os.path.exists(p):
        gt["depth"] = tifffile.imread(p)
    for name in ("gt_allfocus.png", "gt_allfocus.tif"):
        p = os.path.join(folder, name)
        if os.path.exists(p):
            from ..stages.read import read_frame
            gt["allfocus"] = read_frame(p)
            break
    return gt


def _file_shape(path):
    """The image's own (H, W[, C]) from its header, or None where it cannot be read cheaply."""
    try:
        import imageio.v3 as iio
        return tuple(iio.improps(path).shape)
    except Exception:  # noqa: BLE001 - only a better message is lost
        return None


def _frame_error(exc, files, multipage):
    """Turn the core's 'frame k: ...' into '<file>: ...'. A size mismatch found on
    previews (``align: auto`` registers reduced frames) quotes the files' own sizes."""
    msg = str(exc)
    m = re.match(r"^frame (\d+): (.*)$", msg, re.S)
    if m and not multipage and int(m.group(1)) < len(files):
        k, rest = int(m.group(1)), m.group(2)
        if rest.startswith("shape ") and "differs from frame 0's" in rest:
            own, first = _file_shape(files[k]), _file_shape(files[0])
            if own and first and own[:2] != first[:2]:
                rest = f"shape {own} differs from frame 0's {first} ({os.path.basename(files[0])})"
        return f"{files[k]}: {rest}"
    if m and multipage:
        return f"{files[0]} page {m.group(1)}: {m.group(2)}"
    if files and "at least 2 frames" in msg:
        return f"{os.path.dirname(files[0])}: {msg}"
    return msg


def _inject_fault(job):
    """Fault injection for the reliability tests: ``DFFBATCH_FAULT_KILL=<text>`` kills
    the worker process (SIGKILL) when the job id contains ``<text>``; with
    ``DFFBATCH_FAULT_ONCE=<file>`` only the first time (the file records it).
    ``DFFBATCH_STARTED_DIR=<folder>``: each job, as it starts, leaves a file
    ``<pid>.started`` there, the signal a test waits on before it kills a busy worker.
    ``DFFBATCH_HOLD=<text>::<file>``: a job whose id contains ``<text>`` waits at its
    start until ``<file>`` exists (at most 120 s), so that a test can interrupt a run
    while it is certain to be in the middle, whatever the machine's load."""
    started = os.environ.get("DFFBATCH_STARTED_DIR")
    if started:
        with open(os.path.join(started, f"{os.getpid()}.started"), "a") as fh:
            fh.write(job["id"] + "\n")
    hold = os.environ.get("DFFBATCH_HOLD", "")
    if "::" in hold:
        text, release = hold.split("::", 1)
        if text in job["id"]:
            with open(release + ".held", "w") as fh:
                fh.write(job["id"])
            deadline = time.monotonic() + 120
            while not os.path.exists(release) and time.monotonic() < deadline:
                time.sleep(0.01)
    pattern = os.environ.get("DFFBATCH_FAULT_KILL")
    if not pattern or pattern not in job["id"]:
        return
    once = os.environ.get("DFFBATCH_FAULT_ONCE")
    if once:
        try:
            fd = os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.close(fd)
        except FileExistsError:
            return
    import signal
    os.kill(os.getpid(), signal.SIGKILL)


def peak_rss() -> int:
    """This process's peak resident memory, bytes.

    Linux's ``VmHWM`` belongs to the process's own address space; ``ru_maxrss`` (the
    fallback elsewhere) survives ``execve``, so a worker started from a large parent
    would report the parent's peak.
    """
    from ..sysinfo import proc_bytes
    peak = proc_bytes("/proc/self/status", "VmHWM")
    if peak is not None:
        return peak
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _axis_top(top: int) -> int:
    """The 3-D plot's depth axis ends at the next multiple of 4 (of 16 past 32) at or
    above the last frame: stacks of a few neighbouring sizes share one plot scaffold."""
    step = 4 if top <= 32 else 16
    return max(step, -(-top // step) * step)


def kernel_threads(threads: int) -> int:
    """Numba threads a job's kernels run on in a worker of ``threads`` (see :func:`run_job`)."""
    return max(1, threads // 2) if threads > 1 else 1


def run_job(job: dict) -> dict:
    """Run one job; return its manifest record (status ok/failed, timings, files, hashes).

    A worker with several cores (fewer jobs than cores) decodes the next frames on as
    many threads and runs the kernels on half of them: decoders and parallel kernels
    oversubscribing the cores stall each other. 300 frames of 1024^2 16-bit PNG on 2
    cores: 4.5 s (2 kernel threads, 1 decoder), 3.9 s (2 + 2), 2.7 s (1 + 2). The
    kernels' results do not depend on their thread count.
    """
    import numba
    from ..stages.kernels import use_twins
    use_twins(job.get("kernel_twins", False))  # a first run's (see dffbatch.batch.runner._warm_up)
    threads = numba.get_num_threads()
    if threads > 1:
        numba.set_num_threads(kernel_threads(threads))
    try:
        return _run_job(job, decoders=threads)
    finally:
        numba.set_num_threads(threads)


def _run_job(job: dict, decoders: int = 1) -> dict:
    from ..core import depth_from_focus

    _inject_fault(job)
    t_start = time.perf_counter()
    rec = {"id": job["id"], "key": job["key"], "status": "failed", "error": None, "inputs": {},
           "params": job["params"], "timings": {}, "outputs": {}, "metrics": {},
           "notes": list(job.get("stack_notes") or ()), "pid": os.getpid()}
    files = job["files"]
    folder = os.path.dirname(files[0]) if files else ""
    try:
        gt = _gt(folder) if folder else {}
        while True:
            src = _JobSource(job, rec, gt, decoders)
            try:
                res = depth_from_focus(src, positions=src.positions, focus_channel=src.focus_channel,
                                       **job["params"])
                break
            except FrameError as exc:
                job = _without_bad_frame(job, rec, exc)  # on_bad_frame: skip, or raise it again
        gt = _record_result(rec, res, src.hashes, gt)
        _write_outputs(job, rec, res, src.calibration, gt)
        _truth_metrics(rec, res, gt, folder, src.frame_psnr)
        rec["status"] = "ok"
    except (FrameError, ValueError, TypeError) as exc:
        rec["error"] = _frame_error(exc, job["files"], job["multipage"])
    except OSError as exc:
        rec["error"] = f"{getattr(exc, 'filename', None) or job['out_dir']}: {exc.strerror or exc}"
        rec["errno"] = exc.errno  # ENOSPC: the runner stops starting jobs (disk full)
    except MemoryError as exc:
        rec["error"] = str(exc) or "out of memory"
    except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
        rec["error"] = f"unexpected {type(exc).__name__}: {exc}"
        rec["traceback"] = traceback.format_exc(limit=8)
    rec["timings"]["total"] = round(time.perf_counter() - t_start, 4)
    try:
        rec["peak_rss_mb"] = round(peak_rss() / 2 ** 20, 1)
    except (ImportError, OSError):
        pass
    return rec


def _without_bad_frame(job, rec, exc):
    """``on_bad_frame: skip``: the job again without the unreadable frame ``exc.path``,
    the drop recorded in ``rec["skipped_frames"]`` and its notes. Frames keep their
    place: without configured positions, the depth in units (``depth_units.tif``) is in
    the stack's own frame numbers. Raises ``exc`` again where the policy is ``fail``, no
    single file is to blame, or fewer than 2 frames would be left."""
    files = job["files"]
    bad = getattr(exc, "path", None)
    if job.get("on_bad_frame", "fail") != "skip" or job["multipage"] or job.get("hyper") or bad not in files:
        raise exc
    if len(files) - 1 < 2:
        raise FrameError(f"{os.path.dirname(files[0])}: fewer than 2 readable frames left after skipping "
                         f"{', '.join(os.path.basename(f) for f in [*rec.get('skipped_frames', []), bad])} "
                         f"(the last: {exc})") from None
    k = files.index(bad)
    first = job.get("frame_numbers") or list(range(len(files)))
    rec.setdefault("skipped_frames", []).append(bad)
    rec["notes"].append(f"skipped unreadable frame {os.path.basename(bad)} (on_bad_frame: skip): "
                        f"{str(exc).replace(bad + ': ', '', 1)}")
    return {**job, "files": files[:k] + files[k + 1:], "frame_numbers": first[:k] + first[k + 1:]}


class _JobSource:
    """A job's frames for :func:`dffbatch.depth_from_focus`: a callable returning a fresh
    iterator (alignment reads twice), with a ``preview`` for estimation where the files
    allow it. Also what the files say: positions, calibration, the channel to measure;
    and, as frames are read, their hashes and (with a true all-in-focus image) each
    frame's PSNR."""

    def __init__(self, job, rec, gt, decoders):
        self.job, self.rec, self.gt, self.decoders = job, rec, gt, decoders
        files = job["files"]
        folder = os.path.dirname(files[0]) if files else ""
        self.hashes, self.frame_psnr = {}, []
        self.calibration = self.focus_channel = self.lay = None
        hyper = job.get("hyper")
        if hyper:  # a microscope hyperstack read by its axes (dffbatch.stages.hyperstack)
            from ..stages.hyperstack import calibration_of, tiff_layouts
            lay = self.lay = tiff_layouts(files[0])[hyper["series"]]
            n_files = lay.size("Z")
            self.calibration = calibration_of(lay)
            self.focus_channel = "mean" if hyper.get("channel") is None else hyper["channel"]
            rec["axes"] = lay.axes
        else:
            n_files = len(files) if not job["multipage"] else None
        kept = job.get("frame_numbers")  # after on_bad_frame: skip, the frames' places in the stack
        n_all = n_files if kept is None or not n_files else n_files + len(rec.get("skipped_frames", []))
        self.positions = _positions(job["positions"], folder, n_all) if n_files else None
        if self.positions is not None:
            rec["positions_source"] = "config positions"
            if kept is not None:
                self.positions = [self.positions[i] for i in kept]
        elif kept is not None:
            self.positions = [float(i) for i in kept]
            rec["positions_source"] = "frame numbers in the stack as found (frames were skipped)"
        elif hyper and lay.positions(hyper["t"]) is not None:
            self.positions = lay.positions(hyper["t"])
            rec["positions_source"] = f"{lay.z_source} ({lay.z_step or 'per plane'} {lay.z_unit or ''})".strip()
            rec["depth_unit"] = lay.z_unit
        if not job["multipage"]:
            from ..stages.align import ESTIMATE_SIDE
            from ..stages.read import iter_previews
            self.preview = lambda: iter_previews(files, ESTIMATE_SIDE)

    def __call__(self):
        job, files = self.job, self.job["files"]
        if job.get("hyper"):
            from ..stages.hyperstack import iter_zplanes
            from ..stages.write import sha256_file
            self.hashes[files[0]] = {"bytes": os.path.getsize(files[0]), "sha256": sha256_file(files[0])}
            return iter_zplanes(self.lay, job["hyper"]["t"])
        stream = iter_frames(files, job["multipage"], self.hashes, self.rec["notes"], job.get("max_pixels"),
                             self.decoders)
        if "allfocus" in self.gt and not self.frame_psnr:
            return self._watch(stream, self.gt["allfocus"])
        return stream

    def _watch(self, frames, ref):
        from ..truth.metrics import psnr
        for f in frames:
            if f.shape == ref.shape:
                self.frame_psnr.append(psnr(f, ref))
            yield f


def _record_result(rec, res, hashes, gt):
    """The result's facts into the record; the ground truth cropped as the outputs were."""
    al = res.alignment
    if al is not None:
        rec["alignment"] = al.to_json()
        if al.applied:
            rec["crop"] = list(al.crop)
            y0, y1, x0, x1 = al.crop
            gt = {k: v[y0:y1, x0:x1] for k, v in gt.items()}
    rec["inputs"] = {os.path.basename(k): v for k, v in hashes.items()}
    rec["n_frames"] = res.n_frames
    rec["shape"] = list(res.allfocus.shape)
    # confidence: P(depth within a frame of the truth) (dffbatch.stages.confidence)
    rec["confidence_mean"] = round(float(res.confidence.mean()), 4)
    rec["low_confidence"] = round(float((res.confidence < LOW).mean()), 4)  # more likely wrong than right
    rec["timings"] = {k: round(v, 4) for k, v in res.timings.items()}
    return gt


def _write_outputs(job, rec, res, calibration, gt):
    """Maps, plots, mesh and the report's views into the job's folder; what resume checks."""
    from ..report.plots import mesh_ply
    from ..stages.write import atomic_bytes
    t0 = time.perf_counter()
    out = job["out_dir"]
    os.makedirs(out, exist_ok=True)
    o = rec["outputs"]
    meta = _reference_metadata(job, res)
    o.update(write_maps(out, res, job["outputs"], calibration, rec["notes"], meta))
    rec["timings"]["write"] = round(time.perf_counter() - t0, 4)
    if job["outputs"].get("plots", True):
        _write_plots(job, rec, res, calibration)
    if job["outputs"].get("mesh", False):
        o["mesh.ply"] = atomic_bytes(os.path.join(out, "mesh.ply"), mesh_ply(res.depth, res.allfocus))
    if job["outputs"].get("report", True):
        from ..report.views import write_views
        t0 = time.perf_counter()
        truth = gt["depth"] if "depth" in gt and gt["depth"].shape == res.depth.shape else None
        o.update(write_views(out, res.allfocus, res.depth, res.confidence, res.n_frames, truth, meta["icc"]))
        if job["outputs"].get("mesh", False):
            from ..report.views import write_mesh_view
            o.update(write_mesh_view(out, res.depth, res.allfocus, res.n_frames))
        rec["timings"]["views"] = round(time.perf_counter() - t0, 4)
    stats = {}
    for name in o:  # what resume checks: a stat per file instead of reading it
        st = os.stat(os.path.join(out, name))
        stats[name] = [st.st_size, st.st_mtime_ns]
    rec["output_stats"] = stats


def _reference_metadata(job, res):
    """The ICC profile, EXIF and camera tags of the reference frame (alignment's, else
    the first), for the all-in-focus outputs (:func:`dffbatch.stages.read.file_metadata`)."""
    from ..stages.read import file_metadata
    files = job["files"]
    al = res.alignment
    k = al.reference if al is not None and not job["multipage"] and 0 <= al.reference < len(files) else 0
    return file_metadata(files[k])


def _write_plots(job, rec, res, calibration):
    """The 2-D and 3-D depth plots, and the motion plot where frames were aligned or a
    model was asked for (auto, the default, that found nothing to do says so in the
    manifest and report)."""
    from ..report.plots import alignment_png, depth_2d_png, depth_3d_png
    from ..stages.write import atomic_bytes
    t0 = time.perf_counter()
    out, o, title = job["out_dir"], rec["outputs"], job["stack"]
    near_low = job["outputs"].get("depth_near", "first") == "first"  # frame 0 nearest: the bar's low end
    if res.depth_units is not None and len(res.positions) > 1 and res.positions[-1] < res.positions[0]:
        near_low = not near_low  # positions fall from the first frame to the last
    o["depth_2d.png"] = atomic_bytes(os.path.join(out, "depth_2d.png"),
                                     depth_2d_png(res.depth if res.depth_units is None else res.depth_units,
                                                  title, "frame" if res.depth_units is None else
                                                  (rec.get("depth_unit") or "position units"),
                                                  pixel=calibration, confidence=res.confidence, near_low=near_low))
    o["depth_3d.png"] = atomic_bytes(os.path.join(out, "depth_3d.png"),
                                     depth_3d_png(res.depth, job["outputs"].get("plot_grid", 48), title,
                                                  zrange=(0, _axis_top(res.n_frames - 1)), pixel=calibration,
                                                  confidence=res.confidence))
    rec["timings"]["plots"] = round(time.perf_counter() - t0, 4)
    al = res.alignment
    if al is not None and al.per_frame and (al.applied or al.mode != "auto"):
        o["alignment.png"] = atomic_bytes(os.path.join(out, "alignment.png"), alignment_png(al.per_frame, title))


def _truth_metrics(rec, res, gt, folder, frame_psnr):
    """Depth and all-in-focus metrics where the stack comes with ground truth of the outputs' shape."""
    from ..truth.metrics import depth_metrics, image_metrics
    if "depth" in gt and gt["depth"].shape == res.depth.shape:
        rec["metrics"].update(depth_metrics(res.depth, gt["depth"]))
        rec["gt_depth"] = os.path.join(folder, "gt_depth.tif")
    if "allfocus" in gt and gt["allfocus"].shape == res.allfocus.shape:
        rec["metrics"].update(image_metrics(res.allfocus, gt["allfocus"], gt.get("depth")))
        if frame_psnr:
            rec["metrics"]["best_frame_psnr"] = max(frame_psnr)


def write_maps(out, res, outputs, calibration, notes, meta=None) -> dict:
    """Write the maps of ``res`` in the formats of ``outputs["formats"]``; return ``{name: sha256}``.

    depth: ``tiff`` float32 frames (and ``depth_units.tif`` when positions are given),
    ``png`` 16-bit 0..65535 = frame 0..N-1, ``png8`` (``depth8.png``) 8-bit grey, near =
    white (:func:`dffbatch.report.views.depth_u8`); confidence: ``png`` 8-bit 0..255 = 0..1,
    ``tiff`` float32; all-in-focus: ``png`` (8 or 16 bits as read), ``tiff`` (any data),
    ``auto`` = ``png`` where a PNG holds the image exactly, else ``tiff`` and an 8-bit PNG
    preview. Float TIFFs are compressed as ``outputs["tiff_compression"]`` says.
    ``meta``: the reference frame's ICC profile, EXIF and camera tags, carried to the
    all-in-focus image (:func:`dffbatch.stages.read.file_metadata`).
    """
    from .config import FORMATS_DEFAULT
    from ..stages.write import write_png, write_tiff
    fmts = outputs.get("formats") or FORMATS_DEFAULT
    comp = outputs.get("tiff_compression", "none")
    o = {}
    join = os.path.join

    def tiff(name, a, meta=None):
        o[name] = write_tiff(join(out, name), a, calibration, compression=comp if a.dtype.kind == "f" else "none",
                             meta=meta)

    if "tiff" in fmts["depth"]:
        tiff("depth.tif", res.depth)
        if res.depth_units is not None:
            tiff("depth_units.tif", res.depth_units)
    if "png8" in fmts["depth"]:
        from ..report.views import depth_u8
        o["depth8.png"] = write_png(join(out, "depth8.png"),
                                    depth_u8(res.depth, res.n_frames, outputs.get("depth_near", "first")))
    if "png" in fmts["depth"]:
        scale = 65535.0 / max(res.n_frames - 1, 1)
        o["depth.png"] = write_png(join(out, "depth.png"), np.round(res.depth * scale).astype(np.uint16))
    if "tiff" in fmts["confidence"]:
        tiff("confidence.tif", res.confidence)
    if "png" in fmts["confidence"]:
        from ..report.views import confidence_u8
        o["confidence.png"] = write_png(join(out, "confidence.png"), confidence_u8(res.confidence))
    af = res.allfocus
    exact = af.dtype in (np.uint8, np.uint16) and (af.ndim == 2 or af.shape[2] in (1, 3, 4))
    want = fmts["allfocus"]
    if want == "auto":
        want = ["png"] if exact else ["png", "tiff"]
    if "tiff" in want:
        tiff("allfocus.tif", af, meta)
    if "png" in want:
        if exact:
            o["allfocus.png"] = write_png(join(out, "allfocus.png"), af, meta)
        else:
            if af.ndim == 3 and af.shape[2] not in (1, 3, 4):  # channels a PNG cannot hold: their mean
                from ..stages.measure import plane_mean_focus
                prev, what = plane_mean_focus(af), f"the mean of {af.shape[2]} channels"
            else:
                prev, what = af, "float data"
            prev = np.clip(prev / max(float(prev.max()), 1e-12) * 255, 0, 255).astype(np.uint8)
            o["allfocus.png"] = write_png(join(out, "allfocus.png"), prev)
            keep = "allfocus.tif keeps the values" if "tiff" in want else \
                "no TIFF keeps the values (outputs.formats.allfocus: [png])"
            notes.append(f"allfocus.png is an 8-bit preview of {what}; {keep}")
    return o
