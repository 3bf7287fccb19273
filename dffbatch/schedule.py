"""Fan jobs out: the backend seam shared by the local process pool and Dask.

A backend is an object with ``run(jobs) -> iterator of records`` (one record per
job, in completion order) and ``close()``. Both backends execute
:func:`dffbatch.jobs.run_job`, so a job's outputs are identical whichever ran it.
"""
from __future__ import annotations

import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
import multiprocessing as mp

from .jobs import run_job

__all__ = ["plan_workers", "LocalBackend", "make_backend"]


def plan_workers(n_jobs: int, workers="auto", threads="auto", cores=None):
    """Workers and Numba threads per worker with workers x threads <= cores when auto."""
    cores = cores or os.cpu_count() or 1
    if workers == "auto":
        workers = max(1, min(n_jobs, cores if threads == "auto" else max(1, cores // threads)))
    if threads == "auto":
        threads = max(1, cores // workers)
    return int(workers), int(threads)


def _init_worker(threads):
    os.environ["NUMBA_NUM_THREADS"] = str(threads)
    import numba
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


def _failed(job, error):
    return {"id": job["id"], "key": job["key"], "status": "failed", "error": error,
            "params": job["params"], "inputs": {}, "outputs": {}, "timings": {}, "metrics": {}, "notes": []}


class LocalBackend:
    """Process pool (``spawn``); a job whose worker died is retried ``retries`` times."""

    name = "local"

    def __init__(self, workers, threads, retries=1):
        self.workers, self.threads, self.retries = workers, threads, retries
        self._pool = None

    def _new_pool(self):
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=mp.get_context("spawn"),
                                   initializer=_init_worker, initargs=(self.threads,))

    def run(self, jobs):
        pending = list(jobs)
        attempts = {j["id"]: 0 for j in pending}
        while pending:
            self._pool = self._new_pool()
            futures = {}
            queue = list(pending)
            pending = []
            broken = False

            def top_up():
                while queue and len(futures) < 2 * self.workers:
                    j = queue.pop(0)
                    attempts[j["id"]] += 1
                    futures[self._pool.submit(run_job, j)] = j

            try:
                top_up()
            except BrokenProcessPool:
                broken = True
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for fut in done:
                    job = futures.pop(fut)
                    try:
                        rec = fut.result()
                        rec["attempts"] = attempts[job["id"]]
                        yield rec
                    except BrokenProcessPool:
                        broken = True
                        if attempts[job["id"]] <= self.retries:
                            pending.append(job)
                        else:
                            yield _failed(job, "worker process died (killed or out of memory), "
                                               f"after {attempts[job['id']]} attempts")
                    except Exception as exc:  # noqa: BLE001
                        yield _failed(job, f"worker error: {type(exc).__name__}: {exc}")
                if not broken:
                    try:
                        top_up()
                    except BrokenProcessPool:
                        broken = True
            if broken:  # jobs never started are not attempts; start a fresh pool for the rest
                pending = pending + queue
                self._pool.shutdown(wait=True, cancel_futures=True)
            else:
                self._pool.shutdown(wait=True)
            self._pool = None

    def close(self, cancel=False):
        if self._pool is not None:
            self._pool.shutdown(wait=not cancel, cancel_futures=True)
            self._pool = None


def make_backend(execution: dict, n_jobs: int):
    workers, threads = plan_workers(n_jobs, execution["workers"], execution["threads_per_worker"])
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
