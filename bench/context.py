"""What every section of the benchmark shares: sizes, connections, seeded data, results."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import asyncpg

from bench.peers import Peer
from bench.seed import Seeded
from bench.servers import Servers
from bench.timing import Contender, Samples, interleaved

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from leaddb import LeadDB

logger = logging.getLogger("bench")

RAW = "raw asyncpg"
"""Name of the floor contender of most operations."""


@dataclass(frozen=True)
class Sizes:
    """How much work a run does."""

    leads: int
    iterations: int
    bulk_rows: int
    bulk_repeats: int
    deep_depth: int = 50_000
    seed_leads: int = 1_000_000
    """Leads the ``leaddb seed`` section writes (bench.later)."""
    write_rounds: int = 8
    """Creates and updates run in this many rounds, each on new connections (see
    ``Bench.new_connections``); their samples are pooled."""

    @property
    def warmup(self) -> int:
        return max(10, min(200, self.iterations // 20))

    def inputs(self, count: int) -> int:
        """How many distinct inputs an operation timed ``count`` times draws on (probe included)."""
        return count + self.warmup + 1

    @property
    def list_iterations(self) -> int:
        """A first page costs a few milliseconds (a hundred under row-level security)."""
        return max(20, self.iterations // 10)

    @property
    def write_iterations(self) -> int:
        """Creates and updates commit (and flush the WAL) each time: a quarter as many."""
        return max(20, self.iterations // 4)

    @property
    def write_round_iterations(self) -> int:
        """The timed calls of one round of creates or updates."""
        return max(10, self.write_iterations // self.write_rounds)

    @property
    def deep_iterations(self) -> int:
        """Deep OFFSET pages take tens of milliseconds each: fewer of them."""
        return max(10, self.iterations // 40)

    @property
    def block(self) -> int:
        return max(5, min(50, self.iterations // 20))


@dataclass
class OperationResult:
    """One operation: every contender's samples (µs per call), and what was left out."""

    key: str
    title: str
    samples: list[Samples]
    floor: str | None = RAW
    notes: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    rows: int = 0
    """Rows per call for bulk operations (then rows/s is reported as well)."""
    round_medians: list[dict[str, float]] = field(default_factory=list)
    """Each round's median per contender, when the operation ran in rounds."""

    def rounds_note(self) -> str | None:
        """The leaddb-to-floor ratio of each round, when there was more than one."""
        if len(self.round_medians) < 2 or self.floor is None:
            return None
        # The first contender of leaddb's own: "leaddb", or "leaddb, row-level security on".
        name = next((s.name for s in self.samples if s.kind == "leaddb"), None)
        if name is None:
            return None
        ratios = []
        for medians in self.round_medians:
            floor, mine = medians.get(self.floor), medians.get(name)
            if floor and mine:
                ratios.append(f"{mine / floor:.2f}x")
        if not ratios:
            return None
        return f"{name} / {self.floor}, round by round: {', '.join(ratios)}"

    def by_name(self, name: str) -> Samples | None:
        for samples in self.samples:
            if samples.name == name:
                return samples
        return None

    def median(self, name: str) -> float:
        found = self.by_name(name)
        return found.median if found is not None else float("nan")

    def ratio(self, name: str) -> float:
        if self.floor is None:
            return float("nan")
        floor = self.median(self.floor)
        return self.median(name) / floor if floor else float("nan")


@dataclass
class Bench:
    """The run's state, handed to each section."""

    sizes: Sizes
    servers: Servers
    db: LeadDB
    """cache off, row-level security on (the defaults but the cache)."""
    db_cached: LeadDB
    db_without_rls: LeadDB
    raw_pool: asyncpg.Pool
    """asyncpg straight to the bench database, as the URL's (superuser) role."""
    engine: AsyncEngine
    peers: dict[str, Peer]
    seeded: Seeded
    dsn: str
    results: list[OperationResult] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)
    """Checks and figures the report states in words (e.g. the cache opened no transaction)."""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def big(self) -> uuid.UUID:
        return self.seeded.big

    async def new_connections(self) -> None:
        """Every contender's next operation on a connection opened for it.

        A backend's speed depends on where the OS happens to schedule it next to this process:
        on this 2-core VM the same update ran 20% slower on one of four connections opened
        alike, for a whole run, and a bare BEGIN took 68 to 122 µs by connection (medians of
        2,000 on each of eight). A contender kept on one connection for a whole section
        carries that luck into its median; rounds on new connections spread it over many.
        """
        for db in (self.db, self.db_cached, self.db_without_rls):
            await db._pool.expire_connections()
        await self.raw_pool.expire_connections()
        await self.engine.dispose()

    async def measure(
        self,
        key: str,
        title: str,
        contenders: list[Contender],
        *,
        iterations: int | None = None,
        floor: str | None = RAW,
        notes: list[str] | None = None,
        block: int | None = None,
    ) -> OperationResult:
        """Probe each contender once (dropping and explaining any that fail), then time them."""
        count = iterations if iterations is not None else self.sizes.iterations
        skipped: dict[str, str] = {}
        working: list[Contender] = []
        for contender in contenders:
            try:
                await contender.run(count + self.sizes.warmup)
            except Exception as error:
                logger.warning("%s: %s failed: %r", title, contender.name, error)
                skipped[contender.name] = f"{type(error).__name__}: {str(error)[:300]}"
                continue
            working.append(contender)
        began = time.perf_counter()
        samples = await interleaved(
            working,
            iterations=count,
            warmup=min(self.sizes.warmup, max(5, count // 10)),
            block=block or min(self.sizes.block, max(2, count // 10)),
        )
        self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - began
        medians = {found.name: found.median for found in samples}
        earlier = next((found for found in self.results if found.key == key), None)
        if earlier is not None:
            earlier.round_medians.append(medians)
            # Another round of the same operation: its samples join the earlier rounds'.
            for round_samples in samples:
                pooled = earlier.by_name(round_samples.name)
                if pooled is None:
                    earlier.samples.append(round_samples)
                else:
                    pooled.values_us.extend(round_samples.values_us)
            earlier.skipped.update(skipped)
            return earlier
        result = OperationResult(key, title, samples, floor, list(notes or []), skipped)
        result.round_medians.append(medians)
        self.results.append(result)
        return result
