"""The issues' targets, computed from the figures of the same run (PASS / MISS, never asserted)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.context import RAW, OperationResult
from bench.ops_bulk import COPY_NAME
from bench.ops_cache import (
    CACHED_GET,
    CACHED_MANY,
    RAW_GET_DECODE,
    RAW_MGET,
    RLS_OFF,
    RLS_ON,
    UNCACHED_GET,
)
from bench.ops_orm import PLAIN, SESSION
from bench.ops_reads import DEPTH_DEEP, DEPTH_FIRST, LEADDB_IN_UOW, LEADDB_WITHOUT_RLS
from bench.ops_telemetry import (
    CACHED_FLOOR,
    CACHED_NO_EXTRA,
    CACHED_OFF,
    CACHED_ON,
    FLOOR,
    NO_EXTRA,
    OFF,
    ON,
)
from bench.ops_writes import LEADDB_WITHOUT_RLS as UPDATE_WITHOUT_RLS
from bench.raw_statements import RAW_STATEMENT_OFF, RAW_STATEMENT_ON

LEADDB = "leaddb"
LEADDB_BULK = "leaddb create_many"


@dataclass(frozen=True)
class Target:
    """One goal of an issue and how this run measured against it."""

    issue: int
    goal: str
    measured: float
    limit: float
    higher_is_better: bool = False
    unit: str = "x"
    detail: str = ""

    @property
    def passed(self) -> bool | None:
        if math.isnan(self.measured):
            return None
        if self.higher_is_better:
            return self.measured >= self.limit
        return self.measured <= self.limit

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "MISS", None: "n/a"}[self.passed]

    @property
    def shown(self) -> str:
        return "n/a" if math.isnan(self.measured) else f"{self.measured:.2f}{self.unit}"

    @property
    def bound(self) -> str:
        return f"{'≥' if self.higher_is_better else '≤'} {self.limit:g}{self.unit}"


def _ratio(result: OperationResult | None, name: str, floor: str) -> float:
    if result is None:
        return float("nan")
    low = result.median(floor)
    return result.median(name) / low if low else float("nan")


def _fastest_peer(result: OperationResult | None) -> tuple[str, float]:
    if result is None:
        return "", float("nan")
    peers = [s for s in result.samples if s.kind == "peer" and s.values_us]
    if not peers:
        return "", float("nan")
    best = min(peers, key=lambda s: s.median)
    return best.name, best.median


def _postgres_alone(result: OperationResult | None) -> str:
    """The same on/off ratio of leaddb's statements sent by raw asyncpg (bench.raw_statements):
    what PostgreSQL's policies cost with no leaddb Python in the way."""
    ratio = _ratio(result, RAW_STATEMENT_ON, RAW_STATEMENT_OFF)
    if math.isnan(ratio):
        return ""
    return f"the same statements and transactions sent by raw asyncpg, on / off: {ratio:.2f}x"


def targets(results: dict[str, OperationResult]) -> list[Target]:
    """Every target of issues 5, 6 and 11 that this run's figures decide."""
    get = results.get("get")
    first = results.get("list_first")
    deep = results.get("list_deep")
    bulk = results.get("create_many")
    update_without_rls = _ratio(results.get("update"), UPDATE_WITHOUT_RLS, RAW)
    update_sql_alone = _ratio(results.get("update"), RAW_STATEMENT_ON, RAW)
    found: list[Target] = [
        Target(
            5,
            "get by id: leaddb (in one unit of work) / raw asyncpg",
            _ratio(get, LEADDB_IN_UOW, RAW),
            2.0,
        ),
        Target(
            5,
            "update one (version check) / raw asyncpg",
            _ratio(results.get("update"), LEADDB, RAW),
            1.5,
            detail=(
                "with row-level security off (the statement and its audit row without the "
                f"signed context's policies): {update_without_rls:.2f}x; leaddb's statements "
                f"and transaction sent by raw asyncpg (no leaddb Python): {update_sql_alone:.2f}x"
            ),
        ),
        Target(5, "create one / raw asyncpg", _ratio(results.get("create"), LEADDB, RAW), 1.5),
        Target(
            5,
            "create_many rows/s / COPY rows/s",
            _ratio(bulk, COPY_NAME, LEADDB_BULK),
            0.5,
            higher_is_better=True,
        ),
    ]
    deep_over_first = _ratio(results.get("list_depth"), DEPTH_DEEP, DEPTH_FIRST)
    detail = "timed together"
    if first is not None and deep is not None:
        apart = deep.median(LEADDB) / first.median(LEADDB)
        without = deep.median(LEADDB_WITHOUT_RLS) / first.median(LEADDB_WITHOUT_RLS)
        detail += f"; from the two tables below (OFFSET neighbours between calls): {apart:.2f}x"
        if not math.isnan(without):
            detail += f", with row-level security off: {without:.2f}x"
    found.append(
        Target(5, "leaddb deep page / leaddb first page", deep_over_first, 1.3, detail=detail)
    )
    for key, name in (
        ("get", LEADDB_IN_UOW),
        ("list_first", LEADDB),
        ("list_deep", LEADDB),
        ("create", LEADDB),
        ("update", LEADDB),
        ("create_many", LEADDB_BULK),
    ):
        result = results.get(key)
        peer, peer_median = _fastest_peer(result)
        mine = result.median(name) if result is not None else float("nan")
        found.append(
            Target(
                5,
                f"{result.title if result else key}: leaddb / fastest peer",
                mine / peer_median if peer_median else float("nan"),
                1.0,
                detail=f"fastest peer: {peer}" if peer else "no peer measured",
            )
        )
    cache_get = results.get("cache_get")
    uncached_over_cached = float("nan")
    if cache_get is not None:
        uncached_over_cached = cache_get.median(UNCACHED_GET) / cache_get.median(CACHED_GET)
    found += [
        Target(
            6,
            "cached get (own uow) / raw GET + decode",
            _ratio(cache_get, CACHED_GET, RAW_GET_DECODE),
            1.5,
        ),
        Target(
            6,
            "uncached get (own uow) / cached get (own uow)",
            uncached_over_cached,
            3.0,
            higher_is_better=True,
        ),
        Target(
            6,
            "get_many(50) cached (own uow) / raw MGET",
            _ratio(results.get("cache_get_many"), CACHED_MANY, RAW_MGET),
            2.0,
        ),
        Target(
            11, "get (own uow): RLS on / off", _ratio(results.get("rls_get"), RLS_ON, RLS_OFF), 1.15
        ),
        Target(
            11,
            "update (own uow): RLS on / off",
            _ratio(results.get("rls_update"), RLS_ON, RLS_OFF),
            1.15,
        ),
        # The signed tenant context: its policies verify a MAC once per statement.
        Target(
            20,
            "get (own uow): signed-context RLS on / off",
            _ratio(results.get("rls_get"), RLS_ON, RLS_OFF),
            1.10,
            detail=_postgres_alone(results.get("rls_get")),
        ),
        Target(
            20,
            "update (own uow): signed-context RLS on / off",
            _ratio(results.get("rls_update"), RLS_ON, RLS_OFF),
            1.10,
            detail=_postgres_alone(results.get("rls_update")),
        ),
        Target(
            21,
            "uow.session select of 50 / plain SQLModel + SQLAlchemy",
            _ratio(results.get("orm_select"), SESSION, PLAIN),
            1.15,
        ),
    ]
    for key, what, never, off, on, sdk_floor in (
        ("telemetry_get", "get (own uow)", NO_EXTRA, OFF, ON, FLOOR),
        (
            "telemetry_cached_get",
            "cached get (own uow)",
            CACHED_NO_EXTRA,
            CACHED_OFF,
            CACHED_ON,
            CACHED_FLOOR,
        ),
    ):
        result = results.get(key)
        floor_ratio = _ratio(result, sdk_floor, never)
        found += [
            Target(
                24,
                f"{what}: telemetry off (extra, no provider) / never asked for",
                _ratio(result, off, never),
                1.02,
            ),
            Target(
                24,
                f"{what}: telemetry on (SDK, in-memory) / never asked for",
                _ratio(result, on, never),
                1.3,
                detail=(
                    f"the SDK alone, recording the same spans and metrics with no leaddb "
                    f"code: {floor_ratio:.2f}x"
                ),
            ),
        ]
    return found
