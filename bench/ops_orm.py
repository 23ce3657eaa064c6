"""Issue 21: a query through ``uow.session`` against plain SQLModel + SQLAlchemy on the same
select (its own engine, an AsyncSession and a transaction per query, as a service would)."""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bench.context import Bench
from bench.seed import DEEP_STATUS
from bench.timing import Contender
from leaddb.models import Lead

PLAIN = "SQLModel + SQLAlchemy, a session per query"
SESSION = "leaddb uow.session, a unit of work per query"
SESSION_WITHOUT_RLS = "leaddb uow.session, row-level security off"
LIMIT = 50


async def session_select(bench: Bench) -> None:
    """``exec(select(Lead).where(...).limit(50))``, one transaction per query on both sides."""
    org = bench.big

    def query() -> Any:
        return (
            select(Lead)
            .where(
                col(Lead.organization_id) == org,
                col(Lead.status) == DEEP_STATUS,
                col(Lead.deleted_at).is_(None),
            )
            .order_by(col(Lead.created_at), col(Lead.id))
            .limit(LIMIT)
        )

    async def plain(i: int) -> object:
        async with AsyncSession(bench.engine, expire_on_commit=False) as session, session.begin():
            return (await session.exec(query())).all()

    async def through_uow(i: int) -> object:
        async with bench.db.tenant(org) as uow:
            rows = (await uow.session.exec(query())).all()
            await uow.commit()
            return rows

    async def through_uow_without_rls(i: int) -> object:
        async with bench.db_without_rls.tenant(org) as uow:
            rows = (await uow.session.exec(query())).all()
            await uow.commit()
            return rows

    plain_ids = [lead.id for lead in await plain(0)]  # type: ignore[attr-defined]
    uow_ids = [lead.id for lead in await through_uow(0)]  # type: ignore[attr-defined]
    bench.facts["orm session check"] = (
        f"uow.session and plain SQLModel returned the same {len(uow_ids)} leads"
        if plain_ids == uow_ids and len(uow_ids) == LIMIT
        else "MISMATCH: uow.session and plain SQLModel returned different leads"
    )
    await bench.measure(
        "orm_select",
        f"ORM select of {LIMIT} leads by status (issue 21)",
        [
            Contender(
                PLAIN,
                plain,
                "async with AsyncSession(engine) as s, s.begin(): (await s.exec(q)).all()",
                "reference",
            ),
            Contender(
                SESSION,
                through_uow,
                "async with db.tenant(org) as uow: (await uow.session.exec(q)).all(); commit",
                "leaddb",
            ),
            Contender(
                SESSION_WITHOUT_RLS,
                through_uow_without_rls,
                "the same with LEADDB_ROW_LEVEL_SECURITY=false (the ORM's own tenant criteria)",
                "leaddb",
            ),
        ],
        iterations=max(100, bench.sizes.iterations // 4),
        floor=PLAIN,
        notes=[
            "Same statement on both sides (tenant filter written out). leaddb adds its tenant "
            "criteria to every tenant model, its signed row-level-security context and the "
            "commit's flush; plain SQLModel connects as the URL's superuser role.",
        ],
    )
