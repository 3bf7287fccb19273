"""Backend ``dask``: the same jobs on a Dask cluster (``distributed``), nothing home-made.

``execution: {backend: dask, address: tcp://host:8786}`` connects to a running
scheduler; without an address a :class:`distributed.LocalCluster` sized to this machine
is started (``workers`` processes, one thread each). Every job is one
``client.submit(run_job, job)``: workers read inputs and write outputs to paths they
can see (a shared filesystem), the client gathers the records into the manifest,
summary and report exactly as the local backend does, so outputs are byte-identical
whichever backend ran them and a run can be resumed on either.

Numba threads per task follow the cluster's layout: on each host, the cores are
divided by the number of tasks its workers run at once (the sum of their threads), so
workers x threads never oversubscribe a host.

A job whose worker dies is rescheduled by the scheduler up to ``retries`` more times
(``distributed.scheduler.allowed-failures`` for a LocalCluster started here; a remote
scheduler uses its own setting), then recorded as failed with the reason.
"""
from __future__ import annotations

import os

from .jobs import failed_record, run_job

__all__ = ["DaskBackend", "run_job_on_worker"]


def run_job_on_worker(job, threads_by_worker):
    """Task body: set this worker's Numba threads, then :func:`run_job`."""
    import numba
    from distributed import get_worker

    n = threads_by_worker.get(get_worker().address, 1)
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
    return run_job(job)


def _suspicious(dask_scheduler=None, key=None):
    ts = dask_scheduler.tasks.get(key)
    return ts.suspicious if ts is not None else 0


class DaskBackend:
    name = "dask"

    def __init__(self, address, workers, threads, retries=2):
        import dask
        from distributed import Client, LocalCluster

        self.retries = retries
        self._cluster = None
        if address:
            self.client = Client(address, timeout="20s")
        else:
            # glibc's aggressive trimming (Dask's default MALLOC_TRIM_THRESHOLD_) turns every
            # frame-sized allocation into fresh, page-faulting memory: 18% slower jobs here.
            environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
            environ.pop("MALLOC_TRIM_THRESHOLD_", None)
            with dask.config.set({"distributed.scheduler.allowed-failures": retries,
                                  "distributed.nanny.pre-spawn-environ": environ}):
                self._cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                             dashboard_address=":0", silence_logs=40)
            self.client = Client(self._cluster)
        info = self.client.scheduler_info()["workers"]
        cores = self.client.run(os.cpu_count)
        per_host = {}
        for addr, w in info.items():
            per_host[w["host"]] = per_host.get(w["host"], 0) + w["nthreads"]
        self.threads_by_worker = {addr: max(1, (cores.get(addr) or 1) // per_host[w["host"]])
                                  for addr, w in info.items()}
        self.workers = len(info)
        self.threads = min(self.threads_by_worker.values()) if info else 1
        self.dashboard = self.client.dashboard_link

    def run(self, jobs):
        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        futures = {}
        for j in jobs:
            fut = self.client.submit(run_job_on_worker, j, self.threads_by_worker, key=f"dffbatch-{j['key']}-{j['id']}",
                                     pure=False)
            futures[fut] = j
        for fut in as_completed(list(futures)):
            job = futures.pop(fut)
            try:
                attempts = 1 + self.client.run_on_scheduler(_suspicious, key=fut.key)
            except Exception:  # noqa: BLE001 - bookkeeping only
                attempts = None
            try:
                rec = fut.result()
            except KilledWorker as exc:
                rec = failed_record(job, f"worker died running the job ({attempts or '?'} attempts): {exc}")
            except Exception as exc:  # noqa: BLE001
                rec = failed_record(job, f"worker error: {type(exc).__name__}: {exc}")
            rec["attempts"] = attempts
            rec["backend"] = "dask"
            fut.release()
            yield rec

    def close(self, cancel=False):
        client, self.client = getattr(self, "client", None), None
        if client is not None:
            client.close()
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None
