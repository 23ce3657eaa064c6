"""Writes: create one lead, and update one lead with its version check (create_many: ops_bulk).

Every contender's inputs (tuples, ORM instances, ``LeadCreate`` payloads) are built before the
clock starts; each create or update is its own transaction, committed.
"""

from __future__ import annotations

import enum
import random
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import orjson
from sqlalchemy import select
from sqlmodel import col
from uuid_utils.compat import uuid7

from bench import peers, raw_statements
from bench.context import RAW, Bench
from bench.ops_reads import COLUMNS, _live
from bench.seed import create_organization, lead_values
from bench.timing import Contender
from leaddb import LeadDB
from leaddb.models import Lead, LeadCreate, LeadUpdate

CREATE_FIELDS = tuple(LeadCreate.model_fields)
INSERT_COLUMNS = ("organization_id", "id", *CREATE_FIELDS)
_PLACEHOLDERS = ", ".join(f"${n}" for n in range(1, len(INSERT_COLUMNS) + 1))
INSERT_SQL = f"INSERT INTO leads ({', '.join(INSERT_COLUMNS)}) VALUES ({_PLACEHOLDERS})"  # noqa: S608
INSERT_RETURNING_SQL = f"{INSERT_SQL} RETURNING {COLUMNS}"
# Column names come from the model; every value is a $n parameter.
UPDATE_SQL = (
    "UPDATE leads SET score = $4, version = version + 1, updated_at = now() "  # noqa: S608
    "WHERE organization_id = $1 AND id = $2 AND version = $3 AND deleted_at IS NULL "
    f"RETURNING {COLUMNS}"
)


class StaleVersion(Exception):
    """A peer's load-modify-commit found another version than expected."""


def raw_record(organization: uuid.UUID, values: dict[str, Any]) -> tuple[Any, ...]:
    """``values`` (``lead_values``) as a tuple in ``INSERT_COLUMNS`` order, for raw asyncpg."""
    row: list[Any] = [organization, uuid7()]
    for name in CREATE_FIELDS:
        value = values[name]
        if isinstance(value, enum.Enum):
            value = value.value
        elif name == "custom_fields":
            value = orjson.dumps(value).decode()
        row.append(value)
    return tuple(row)


def payload_values(count: int, label: str) -> list[dict[str, Any]]:
    rng = random.Random(label)  # noqa: S311 (test data)
    domain = f"{label}-{uuid.uuid4().hex[:6]}"
    return [lead_values(rng, index, domain) for index in range(count)]


RAW_POOLED = "raw asyncpg via the pool"
LEADDB = "leaddb"
LEADDB_WITHOUT_RLS = "leaddb, row-level security off"
POOLED_NOTE = "acquire, BEGIN, statement, COMMIT, release (+ asyncpg's reset query): a uow's path"


async def create_one(bench: Bench) -> None:
    """Create one lead, each in its own committed transaction; rounds on new connections."""
    await _in_rounds(bench, _create_one_round)


async def update_one(bench: Bench) -> None:
    """Update one lead's score, checking its version; rounds on new connections."""
    await _in_rounds(bench, _update_one_round)


async def _in_rounds(bench: Bench, one_round: Callable[[Bench], Awaitable[None]]) -> None:
    for round_number in range(bench.sizes.write_rounds):
        if round_number:
            await bench.new_connections()
        await one_round(bench)


def rounds_note(bench: Bench) -> str:
    sizes = bench.sizes
    return (
        f"{sizes.write_rounds} rounds of {sizes.write_round_iterations} calls per contender, "
        "each round on connections opened for it (pools expired, engine disposed); the samples "
        "of all rounds are pooled"
    )


async def _create_one_round(bench: Bench) -> None:
    count = bench.sizes.write_round_iterations
    total = bench.sizes.inputs(count)
    org = await create_organization(bench.db, "create-one")
    bench.servers.tenants.add(org)
    async with AsyncExitStack() as stack:
        connection = await stack.enter_async_context(bench.raw_pool.acquire())
        statement = await connection.prepare(INSERT_RETURNING_SQL)
        raw_rows = [raw_record(org, values) for values in payload_values(total, "raw")]
        pooled_rows = [raw_record(org, values) for values in payload_values(total, "pooled")]

        async def raw(i: int) -> object:
            async with connection.transaction():
                return await statement.fetchrow(*raw_rows[i])

        async def raw_pooled(i: int) -> object:
            async with bench.raw_pool.acquire() as pooled, pooled.transaction():
                return await pooled.fetchrow(INSERT_RETURNING_SQL, *pooled_rows[i])

        orm_leads = [Lead(organization_id=org, **values) for values in payload_values(total, "orm")]

        async def orm(i: int) -> object:
            async with peers.session(bench.engine) as session:
                session.add(orm_leads[i])
                await session.commit()
            return orm_leads[i]

        contenders = [
            Contender(RAW, raw, "BEGIN; INSERT ... RETURNING (prepared); COMMIT", "floor"),
            Contender(RAW_POOLED, raw_pooled, POOLED_NOTE, "reference"),
            Contender("SQLAlchemy ORM", orm, "session per insert: add + commit"),
        ]
        aa = bench.peers[peers.ADVANCED_ALCHEMY]
        if aa.available:
            aa_leads = [
                Lead(organization_id=org, **values) for values in payload_values(total, "aa")
            ]

            async def advanced_alchemy(i: int) -> object:
                async with peers.session(bench.engine) as session:
                    repository = peers.advanced_alchemy_repository(aa, session)
                    return await repository.add(aa_leads[i], auto_commit=True)

            contenders.append(
                Contender(
                    "advanced-alchemy", advanced_alchemy, "session per insert: add(auto_commit)"
                )
            )
        fc = bench.peers[peers.FASTCRUD]
        if fc.available:
            crud = peers.fastcrud(fc)
            fc_leads = [
                peers.LeadIn(organization_id=org, **values)
                for values in payload_values(total, "fc")
            ]

            async def fastcrud(i: int) -> object:
                async with peers.session(bench.engine) as session:
                    return await crud.create(session, fc_leads[i])

            contenders.append(
                Contender("fastcrud", fastcrud, "session per insert: create (commits, refreshes)")
            )
        payloads = [LeadCreate(**values) for values in payload_values(total, "leaddb")]

        async def leaddb(i: int) -> object:
            async with bench.db.tenant(org) as uow:
                lead = await uow.leads.create(payloads[i])
                await uow.commit()
            return lead

        contenders.append(
            Contender(
                "leaddb",
                leaddb,
                "unit of work: create (one statement with its audit row) + commit",
                "leaddb",
            )
        )
        await bench.measure(
            "create",
            "create one lead (own transaction, committed)",
            contenders,
            iterations=count,
            # Blocks as long as when the calls were not split into rounds.
            block=bench.sizes.block,
            notes=[
                rounds_note(bench),
                "leaddb writes an audit row (activity_logs) in the same statement; no peer does",
                "inputs (tuples, ORM instances, LeadCreate) are built before timing",
            ],
        )


async def _update_one_round(bench: Bench) -> None:
    count = bench.sizes.write_round_iterations
    org = bench.big
    names = ["raw", "pooled", "orm", "aa", "fc", "leaddb", "leaddb_without_rls", "statement"]
    slices = {name: bench.seeded.take_ids(bench.sizes.inputs(count)) for name in names}
    state: dict[uuid.UUID, tuple[int, int]] = {}
    async with AsyncExitStack() as stack:
        connection = await stack.enter_async_context(bench.raw_pool.acquire())
        for ids in slices.values():
            for row in await connection.fetch(
                "SELECT id, version, score FROM leads WHERE organization_id = $1 "
                "AND id = ANY($2::uuid[])",
                org,
                ids,
            ):
                state[row["id"]] = (row["version"], row["score"])
        statement = await connection.prepare(UPDATE_SQL)

        def target(name: str, i: int) -> tuple[uuid.UUID, int, int]:
            ids = slices[name]
            lead_id = ids[i % len(ids)]
            version, score = state[lead_id]
            return lead_id, version, (score + 1) % 101

        def done(lead_id: uuid.UUID, version: int, score: int) -> None:
            state[lead_id] = (version + 1, score)

        async def raw(i: int) -> object:
            lead_id, version, score = target("raw", i)
            async with connection.transaction():
                row = await statement.fetchrow(org, lead_id, version, score)
            if row is None:
                raise StaleVersion(lead_id)
            done(lead_id, version, score)
            return row

        async def raw_pooled(i: int) -> object:
            lead_id, version, score = target("pooled", i)
            async with bench.raw_pool.acquire() as pooled, pooled.transaction():
                row = await pooled.fetchrow(UPDATE_SQL, org, lead_id, version, score)
            if row is None:
                raise StaleVersion(lead_id)
            done(lead_id, version, score)
            return row

        async def orm(i: int) -> object:
            lead_id, version, score = target("orm", i)
            query = select(Lead).where(
                col(Lead.organization_id) == org, col(Lead.id) == lead_id, _live()
            )
            async with peers.session(bench.engine) as session:
                lead = (await session.execute(query)).scalar_one()
                if lead.version != version:
                    raise StaleVersion(lead_id)
                lead.score = score
                await session.commit()
            done(lead_id, version, score)
            return lead

        contenders = [
            Contender(RAW, raw, "BEGIN; UPDATE ... AND version = $3 RETURNING; COMMIT", "floor"),
            Contender(RAW_POOLED, raw_pooled, POOLED_NOTE, "reference"),
            Contender("SQLAlchemy ORM", orm, "session per update: load, check version, commit"),
        ]
        aa = bench.peers[peers.ADVANCED_ALCHEMY]
        if aa.available:

            async def advanced_alchemy(i: int) -> object:
                lead_id, version, score = target("aa", i)
                async with peers.session(bench.engine) as session:
                    repository = peers.advanced_alchemy_repository(aa, session)
                    lead = await repository.get_one(_live(), organization_id=org, id=lead_id)
                    if lead.version != version:
                        raise StaleVersion(lead_id)
                    lead.score = score
                    updated = await repository.update(lead, auto_commit=True)
                done(lead_id, version, score)
                return updated

            contenders.append(
                Contender(
                    "advanced-alchemy",
                    advanced_alchemy,
                    "session per update: get_one, check version, update(auto_commit)",
                )
            )
        fc = bench.peers[peers.FASTCRUD]
        if fc.available:
            crud = peers.fastcrud(fc)

            async def fastcrud(i: int) -> object:
                lead_id, version, score = target("fc", i)
                async with peers.session(bench.engine) as session:
                    await crud.update(
                        session, {"score": score}, organization_id=org, id=lead_id, version=version
                    )
                done(lead_id, version, score)
                return None

            contenders.append(
                Contender(
                    "fastcrud", fastcrud, "session per update: update(..., version=v) (commits)"
                )
            )

        def leaddb_update(db: LeadDB, name: str) -> Callable[[int], Awaitable[object]]:
            async def one(i: int) -> object:
                lead_id, version, score = target(name, i)
                async with db.tenant(org) as uow:
                    lead = await uow.leads.update(
                        lead_id, LeadUpdate(score=score), expected_version=version
                    )
                    await uow.commit()
                done(lead_id, version, score)
                return lead

            return one

        statement_connection = await raw_statements.connect(bench, row_level_security=True)
        stack.push_async_callback(statement_connection.close)
        begin = raw_statements.begin_sql(bench.db, org, row_level_security=True)

        async def leaddb_statement(i: int) -> object:
            lead_id, version, score = target("statement", i)
            row = await raw_statements.update(
                statement_connection, begin, org, lead_id, score, version
            )
            if row is None or not row["_written"]:
                raise StaleVersion(lead_id)
            done(lead_id, version, score)
            return row

        contenders += [
            Contender(
                raw_statements.RAW_STATEMENT_ON,
                leaddb_statement,
                raw_statements.ON_NOTE,
                "reference",
            ),
            Contender(
                LEADDB,
                leaddb_update(bench.db, "leaddb"),
                "unit of work: update(id, LeadUpdate(score), expected_version) + commit",
                "leaddb",
            ),
            Contender(
                LEADDB_WITHOUT_RLS,
                leaddb_update(bench.db_without_rls, "leaddb_without_rls"),
                "the same with row_level_security=False: the statement, the audit row and the "
                "unit of work without the signed context's policies (for where the time goes)",
                "leaddb",
            ),
        ]
        await bench.measure(
            "update",
            "update one lead with its version check (own transaction, committed)",
            contenders,
            iterations=count,
            # Blocks as long as when the calls were not split into rounds.
            block=bench.sizes.block,
            notes=[
                rounds_note(bench),
                "leaddb's single statement also writes the audit row (fields before and after); "
                "the ORM and advanced-alchemy check the version in Python after loading the row, "
                "fastcrud puts it in the WHERE clause",
            ],
        )
