"""Run state: one SQLite database per run folder, a row per finished job.

The runner records each job as it ends, in its own transaction: O(1) per job whatever
the size of the run, and crash-safe (SQLite's write-ahead log: a parent killed with
SIGKILL loses at most the job in flight, never a recorded one, and the file stays
consistent). Resume, the progress counts, the failure list, ``manifest.json`` and
``summary.csv`` all read from it; the parent never holds every record in memory.

File ``<run>/jobs.sqlite``, table ``jobs``:

========  ===========================================================================
column    meaning
========  ===========================================================================
id        the job id ``<sweep>/<stack>`` (primary key: a job is recorded once; a rerun
          replaces its row)
key       the job key (inputs, parameters and outputs hashed; resume compares it)
status    ``ok`` or ``failed``
seq       order of recording (1, 2, ...)
record    the job's manifest record, JSON (the same object ``manifest.json`` lists)
========  ===========================================================================

A run folder made by an earlier version (only ``manifest.json``) is imported on first
use, so it resumes as before.
"""
from __future__ import annotations

import json
import os
import sqlite3
from typing import Iterable, Iterator, Optional

__all__ = ["RunStore", "STORE_NAME"]

STORE_NAME = "jobs.sqlite"


class RunStore:
    """The job records of one run folder."""

    def __init__(self, run_dir: str):
        self.path = os.path.join(run_dir, STORE_NAME)
        fresh = not os.path.exists(self.path)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL: safe against process crashes
        self.db.execute("CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, key TEXT, status TEXT, "
                        "seq INTEGER, record TEXT NOT NULL)")
        self._seq = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM jobs").fetchone()[0]
        if fresh:
            self._import_manifest(os.path.join(run_dir, "manifest.json"))

    def _import_manifest(self, path):
        try:
            with open(path, encoding="utf-8") as fh:
                jobs = json.load(fh).get("jobs", {})
        except (OSError, ValueError, AttributeError):
            return
        if isinstance(jobs, dict) and jobs:
            self.put_many(r for r in jobs.values() if isinstance(r, dict) and "id" in r)

    def put(self, rec: dict) -> None:
        """Record a finished job (replacing an earlier record of the same id)."""
        self._seq += 1
        self.db.execute("INSERT OR REPLACE INTO jobs (id, key, status, seq, record) VALUES (?, ?, ?, ?, ?)",
                        (rec["id"], rec.get("key"), rec.get("status"), self._seq, json.dumps(rec, default=str)))

    def put_many(self, recs: Iterable[dict]) -> None:
        self.db.execute("BEGIN")
        try:
            for r in recs:
                self.put(r)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def get(self, job_id: str) -> Optional[dict]:
        row = self.db.execute("SELECT record FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def keys(self) -> dict:
        """``{id: (key, status)}`` of every recorded job (small: no records)."""
        return {i: (k, s) for i, k, s in self.db.execute("SELECT id, key, status FROM jobs")}

    def records(self, ids: Optional[Iterable[str]] = None) -> Iterator[dict]:
        """Records in recording order, or those of ``ids`` in that order (missing ones skipped)."""
        if ids is None:
            for (text,) in self.db.execute("SELECT record FROM jobs ORDER BY seq"):
                yield json.loads(text)
            return
        for i in ids:
            r = self.get(i)
            if r is not None:
                yield r

    def failures(self, ids: Optional[Iterable[str]] = None) -> Iterator[dict]:
        """Failed records (of ``ids`` only, in that order, when given)."""
        if ids is None:
            for (text,) in self.db.execute("SELECT record FROM jobs WHERE status != 'ok' ORDER BY seq"):
                yield json.loads(text)
            return
        wanted = {i for (i,) in self.db.execute("SELECT id FROM jobs WHERE status != 'ok'")}
        for i in ids:
            if i in wanted:
                yield self.get(i)

    def tally(self, ids: Iterable[str]) -> dict:
        """``{status: n}`` over the recorded jobs among ``ids`` (one pass over the table,
        no record and no per-job tuple held)."""
        wanted = set(ids)
        out: dict = {}
        for i, s in self.db.execute("SELECT id, status FROM jobs"):
            if i in wanted:
                out[s] = out.get(s, 0) + 1
        return out

    def count(self, status: Optional[str] = None) -> int:
        if status is None:
            return self.db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
        return self.db.execute("SELECT COUNT(*) FROM jobs WHERE status = ?", (status,)).fetchone()[0]

    def integrity(self) -> str:
        """SQLite's own check of the file: ``ok`` when sound."""
        return self.db.execute("PRAGMA integrity_check").fetchone()[0]

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
