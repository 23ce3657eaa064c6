"""Small helpers for the integration tests: rows made through leaddb's public API, and checks
made through a raw connection to the same database."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr

from leaddb import LeadDB
from leaddb.errors import LeadDBError
from leaddb.models import (
    Lead,
    LeadCreate,
    Organization,
    OrganizationCreate,
    User,
    UserCreate,
)

PASSWORD = "correct horse battery staple"


async def make_org(db: LeadDB, slug: str | None = None) -> Organization:
    """A committed organization."""
    slug = slug or f"org-{uuid.uuid4().hex[:10]}"
    async with db.platform() as uow:
        org = await uow.organizations.create(OrganizationCreate(name=slug.title(), slug=slug))
        await uow.commit()
    return org


async def make_user(
    db: LeadDB, org_id: uuid.UUID, email: str | None = None, *, password: str | None = None
) -> User:
    """A committed user of ``org_id`` (with a password when one is given)."""
    email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
    async with db.tenant(org_id) as uow:
        user = await uow.users.create(
            UserCreate(
                email=email,
                full_name="Test User",
                password=None if password is None else SecretStr(password),
            )
        )
        await uow.commit()
    return user


async def make_lead(db: LeadDB, org_id: uuid.UUID, email: str | None = None, **fields: Any) -> Lead:
    """A committed lead of ``org_id``."""
    email = email or f"lead-{uuid.uuid4().hex[:10]}@example.com"
    async with db.tenant(org_id) as uow:
        lead = await uow.leads.create(LeadCreate.model_validate({"email": email, **fields}))
        await uow.commit()
    return lead


def lead_payloads(count: int, prefix: str = "bulk", **fields: Any) -> list[LeadCreate]:
    """``count`` valid lead payloads with distinct emails."""
    return [
        LeadCreate.model_validate({"email": f"{prefix}-{index:05d}@example.com", **fields})
        for index in range(count)
    ]


async def idle_in_transaction(pg: asyncpg.Connection) -> int:
    """leaddb's connections to this database that sit in an open transaction."""
    value = await pg.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = 'leaddb' AND state LIKE 'idle in transaction%'"
    )
    return int(value)


def assert_leaddb_error(caught: pytest.ExceptionInfo[BaseException]) -> None:
    """The exception is one of leaddb's own classes, never a driver's."""
    assert isinstance(caught.value, LeadDBError)
    assert type(caught.value).__module__ == "leaddb.errors", type(caught.value)
