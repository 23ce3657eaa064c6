"""Timing: contenders run round-robin in blocks, so drift on a noisy machine hits all alike.

Each contender is a callable that performs one operation for iteration ``i``; every call is
timed on its own with ``perf_counter_ns``. After a warm-up, the iterations are cut into blocks,
and each block runs every contender in turn (the order rotating from block to block).

Every block starts with the garbage collector's work done (outside the clock), and the objects
alive before timing (seeded ids, inputs) are frozen out of its scans: otherwise a contender that
allocates little (raw asyncpg) leaves the collection of a heavy contender's garbage (an ORM
session's) to whichever contender allocates next, and pays for none of it itself.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

Operation = Callable[[int], Awaitable[object]]
"""One operation for iteration ``i`` (inputs are chosen by ``i``, prepared before timing)."""


@dataclass
class Contender:
    """A named way of doing one operation."""

    name: str
    run: Operation
    note: str = ""
    kind: str = "peer"
    """``floor`` (raw asyncpg), ``reference``, ``peer`` or ``leaddb``."""


@dataclass
class Samples:
    """Microseconds per call of one contender."""

    name: str
    kind: str
    note: str
    values_us: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values_us) if self.values_us else float("nan")

    @property
    def p95(self) -> float:
        return percentile(self.values_us, 95.0)

    @property
    def count(self) -> int:
        return len(self.values_us)


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (nearest rank on sorted values)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100.0 * len(ordered)) - 1))
    return ordered[rank]


async def interleaved(
    contenders: Sequence[Contender],
    *,
    iterations: int,
    warmup: int,
    block: int,
) -> list[Samples]:
    """Warm every contender up, then time ``iterations`` calls each, in rotating blocks."""
    results = [Samples(c.name, c.kind, c.note) for c in contenders]
    for contender in contenders:
        for i in range(warmup):
            await contender.run(iterations + i)
    gc.collect()
    gc.freeze()
    block = max(1, min(block, iterations))
    start = 0
    rotation = 0
    clock = time.perf_counter_ns
    while start < iterations:
        stop = min(iterations, start + block)
        order = list(range(len(contenders)))
        order = order[rotation:] + order[:rotation]
        rotation = (rotation + 1) % max(1, len(contenders))
        for index in order:
            run = contenders[index].run
            values = results[index].values_us
            gc.collect()
            for i in range(start, stop):
                began = clock()
                await run(i)
                values.append((clock() - began) / 1000.0)
        start = stop
    gc.unfreeze()
    return results
