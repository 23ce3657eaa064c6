"""Reads: get by id (issue 5), list 50 by status on the first page and ~50,000 rows deep."""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from bench import peers
from bench.context import RAW, Bench
from bench.seed import DEEP_STATUS, LEAD_COLUMNS
from bench.timing import Contender
from leaddb import LeadDB
from leaddb.models import Lead, LeadRead

COLUMNS = ", ".join(LEAD_COLUMNS)
LIVE_KEY = "organization_id = $1 AND id = $2 AND deleted_at IS NULL"
GET_SQL = f"SELECT {COLUMNS} FROM leads WHERE {LIVE_KEY}"  # noqa: S608
_BY_STATUS = (
    f"SELECT {COLUMNS} FROM leads "  # noqa: S608
    "WHERE organization_id = $1 AND status = $2 AND deleted_at IS NULL"
)
LIST_FIRST_SQL = f"{_BY_STATUS} ORDER BY created_at, id LIMIT 50"
LIST_KEYSET_SQL = f"{_BY_STATUS} AND (created_at, id) > ($3, $4) ORDER BY created_at, id LIMIT 50"
LIST_OFFSET_SQL = f"{_BY_STATUS} ORDER BY created_at, id LIMIT 50 OFFSET $3"
PAGE = 50

LEADDB_IN_UOW = "leaddb, many gets in one unit of work"
LEADDB_PER_UOW = "leaddb, one get per unit of work"
RAW_PER_TX = "raw asyncpg, one transaction per get"
DEPTH_FIRST = "leaddb first page"
DEPTH_DEEP = "leaddb deep page"
LEADDB_WITHOUT_RLS = "leaddb, row-level security off"


def _live() -> Any:
    return col(Lead.deleted_at).is_(None)


async def get_by_id(bench: Bench) -> None:
    """Get one lead by id with the tenant filter, as a model."""
    ids = bench.seeded.big_live_ids
    org = bench.big

    def pick(i: int) -> uuid.UUID:
        return ids[i % len(ids)]

    async with AsyncExitStack() as stack:
        connection = await stack.enter_async_context(bench.raw_pool.acquire())
        statement = await connection.prepare(GET_SQL)

        async def raw(i: int) -> object:
            return await statement.fetchrow(org, pick(i))

        async def raw_per_transaction(i: int) -> object:
            async with bench.raw_pool.acquire() as pooled, pooled.transaction():
                return await pooled.fetchrow(GET_SQL, org, pick(i))

        orm_session = await stack.enter_async_context(peers.session(bench.engine))

        async def orm(i: int) -> object:
            query = select(Lead).where(
                col(Lead.organization_id) == org, col(Lead.id) == pick(i), _live()
            )
            return (await orm_session.execute(query)).scalar_one_or_none()

        contenders = [
            Contender(RAW, raw, "prepared statement, fetchrow, one held connection", "floor"),
            Contender(
                RAW_PER_TX,
                raw_per_transaction,
                "pool acquire, BEGIN, fetchrow, COMMIT, release: what a unit of work does",
                "reference",
            ),
            Contender("SQLAlchemy ORM", orm, "select(Lead) with the tenant filter, one session"),
        ]
        aa = bench.peers[peers.ADVANCED_ALCHEMY]
        if aa.available:
            repository = peers.advanced_alchemy_repository(
                aa, await stack.enter_async_context(peers.session(bench.engine))
            )

            async def advanced_alchemy(i: int) -> object:
                return await repository.get_one(_live(), organization_id=org, id=pick(i))

            contenders.append(
                Contender("advanced-alchemy", advanced_alchemy, "repository.get_one, one session")
            )
        fc = bench.peers[peers.FASTCRUD]
        if fc.available:
            crud = peers.fastcrud(fc)
            fc_session = await stack.enter_async_context(peers.session(bench.engine))

            async def fastcrud(i: int) -> object:
                return await crud.get(
                    fc_session,
                    schema_to_select=LeadRead,
                    return_as_model=True,
                    where=_live(),
                    organization_id=org,
                    id=pick(i),
                )

            contenders.append(
                Contender("fastcrud", fastcrud, "FastCRUD(Lead).get -> LeadRead, one session")
            )
        uow = await stack.enter_async_context(bench.db.tenant(org))

        async def leaddb_in_uow(i: int) -> object:
            return await uow.leads.get(pick(i))

        async def leaddb_per_uow(i: int) -> object:
            async with bench.db.tenant(org) as own:
                return await own.leads.get(pick(i))

        contenders += [
            Contender(
                LEADDB_IN_UOW,
                leaddb_in_uow,
                "uow.leads.get(id) in one open unit of work (comparable to the peers)",
                "leaddb",
            ),
            Contender(
                LEADDB_PER_UOW,
                leaddb_per_uow,
                "async with db.tenant(org) as uow: await uow.leads.get(id)",
                "leaddb",
            ),
        ]
        await bench.measure(
            "get",
            "get by id (tenant filter, as a model)",
            contenders,
            notes=[
                "leaddb: cache off, row-level security on (its defaults but the cache); raw "
                "asyncpg and the peers connect as the URL's role, a superuser that RLS does not "
                "apply to.",
            ],
        )


async def _leaddb_cursor(db: LeadDB, org: uuid.UUID, depth: int) -> str | None:
    """The cursor ``depth`` rows into the status listing, walked with leaddb itself."""
    cursor: str | None = None
    walked = 0
    async with db.tenant(org) as uow:
        while walked < depth:
            step = 1000 if depth - walked >= 1000 else PAGE
            page = await uow.leads.list(status=DEEP_STATUS, limit=step, after=cursor)
            cursor = page.next_cursor
            walked += len(page.items)
    return cursor


async def list_by_status(bench: Bench) -> None:
    """50 leads by status: the first page and a page ``depth`` rows deep."""
    org = bench.big
    status = DEEP_STATUS
    depth = min(bench.sizes.deep_depth, (bench.seeded.deep_status_rows - 2 * PAGE) // PAGE * PAGE)
    bench.facts["deep page"] = (
        f"{depth:,} rows deep into {bench.seeded.deep_status_rows:,} live `{status.value}` leads "
        "of one organization"
    )
    async with AsyncExitStack() as stack:
        connection = await stack.enter_async_context(bench.raw_pool.acquire())
        boundary = await connection.fetchrow(
            "SELECT created_at, id FROM leads WHERE organization_id = $1 AND status = $2 "
            "AND deleted_at IS NULL ORDER BY created_at, id OFFSET $3 LIMIT 1",
            org,
            status.value,
            depth - 1,
        )
        assert boundary is not None
        first_statement = await connection.prepare(LIST_FIRST_SQL)
        keyset_statement = await connection.prepare(LIST_KEYSET_SQL)
        offset_statement = await connection.prepare(LIST_OFFSET_SQL)
        deep_cursor = await _leaddb_cursor(bench.db, org, depth)
        orm_session = await stack.enter_async_context(peers.session(bench.engine))
        uow = await stack.enter_async_context(bench.db.tenant(org))
        uow_without_rls = await stack.enter_async_context(bench.db_without_rls.tenant(org))

        # The same page, whoever reads it.
        expected = await keyset_statement.fetch(org, status.value, boundary[0], boundary[1])
        by_offset = await offset_statement.fetch(org, status.value, depth)
        by_leaddb = await uow.leads.list(status=status, limit=PAGE, after=deep_cursor)
        same = (
            [row["id"] for row in expected]
            == [row["id"] for row in by_offset]
            == [lead.id for lead in by_leaddb.items]
        )
        bench.facts["deep page check"] = (
            "the deep page is the same 50 rows by keyset, by OFFSET and through leaddb's cursor"
            if same
            else "MISMATCH: the deep page differs between keyset, OFFSET and leaddb"
        )

        aa = bench.peers[peers.ADVANCED_ALCHEMY]
        repository: Any = None
        if aa.available:
            repository = peers.advanced_alchemy_repository(
                aa, await stack.enter_async_context(peers.session(bench.engine))
            )
            filters = peers.advanced_alchemy_filters(aa)
        fc = bench.peers[peers.FASTCRUD]
        crud: Any = None
        if fc.available:
            crud = peers.fastcrud(fc)
            fc_session = await stack.enter_async_context(peers.session(bench.engine))

        for key, title, offset, cursor, count in (
            ("list_first", "list 50 by status, first page", 0, None, bench.sizes.list_iterations),
            ("list_deep", f"list 50 by status, {depth:,} rows deep", depth, deep_cursor, 0),
        ):

            async def raw(i: int, deep: bool = offset > 0) -> object:
                if deep:
                    return await keyset_statement.fetch(org, status.value, *boundary)
                return await first_statement.fetch(org, status.value)

            async def raw_offset(i: int, offset: int = offset) -> object:
                return await offset_statement.fetch(org, status.value, offset)

            async def orm(i: int, offset: int = offset) -> object:
                query = (
                    select(Lead)
                    .where(col(Lead.organization_id) == org, col(Lead.status) == status, _live())
                    .order_by(col(Lead.created_at), col(Lead.id))
                    .limit(PAGE)
                    .offset(offset)
                )
                return (await orm_session.execute(query)).scalars().all()

            async def leaddb(i: int, cursor: str | None = cursor) -> object:
                return await uow.leads.list(status=status, limit=PAGE, after=cursor)

            async def leaddb_without_rls(i: int, cursor: str | None = cursor) -> object:
                return await uow_without_rls.leads.list(status=status, limit=PAGE, after=cursor)

            contenders = [
                Contender(RAW, raw, "keyset on (created_at, id), prepared", "floor"),
                Contender("raw asyncpg OFFSET", raw_offset, "LIMIT 50 OFFSET n", "reference"),
                Contender("SQLAlchemy ORM", orm, "select(Lead) ... .offset(n), one session"),
            ]
            if repository is not None:

                async def advanced_alchemy(i: int, offset: int = offset) -> object:
                    return await repository.list(
                        filters.LimitOffset(limit=PAGE, offset=offset),
                        filters.OrderBy(field_name="created_at", sort_order="asc"),
                        filters.OrderBy(field_name="id", sort_order="asc"),
                        _live(),
                        organization_id=org,
                        status=status,
                    )

                contenders.append(
                    Contender("advanced-alchemy", advanced_alchemy, "list(LimitOffset, OrderBy)")
                )
            if crud is not None:

                async def fastcrud(i: int, offset: int = offset) -> object:
                    return await crud.get_multi(
                        fc_session,
                        offset=offset,
                        limit=PAGE,
                        schema_to_select=LeadRead,
                        return_as_model=True,
                        sort_columns=["created_at", "id"],
                        sort_orders=["asc", "asc"],
                        return_total_count=False,
                        where=_live(),
                        organization_id=org,
                        status=status,
                    )

                contenders.append(
                    Contender(
                        "fastcrud",
                        fastcrud,
                        "get_multi(offset, limit) -> LeadRead, without its total count",
                    )
                )
            contenders.append(
                Contender(
                    "leaddb",
                    leaddb,
                    "uow.leads.list(status=..., limit=50, after=cursor), one unit of work",
                    "leaddb",
                )
            )
            contenders.append(
                Contender(
                    LEADDB_WITHOUT_RLS,
                    leaddb_without_rls,
                    "the same with row_level_security=False (for where the time goes)",
                    "reference",
                )
            )
            await bench.measure(
                key,
                title,
                contenders,
                iterations=count or bench.sizes.deep_iterations,
                notes=["peers page with OFFSET (their own pagination); leaddb and raw by keyset"],
            )

        # The depth target times leaddb's two pages together: in the tables above the deep page
        # alternates with OFFSET contenders that read 50,000 rows each, which push its heap
        # pages out of shared_buffers between calls, a cost of the neighbours, not of depth.
        async def first_page(i: int) -> object:
            return await uow.leads.list(status=status, limit=PAGE)

        async def deep_page(i: int) -> object:
            return await uow.leads.list(status=status, limit=PAGE, after=deep_cursor)

        await bench.measure(
            "list_depth",
            f"leaddb keyset pages: first and {depth:,} rows deep, timed together",
            [
                Contender(DEPTH_FIRST, first_page, "uow.leads.list(status=..., limit=50)", "floor"),
                Contender(DEPTH_DEEP, deep_page, "the same, after its deep cursor", "leaddb"),
            ],
            iterations=bench.sizes.list_iterations,
            floor=DEPTH_FIRST,
        )
