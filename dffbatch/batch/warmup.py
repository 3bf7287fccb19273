"""First run: compile the kernels once, before the workers start, in parallel, and show it.

Numba compiles each kernel the first time it runs and caches the machine code on disk
(``cache=True``: in ``__pycache__`` beside the package that is imported, or under
``NUMBA_CACHE_DIR`` when set). Done inside the first jobs, every worker would compile
the same kernels at once, the progress bar would sit at 0 and the compile time would
count as job time. Instead the runner compiles before the jobs, in as many helper
processes as there are cores (the parent stays small), sharing Numba's on-disk cache:

1. each helper compiles its share of the top-level kernel specialisations of the
   default run (``warm_signatures.json``, written by ``benchmarks/compile_profile.py
   --record``; shared out by their recorded seconds, longest first), then
2. runs its part of the run's own path on a small crop of the first frame, with the
   run's parameters (``plain``: unaligned; ``aligned``: only where the run may align),
   which compiles whatever the list did not hold (a measure or composite not in the
   default run, another dtype) and loads the rest from the cache.

The runner waits for the ``plain`` group only; the ``aligned`` one, where the run may
align, compiles in the background while the first jobs run (:class:`Background`): most
first runs align nothing, and the bundled quick start never does.

A tqdm bar follows the compiled share of the list. Ctrl-C stops the helpers and says so
in one line (:class:`Interrupted`). A stale list costs time, never correctness: step 2
compiles what step 1 missed.
"""
from __future__ import annotations

import glob
import json
import os
import queue
import subprocess
import sys
import threading
import time

__all__ = ["GROUPS", "Interrupted", "Background", "cache_is_cold", "compile_kernels", "listed", "may_align",
           "parallel_cached"]

#: What the warm-up runs, in groups: ``plain`` the unaligned path, ``aligned`` the aligned one.
GROUPS = ("plain", "aligned")
_LIST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "warm_signatures.json")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during the compile: the helpers are stopped, nothing was written."""


def _index_files() -> list:
    """The index files (``*.nbi``) of Numba's cache for this package's kernels."""
    CACHE_DIR = os.environ.get("NUMBA_CACHE_DIR", "")  # what Numba reads; no import of Numba here
    if CACHE_DIR:
        return glob.glob(os.path.join(CACHE_DIR, "**", "*.nbi"), recursive=True)
    stages = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "stages")
    return glob.glob(os.path.join(stages, "__pycache__", "*.nbi"))  # where the kernels live


def cache_is_cold() -> bool:
    """True when Numba's cache holds no kernel of this package yet (a first run)."""
    return not _index_files()


def listed() -> list:
    """The recorded top-level specialisations: dicts of ``kernel``, ``sig``, ``seconds``
    and ``group`` (``plain`` if the unaligned path needs it, else ``aligned``)."""
    try:
        with open(_LIST) as f:
            return json.load(f)["roots"]
    except (OSError, ValueError, KeyError):
        return []


def _shares(roots, n, groups=GROUPS):
    """Indices of ``roots`` of ``groups`` for each of ``n`` helpers: longest first to the least loaded."""
    load, parts = [0.0] * n, [[] for _ in range(n)]
    for i in sorted((i for i, r in enumerate(roots) if r.get("group", "plain") in groups),
                    key=lambda i: -roots[i]["seconds"]):
        j = load.index(min(load))
        parts[j].append(i)
        load[j] += roots[i]["seconds"]
    return parts


def _compile_listed(indices):  # runs in a helper: compile these specialisations, one line each
    import importlib
    from numba.core import types
    ns = dict(vars(types), bool=types.boolean)
    roots = listed()
    for i in indices:
        r = roots[i]
        try:
            module, name = r["kernel"].rsplit(".", 1)
            getattr(importlib.import_module(module), name).compile(eval(r["sig"], ns))
        except Exception:  # a stale entry: the run's own path below compiles what is needed
            pass
        print(f"done {i}", flush=True)


def _warm(first_file, multipage, params_list, groups=GROUPS):  # runs in a helper
    import numpy as np
    from ..core import depth_from_focus
    from ..stages.read import iter_frames
    frame = next(iter_frames([first_file], multipage))
    crop = np.ascontiguousarray(frame[:48, :48])
    for p in params_list:
        p = {k: v for k, v in p.items() if k not in ("align", "align_reference", "align_crop")}
        if "plain" in groups:
            depth_from_focus([crop, crop[::-1].copy(), crop], prefetch=0, **p)
        if "aligned" in groups:
            # the aligned path's kernels (staged measure, warped compositing): auto, the default,
            # aligns most stacks. White noise of the frame's dtype and channels, moved by 1 px,
            # always registers (a crop of the frame may be flat)
            rng = np.random.default_rng(0)
            top = np.iinfo(crop.dtype).max if crop.dtype.kind in "ui" else 1.0
            tex = (rng.random((64, 64) + crop.shape[2:]) * top).astype(crop.dtype)
            depth_from_focus([tex, np.roll(tex, 1, axis=1), tex], prefetch=0, align="translation", **p)


def _threads(n, twins=False):
    """Run this helper's kernels on ``n`` Numba threads, with the serial twins or not, as
    the jobs will (:func:`dffbatch.stages.kernels.use_twins`): what they call is what is
    worth compiling."""
    import numba
    from ..stages.kernels import use_twins
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
    use_twins(twins)


def parallel_cached() -> bool:
    """Whether Numba's cache holds the parallel kernels of the unaligned path (an index
    file for each listed one): a run then calls them; before, its workers call the
    serial twins, which compile faster (:mod:`dffbatch.stages.kernels`)."""
    names = {os.path.basename(p) for p in _index_files()}
    prefixes = {".".join(r["kernel"].split(".")[-2:]) + "-" for r in listed() if r.get("group", "plain") == "plain"}
    return bool(prefixes) and all(any(n.startswith(p) for n in names) for p in prefixes)


def _helper(indices, first_file, multipage, params_list, groups, threads=1, twins=False):  # a helper's work
    _threads(threads, twins)
    _compile_listed(indices)
    _warm(first_file, multipage, params_list, groups)


def _background(indices, first_file, multipage, params_list, groups, threads=1, twins=False):
    """:class:`Background`'s helper: the same work at low priority, so that jobs come first;
    with ``twins``, then the parallel kernels of every group, for the runs after this one."""
    os.nice(10)
    if groups:
        _helper(indices, first_file, multipage, params_list, groups, threads, twins)
    if twins:  # the unaligned path first: the runs after this one switch once it is cached (parallel_cached)
        roots = listed()
        order = sorted(range(len(roots)), key=lambda i: roots[i].get("group", "plain") != "plain")
        _helper(order, first_file, multipage, params_list,
                ["plain", "aligned"] if may_align(params_list) else ["plain"], threads, False)


def may_align(params_list) -> bool:
    """Whether any sweep point of the run may align (``align`` other than ``none``)."""
    return any(p.get("align", "auto") != "none" for p in params_list)


def _plan(params_list, workers, groups=None):
    """(list indices, groups) for each helper: the list shared out, the groups the run
    needs (or ``groups``)."""
    if groups is None:
        groups = ["plain", "aligned"] if may_align(params_list) else ["plain"]
    n = max(1, workers)
    parts = _shares(listed(), n, groups)
    per = [[] for _ in range(n)]
    for i, g in enumerate(groups):
        per[i % n].append(g)
    return [(parts[i], per[i]) for i in range(n)]


def compile_kernels(first_file, multipage, params_list, out=sys.stdout, after=1.0, workers=None,
                    progress=True, groups=None, threads=1, twins=False):
    """Compile in helper processes (``workers``, default: one per core this process may
    use), with a progress bar if it takes longer than ``after`` seconds.

    ``groups``: what to compile (default: what the run needs, see :func:`_plan`);
    ``threads``, ``twins``: the Numba threads the jobs' kernels will run on, and whether
    they call the serial twins (:func:`dffbatch.stages.kernels.use_twins`).
    Returns the seconds it took. A helper's failure is not an error: the jobs compile as
    before. Ctrl-C stops the helpers and raises :class:`Interrupted`.
    """
    from tqdm import tqdm
    roots = listed()
    if not workers:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    code = ("import json, sys; from dffbatch.batch.warmup import _helper; "
            "a = json.loads(sys.argv[1]); _helper(*a)")
    t0 = time.perf_counter()
    procs, lines = [], queue.Queue()
    plan = _plan(params_list, workers, groups)
    total = round(sum(roots[i]["seconds"] for indices, _ in plan for i in indices), 1)
    for indices, groups in plan:
        arg = json.dumps([indices, first_file, multipage, params_list, groups, threads, twins], default=str)
        p = subprocess.Popen([sys.executable, "-c", code, arg], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=lambda s=p.stdout: [lines.put(x) for x in s], daemon=True).start()
        procs.append(p)
    bar, done = None, 0.0
    try:
        while any(p.poll() is None for p in procs):
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                line = ""
            if bar is None and time.perf_counter() - t0 > after:
                print("dffbatch: compiling kernels (first run; cached for later runs)...", file=out, flush=True)
                bar = tqdm(total=total, initial=done, desc="compiling",
                           disable=not progress, file=sys.stderr, dynamic_ncols=True,
                           bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} < {remaining}")
            if line.startswith("done "):
                s = roots[int(line.split()[1])]["seconds"]
                done += s
                if bar is not None:
                    bar.update(min(s, bar.total - bar.n))
    except KeyboardInterrupt:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
        if bar is not None:
            bar.close()
        raise Interrupted("interrupted while compiling the kernels") from None
    if bar is not None:
        bar.update(bar.total - bar.n)
        bar.close()
    took = time.perf_counter() - t0
    if took > after:
        print(f"dffbatch: kernels compiled in {took:.0f} s ({len(procs)} processes)", file=out, flush=True)
    return took


class Background:
    """The aligned path compiled while the first jobs run (:func:`compile_kernels` of the
    ``aligned`` group in one helper at low priority, sharing Numba's cache).

    Most first runs align nothing (``align: auto`` finds no motion: the bundled stacks,
    tripod shots), so the run does not wait for it: the unaligned kernels are compiled
    before the jobs, these beside them. A job that aligns before it is done compiles
    what it needs itself, as any job did before the warm-up existed. :meth:`stop` at the
    end of the run ends it where it is still running.

    ``twins``: the jobs call the kernels' serial twins (the parallel ones are not cached
    yet); after the aligned twins (``aligned``), the helper compiles the parallel kernels
    of the run's path, which the runs after it call once all are cached
    (:func:`parallel_cached`). Numba saves each kernel as it is done, so a helper ended
    by the run's end leaves the next run less to do.
    """

    def __init__(self, first_file, multipage, params_list, threads=1, twins=False, aligned=True):
        roots = listed()
        idx = [i for i, r in enumerate(roots) if r.get("group", "plain") == "aligned"]
        groups = ["aligned"] if aligned else []
        code = ("import json, sys; from dffbatch.batch.warmup import _background; "
                "a = json.loads(sys.argv[1]); _background(*a)")
        arg = json.dumps([idx, first_file, multipage, params_list, groups, threads, twins], default=str)
        self.proc = subprocess.Popen([sys.executable, "-c", code, arg], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

    def stop(self):
        """End the helper now if it is still compiling (SIGKILL). Numba writes each cache
        file under a temporary name and renames it into place once whole, so a kill
        leaves no file half-written: at worst, with the odds of a few milliseconds in
        seconds, an orphan temporary file that nothing reads. Waiting for the kernel in
        hand instead would add up to 3.4 s (``settle_warped``) to a run that needed none."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
