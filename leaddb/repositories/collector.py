"""Holding back Python's cyclic garbage collector while a large ``create_many`` builds its rows.

A 10,000-row batch allocates some 150,000 container objects that live to the end of the call
(the values, the audit images, the models it returns). Every 70,000 or so of them set off a full
collection, which walks every tracked object of the process (a service's modules and caches
included) and, here, finds nothing to free: leaddb's rows and models form no reference cycles.
Measured in the benchmark's process, one such collection took 110-250 ms of a 10,000-row
``create_many`` that otherwise takes 450-600 ms. With the collector held back while the batch is
built, that walk does not happen; reference counting still frees everything at once.

The pause ends once the last chunk is sent, while PostgreSQL inserts it: the first collection
after it (the young generation, which now holds the batch's objects: some 30 ms for 10,000 rows)
then runs while Python would be waiting anyway. Ended a chunk earlier, it shared that wait with
the last chunk's building and overran it, delaying the last COPY. Pauses are counted, so
batches side by side (other tasks, other threads) switch the collector back on only when the
last of them ends, and never if it was off when the first began.
The collector belongs to the whole process, and a library changes nothing process-wide unless
asked: pausing is off by default, and ``LEADDB_BULK_PAUSES_GC=true`` turns it on.
"""

from __future__ import annotations

import gc
import threading
from types import TracebackType

_lock = threading.Lock()
_holders = 0
_restore = False


class CollectorPause:
    """Automatic garbage collection off from ``__enter__`` until ``end()`` or ``__exit__``."""

    __slots__ = ("_enabled", "_holding")

    def __init__(self, enabled: bool = True) -> None:
        self._enabled = enabled
        self._holding = False

    def __enter__(self) -> CollectorPause:
        global _holders, _restore
        if self._enabled:
            with _lock:
                if _holders == 0:
                    _restore = gc.isenabled()
                    gc.disable()
                _holders += 1
                self._holding = True
        return self

    def end(self) -> None:
        """Let the collector run again (if no other pause holds it); idempotent."""
        global _holders
        if not self._holding:
            return
        with _lock:
            self._holding = False
            _holders -= 1
            if _holders == 0 and _restore:
                gc.enable()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.end()
