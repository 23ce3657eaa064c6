"""create_many of 10,000 validated leads against asyncpg's COPY, executemany and the peers.

Every contender's inputs are built before the clock starts; each run is one transaction (COPY:
autocommit), committed, into a fresh organization.
"""

from __future__ import annotations

import datetime
import functools
import gc
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from sqlalchemy import insert
from uuid_utils.compat import uuid7

from bench import peers
from bench.context import Bench, OperationResult
from bench.ops_writes import INSERT_COLUMNS, INSERT_SQL, payload_values, raw_record
from bench.seed import create_organization
from bench.timing import Samples
from leaddb.models import Lead, LeadCreate
from leaddb.models.base import table_of
from leaddb.repositories.bulk import (
    AUDIT_ID_COLUMN,
    CHANGES_COLUMN,
    NOW,
    CopiedInsert,
    bulk_defaults,
    chunk_bounds,
)
from leaddb.repositories.guard import check_values

COPY_NAME = "raw asyncpg COPY"
STATEMENTS_ALONE = "leaddb's statements alone"

_Prebuilt = tuple[str, list[tuple[Any, ...]], list[str]]
"""One chunk as create_many would send it: the setup before it (or ""), its COPY records and
columns."""

_MERGE_GIN_PENDING = (
    "SELECT gin_clean_pending_list(i.indexrelid) FROM pg_index i "
    "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam "
    "WHERE i.indrelid = 'leads'::regclass AND a.amname = 'gin'"
)


async def _merge_gin_pending(bench: Bench) -> None:
    """Merge the pending lists of the GIN indexes of leads into the indexes.

    New GIN entries wait in a pending list, and the insert that takes the list past its limit
    merges all of it: left alone, one contender pays at random for the entries of the runs
    before it. Merged before each run (untimed) and again at its end (timed), every run pays
    exactly for the index work of its own rows, as a steady stream of inserts does.
    """
    async with bench.raw_pool.acquire() as connection:
        await connection.execute(_MERGE_GIN_PENDING)


async def _prebuilt_chunks(
    bench: Bench, org: uuid.UUID, payloads: list[LeadCreate]
) -> tuple[list[_Prebuilt], tuple[str, Sequence[Any]]]:
    """What create_many would send for ``payloads``: per chunk the scratch table's setup or
    nothing, the COPY records and columns; and its insert statement. Built by create_many's own
    code (no statement is sent), with the clock read now for the defaults."""
    async with bench.db.tenant(org) as uow:
        repository = uow.leads
        schema = type(payloads[0])
        plain = repository._plain_fields(schema)
        settings = uow.settings
        insert = CopiedInsert(
            repository,
            cast("Any", None),
            payloads,
            values=repository._insert_values,
            audit_args=repository._insert_audit_args(),
            plain=None if plain is None else (schema, plain),
            check=functools.partial(
                check_values,
                "lead",
                max_json_bytes=settings.max_json_bytes,
                max_json_depth=settings.max_json_depth,
            ),
        )
        bounds = chunk_bounds(len(payloads))
        first = insert._values(*bounds[0])
        defaults = bulk_defaults(insert._shape.table, insert._columns)
        assert defaults is not None
        now = datetime.datetime.now(datetime.UTC)
        insert._filled = {name: now if value is NOW else value for name, value in defaults.items()}
        columns = [*insert._columns, CHANGES_COLUMN, AUDIT_ID_COLUMN]
        chunks: list[_Prebuilt] = []
        for index, (start, stop) in enumerate(bounds):
            rows = first if index == 0 else insert._values(start, stop)
            setup = ""
            if index == 0:
                setup = (
                    f"CREATE TEMP TABLE IF NOT EXISTS {insert._scratch_name} "
                    f"({AUDIT_ID_COLUMN} uuid, {CHANGES_COLUMN} jsonb, "
                    f"LIKE {insert._shape.name} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS; "
                    "SAVEPOINT floor"
                )
            chunks.append((setup, list(insert._chunk(rows).records), columns))
        sql = insert._insert_sql()
    return chunks, (sql.text, sql.args(insert._audit_args))


async def _send_chunks(
    connection: Any, sql: tuple[str, Sequence[Any]], chunks: list[_Prebuilt]
) -> None:
    text, args = sql
    for setup, records, columns in chunks:
        if setup:
            await connection.execute(setup)
            await connection.fetchval("SELECT now()")
        await connection.copy_records_to_table(
            "_leaddb_bulk_leads", schema_name="pg_temp", records=records, columns=columns
        )
        await connection.execute(text, *args)
        await connection.execute("TRUNCATE pg_temp._leaddb_bulk_leads")
    await connection.execute("RELEASE SAVEPOINT floor")


class _CollectorWatch:
    """The cyclic garbage collector's runs (and their time) while the block runs: watched
    through ``gc.callbacks``, never tuned."""

    def __init__(self) -> None:
        self.runs = 0
        self.full = 0
        self.seconds = 0.0
        self._started = 0.0

    def _seen(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        self.runs += 1
        self.full += info["generation"] == 2
        self.seconds += time.perf_counter() - self._started

    def __enter__(self) -> None:
        gc.callbacks.append(self._seen)

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._seen)


def _collector_note(watched: dict[str, list[_CollectorWatch]], skipped: dict[str, str]) -> str:
    parts = []
    for name, watches in watched.items():
        if name in skipped or not watches:
            continue
        ms = sorted(watch.seconds * 1000 for watch in watches)
        runs = sorted(watch.runs for watch in watches)
        full = sorted(watch.full for watch in watches)
        middle = len(watches) // 2
        parts.append(
            f"{name} {ms[middle]:.0f} ms in {runs[middle]} collections, {full[middle]} full"
        )
    young, middle_limit, old_limit = gc.get_threshold()
    # CPython 3.11-3.12: the middle generation is collected at every (middle_limit + 2)th
    # collection, and the old one considered after old_limit + 1 of those.
    checks = (middle_limit + 2) * (old_limit + 1) + 1
    return (
        "the garbage collector's time inside each timed run, median (it runs on its own, "
        "as in any process): " + "; ".join(parts) + f". Each run starts right after "
        f"gc.collect(), so a full collection (a walk of every object of the process, "
        f"100-250 ms here) can start only at its collection number {checks} (one collection per "
        f"{young} new objects); in a long-running process that point comes once every {checks - 1} "
        f"collections wherever a batch starts, so a batch that makes N collections meets it "
        f"about N/{checks - 1} of the time"
    )


async def create_many(bench: Bench) -> None:
    """Insert ``bulk_rows`` validated leads at once, into a fresh organization each run."""
    rows = bench.sizes.bulk_rows
    table = table_of(Lead)
    runs: dict[str, Callable[[uuid.UUID, list[dict[str, Any]]], Awaitable[Callable[[], Any]]]]
    runs = {}

    async def copy(org: uuid.UUID, values: list[dict[str, Any]]) -> Callable[[], Any]:
        records = [raw_record(org, item) for item in values]

        async def go() -> object:
            async with bench.raw_pool.acquire() as connection:
                return await connection.copy_records_to_table(
                    "leads", records=records, columns=INSERT_COLUMNS
                )

        return go

    async def executemany(org: uuid.UUID, values: list[dict[str, Any]]) -> Callable[[], Any]:
        records = [raw_record(org, item) for item in values]

        async def go() -> object:
            async with bench.raw_pool.acquire() as connection, connection.transaction():
                await connection.executemany(INSERT_SQL, records)
            return records

        return go

    async def core(org: uuid.UUID, values: list[dict[str, Any]]) -> Callable[[], Any]:
        parameters = [{"organization_id": org, "id": uuid7(), **item} for item in values]

        async def go() -> object:
            async with bench.engine.begin() as connection:
                result = await connection.execute(insert(table).returning(table.c.id), parameters)
                return result.all()

        return go

    async def orm(org: uuid.UUID, values: list[dict[str, Any]]) -> Callable[[], Any]:
        leads = [Lead(organization_id=org, **item) for item in values]

        async def go() -> object:
            async with peers.session(bench.engine) as session:
                session.add_all(leads)
                await session.commit()
            return leads

        return go

    runs[COPY_NAME] = copy
    runs["raw asyncpg executemany"] = executemany
    runs["SQLAlchemy Core insertmanyvalues"] = core
    runs["SQLAlchemy ORM add_all"] = orm
    aa = bench.peers[peers.ADVANCED_ALCHEMY]
    if aa.available:

        async def advanced_alchemy(
            org: uuid.UUID, values: list[dict[str, Any]]
        ) -> Callable[[], Any]:
            leads = [Lead(organization_id=org, **item) for item in values]

            async def go() -> object:
                async with peers.session(bench.engine) as session:
                    repository = peers.advanced_alchemy_repository(aa, session)
                    return await repository.add_many(leads, auto_commit=True)

            return go

        runs["advanced-alchemy add_many"] = advanced_alchemy
    fc = bench.peers[peers.FASTCRUD]
    if fc.available:
        crud = peers.fastcrud(fc)

        async def fastcrud(org: uuid.UUID, values: list[dict[str, Any]]) -> Callable[[], Any]:
            leads = [peers.LeadIn(organization_id=org, **item) for item in values]

            async def go() -> object:
                async with peers.session(bench.engine) as session:
                    return await crud.upsert_multi(session, leads, commit=True)

            return go

        runs["fastcrud upsert_multi"] = fastcrud

    async def leaddb(org: uuid.UUID, values: list[dict[str, Any]]) -> Callable[[], Any]:
        payloads = [LeadCreate(**item) for item in values]

        async def go() -> object:
            async with bench.db.tenant(org) as uow:
                created = await uow.leads.create_many(payloads)
                await uow.commit()
            return created

        return go

    runs["leaddb create_many"] = leaddb

    async def statements_alone(org: uuid.UUID, values: list[dict[str, Any]]) -> Callable[[], Any]:
        chunks, sql = await _prebuilt_chunks(bench, org, [LeadCreate(**item) for item in values])

        async def go() -> object:
            async with bench.db.tenant(org) as uow:
                await _send_chunks(await uow.leads._connection(), sql, chunks)
                await uow.commit()
            return chunks

        return go

    runs[STATEMENTS_ALONE] = statements_alone
    kinds = {COPY_NAME: "floor", "leaddb create_many": "leaddb"}
    references = {"raw asyncpg executemany", "SQLAlchemy Core insertmanyvalues", STATEMENTS_ALONE}
    what = {
        COPY_NAME: "copy_records_to_table into leads (autocommit)",
        "raw asyncpg executemany": "INSERT executemany, one transaction",
        "SQLAlchemy Core insertmanyvalues": "insert(leads).returning(id) with every row's params",
        "SQLAlchemy ORM add_all": "session.add_all + commit",
        "advanced-alchemy add_many": "add_many(auto_commit=True)",
        "fastcrud upsert_multi": "upsert_multi(commit=True): INSERT ... ON CONFLICT",
        "leaddb create_many": "unit of work: create_many + commit (audit rows included)",
        STATEMENTS_ALONE: "create_many's statements with its COPY records built before timing",
    }
    samples = {
        name: Samples(
            name, kinds.get(name, "reference" if name in references else "peer"), what[name]
        )
        for name in runs
    }
    skipped: dict[str, str] = {}
    collector: dict[str, list[_CollectorWatch]] = {name: [] for name in runs}
    began = time.perf_counter()
    names = list(runs)
    for repeat in range(bench.sizes.bulk_repeats):
        order = names[repeat % len(names) :] + names[: repeat % len(names)]
        for name in order:
            if name in skipped:
                continue
            org = await create_organization(bench.db, f"bulk{repeat}")
            bench.servers.tenants.add(org)
            go = await runs[name](org, payload_values(rows, f"bulk-{repeat}"))
            await _merge_gin_pending(bench)
            gc.collect()
            watch = _CollectorWatch()
            started = time.perf_counter_ns()
            try:
                # What each contender returns (10,000 models, rows or ids) is freed after the
                # clock stops: dropping it is the caller's work, not the insert's.
                with watch:
                    result = await go()
                    await _merge_gin_pending(bench)
            except Exception as error:
                skipped[name] = f"{type(error).__name__}: {str(error)[:300]}"
                continue
            samples[name].values_us.append((time.perf_counter_ns() - started) / 1000.0)
            collector[name].append(watch)
            del result
    bench.timings["create_many"] = time.perf_counter() - began
    bench.results.append(
        OperationResult(
            "create_many",
            f"create_many {rows:,} validated leads (one transaction, committed)",
            [found for name, found in samples.items() if name not in skipped],
            floor=COPY_NAME,
            notes=[
                f"{bench.sizes.bulk_repeats} run(s) each, a fresh organization per run; inputs "
                "(tuples, ORM instances, LeadCreate) built before timing; the garbage collector "
                "runs before each run, and each run ends by merging the GIN pending lists its "
                "rows filled (timed; merged before it too, untimed), so no run pays for another's; "
                "what a run returns is freed after its clock stops",
                "leaddb writes one audit row per lead in the same statement",
                f"{STATEMENTS_ALONE}: what create_many sends (the scratch table, then per chunk "
                "COPY, INSERT ... SELECT into leads and activity_logs, TRUNCATE; commit), in a "
                "unit of work, with every chunk's records (values, audit images, ids) built "
                "before the clock starts: the floor of create_many's design, PostgreSQL's work "
                "and the driver's encoding without leaddb's Python (its images hold a clock "
                "read before the transaction, so they are the right size, not the right time)",
                _collector_note(collector, skipped),
            ],
            skipped=skipped,
            rows=rows,
        )
    )
