"""What the machine has: memory, from /proc where Linux keeps it.

A leaf module: anything in the package may import it (the core checks SGM's focus
volume against it, the scheduler sizes workers with it, a job reports its peak).
"""
from __future__ import annotations

import os

__all__ = ["proc_bytes", "available_memory"]


def proc_bytes(path: str, key: str):
    """A ``key:  N kB`` line of a Linux /proc file, in bytes; None where it is absent."""
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def available_memory() -> int:
    """Bytes of memory available to new processes (MemAvailable), or 0 if unknown."""
    avail = proc_bytes("/proc/meminfo", "MemAvailable")
    if avail is not None:
        return avail
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0
