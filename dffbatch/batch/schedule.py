"""Fan jobs out: the backend seam shared by the local process pool and Dask.

A backend is an object with ``run(jobs) -> iterator of records`` (one record per
job, in completion order) and ``close()``. Both backends execute
:func:`dffbatch.batch.jobs.run_job`, so a job's outputs are identical whichever ran it.
"""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
import multiprocessing as mp

from ..sysinfo import available_memory, proc_bytes  # noqa: F401 (their old home)
from .jobs import failed_record, run_job

__all__ = ["plan_workers", "LocalBackend", "make_backend"]


def plan_workers(n_jobs: int, workers="auto", threads="auto", cores=None, job_memory=0, memory=None):
    """Workers and Numba threads per worker.

    ``auto`` keeps workers x threads <= cores, and workers x ``job_memory`` within 80%
    of the available memory (``memory``, default: read from the system).
    """
    cores = cores or os.cpu_count() or 1
    if workers == "auto":
        workers = max(1, min(n_jobs, cores if threads == "auto" else max(1, cores // threads)))
        memory = available_memory() if memory is None else memory
        if job_memory and memory:
            workers = max(1, min(workers, int(0.8 * memory // job_memory)))
    if threads == "auto":
        threads = max(1, cores // workers)
    return int(workers), int(threads)


def quick_exit() -> None:
    """Make this process's exit cheap: at exit, freeze the objects alive then.

    Numba's imported object graph is large, and the interpreter's last garbage
    collection walks all of it: 0.2 s at every exit of a process that ran a kernel,
    paid by the parent (its own exit) and again while it waits for each worker to
    leave. Frozen objects are skipped by that walk; nothing else changes.
    """
    import atexit
    import gc
    atexit.unregister(gc.freeze)  # at most once, however often it is asked
    atexit.register(gc.freeze)


def _init_worker(threads):
    quick_exit()
    # only set_num_threads: changing NUMBA_NUM_THREADS after Numba is imported makes a
    # later config reload (on a first compile) fail with "Cannot set NUMBA_NUM_THREADS"
    import numba
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


class LocalBackend:
    """Process pool (``spawn``).

    When a worker process dies (killed, out of memory), the pool breaks and every job
    in flight with it. Those jobs are then re-run one at a time in a pool of their own,
    so that the job that kills its worker is told apart from its neighbours: a job in
    flight at a death is retried alone up to ``retries`` times, and recorded as failed
    when its worker dies on each of them; its neighbours simply finish alone. Then the
    run goes on in parallel.
    """

    name = "local"

    def __init__(self, workers, threads, retries=1):
        self.workers, self.threads, self.retries = workers, threads, retries
        self._pool = None

    def _new_pool(self, workers):
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                         initializer=_init_worker, initargs=(self.threads,))
        return self._pool

    def _shutdown(self, cancel=False):
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=cancel)
            self._pool = None

    def run(self, jobs):
        queue = deque(jobs)  # popped from the left: O(1) per job at 100 000 jobs
        attempts = {j["id"]: 0 for j in queue}
        while queue:
            suspects = []
            pool = self._new_pool(self.workers)
            futures = {}
            try:
                while queue or futures:
                    while queue and len(futures) < 2 * self.workers:
                        j = queue.popleft()
                        try:
                            fut = pool.submit(run_job, j)
                        except BrokenProcessPool:  # a worker died since the last wait: j never ran
                            queue.appendleft(j)
                            raise
                        attempts[j["id"]] += 1
                        futures[fut] = j
                    done, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for fut in done:
                        job = futures.pop(fut)
                        rec = self._result(fut, job, attempts)
                        if rec is None:
                            suspects.append(job)
                        else:
                            yield rec
            except BrokenProcessPool:  # raised by submit on a broken pool
                pass
            suspects += list(futures.values())
            self._shutdown(cancel=True)
            for job in suspects:  # alone, one at a time
                yield from self._run_alone(job, attempts)

    def _result(self, fut, job, attempts):
        try:
            rec = fut.result()
        except BrokenProcessPool:
            return None
        except Exception as exc:  # noqa: BLE001
            rec = failed_record(job, f"worker error: {type(exc).__name__}: {exc}")
        rec["attempts"] = attempts[job["id"]]
        return rec

    def _run_alone(self, job, attempts):
        deaths = 1  # it was in flight when a worker died: that counts as its first failure
        while True:
            pool = self._new_pool(1)
            attempts[job["id"]] += 1
            try:
                rec = self._result(pool.submit(run_job, job), job, attempts)
            except BrokenProcessPool:
                rec = None
            self._shutdown(cancel=True)
            if rec is not None:
                yield rec
                return
            deaths += 1
            if deaths > self.retries:
                rec = failed_record(job, "worker process died (killed or out of memory) while running this job "
                                   f"alone, after {attempts[job['id']]} attempts")
                rec["attempts"] = attempts[job["id"]]
                yield rec
                return

    def close(self, cancel=False):
        if self._pool is not None:
            self._pool.shutdown(wait=not cancel, cancel_futures=True)
            self._pool = None


def make_backend(execution: dict, n_jobs: int, job_memory: int = 0):
    workers, threads = plan_workers(n_jobs, execution["workers"], execution["threads_per_worker"],
                                    job_memory=job_memory)
    if execution["backend"] == "dask":
        try:
            from .distributed import DaskBackend
        except ImportError as exc:
            raise RuntimeError("backend 'dask' needs the distributed extra: pip install 'dffbatch[distributed]' "
                               f"({exc})") from None
        try:
            return DaskBackend(execution.get("address"), workers, 1,
                               2 if execution["retries"] is None else execution["retries"])
        except OSError as exc:
            raise RuntimeError(f"cannot reach the Dask scheduler at {execution.get('address')}: {exc}") from None
    return LocalBackend(workers, threads, 1 if execution["retries"] is None else execution["retries"])
