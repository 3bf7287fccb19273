"""Stage *read*: decode frames from files, one at a time, ahead of the kernels."""
from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator

__all__ = ["prefetch"]

_END = object()


class _Failure:
    def __init__(self, exc):
        self.exc = exc


def prefetch(items: Iterable, ahead: int = 1) -> Iterator:
    """Iterate ``items`` in a background thread, keeping up to ``ahead`` items ready.

    Decoding (which releases the GIL in the image libraries) then overlaps the Numba
    kernels (which release it too). Exceptions raised while producing an item are
    re-raised in the consumer at that item's place in the sequence. Abandoning the
    iterator stops the thread at its next item.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, ahead))
    stop = threading.Event()

    def work():
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put(_Failure(exc))

    thread = threading.Thread(target=work, name="dffbatch-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
