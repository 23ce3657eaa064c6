"""A consumer of ``uow.session``, checked by ``mypy --strict`` and run against the database.

Each ``assert_type`` pins what SQLModel's ``exec`` gives a service through leaddb: the session's
type, a scalar select, a join of two models, relationship attributes, the loader-option helper.
"""

from __future__ import annotations

import uuid
from typing import Any, assert_type

from sqlalchemy.engine.result import ScalarResult, TupleResult
from sqlalchemy.orm import QueryableAttribute, selectinload
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from leaddb import LeadDB
from leaddb.models import Lead, LeadCreate, LeadNote, OrganizationCreate, User, UserCreate
from leaddb.uow import related


async def _tenant(db: LeadDB) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    slug = f"typed-{uuid.uuid4().hex[:8]}"
    async with db.platform() as platform:
        org = await platform.organizations.create(OrganizationCreate(name=slug, slug=slug))
        await platform.commit()
    async with db.tenant(org.id) as uow:
        user = await uow.users.create(UserCreate(email=f"{slug}@example.com", full_name="Typed"))
        lead = await uow.leads.create(
            LeadCreate(email=f"lead-{slug}@example.com", owner_id=user.id, score=60)
        )
        await uow.commit()
    return org.id, user.id, lead.id


async def test_session_exec_is_typed_as_sqlmodel_types_it(db: LeadDB) -> None:
    org_id, user_id, lead_id = await _tenant(db)
    async with db.tenant(org_id) as uow:
        session = assert_type(uow.session, AsyncSession)

        leads = assert_type(
            await session.exec(select(Lead).where(col(Lead.score) > 50)), ScalarResult[Lead]
        )
        lead = assert_type(leads.one(), Lead)
        assert lead.id == lead_id

        pairs = assert_type(
            await session.exec(select(Lead, User).join(User, col(Lead.owner_id) == col(User.id))),
            TupleResult[tuple[Lead, User]],
        )
        found, owner = pairs.one()
        assert_type(found, Lead)
        assert_type(owner, User)
        assert owner.id == user_id

        option = assert_type(related(Lead.notes), QueryableAttribute[Any])
        loaded = (
            await session.exec(
                select(Lead).options(selectinload(option), selectinload(related(Lead.owner)))
            )
        ).one()
        assert_type(loaded.notes, list[LeadNote])
        assert_type(loaded.owner, User | None)
        assert loaded.notes == []
        assert loaded.owner is not None
        assert loaded.owner.id == user_id
