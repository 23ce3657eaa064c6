"""Keyset pagination in any order a caller may ask for: nullable columns (NULLs sort last going
up, first going down, as PostgreSQL sorts them), enums, booleans, text; and the orders that are
refused up front because a cursor cannot carry them (JSON, arrays, bytes, secrets)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leaddb import LeadDB
from leaddb.errors import InvalidFilterError, InvalidValueError, LeadDBError
from leaddb.models import (
    CampaignCreate,
    IntegrationCreate,
    IntegrationProvider,
    LeadCreate,
    LeadStatus,
    UserCreate,
)
from leaddb.repositories.filters import Eq, In, IsNull, Range

from .factories import make_org, make_user

# Nullable and repeated values, so that page boundaries fall inside runs of equal values and on
# NULLs; text with mixed case so that the collation's order matters.
COMPANIES = [None, "acme", "Acme", "zeta", None, "beta"]
DAY = datetime(2024, 1, 1, tzinfo=UTC)
ORDERABLE = [
    "last_engagement_at",
    "expected_close_date",
    "estimated_value",
    "company",
    "score",
    "status",
    "owner_id",
    "created_at",
]


async def _seed(db: LeadDB, count: int) -> uuid.UUID:
    org = await make_org(db)
    owner = await make_user(db, org.id)
    async with db.tenant(org.id) as uow:
        await uow.leads.create_many(
            [
                LeadCreate(
                    email=f"lead{index}@example.com",
                    company=COMPANIES[index % len(COMPANIES)],
                    score=(index * 7) % 4 * 10,
                    status=list(LeadStatus)[index % 3],
                    last_engagement_at=None if index % 3 == 0 else DAY + timedelta(days=index % 4),
                    expected_close_date=None if index % 4 == 1 else date(2024, 6, 1 + index % 2),
                    estimated_value=None if index % 2 else Decimal(index % 3),
                    owner_id=owner.id if index % 5 == 0 else None,
                )
                for index in range(count)
            ]
        )
        await uow.commit()
    return org.id


async def _expected(
    pg: asyncpg.Connection, org: uuid.UUID, order: list[str], descending: bool
) -> list[uuid.UUID]:
    """PostgreSQL's own order of the same rows (NULLs in its default place)."""
    direction = " DESC" if descending else ""
    keys = ", ".join(f"{name}{direction}" for name in [*order, "id"])
    rows = await pg.fetch(
        f"SELECT id FROM leads WHERE organization_id = $1 AND deleted_at IS NULL ORDER BY {keys}",
        org,
    )
    return [row["id"] for row in rows]


async def _walk(
    db: LeadDB, org: uuid.UUID, order: list[str], descending: bool, limit: int
) -> list[uuid.UUID]:
    seen: list[uuid.UUID] = []
    after: str | None = None
    async with db.tenant(org) as uow:
        while True:
            page = await uow.leads.list(
                limit=limit, after=after, order_by=order, descending=descending
            )
            seen.extend(lead.id for lead in page.items)
            if page.next_cursor is None:
                return seen
            after = page.next_cursor


@pytest.mark.parametrize("descending", [False, True], ids=["up", "down"])
async def test_pages_ordered_by_a_nullable_column_go_past_the_nulls(
    db: LeadDB, pg: asyncpg.Connection, descending: bool
) -> None:
    org = await _seed(db, 13)
    for limit in (1, 2, 5):
        walked = await _walk(db, org, ["last_engagement_at"], descending, limit)
        assert walked == await _expected(pg, org, ["last_engagement_at"], descending)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    order=st.lists(st.sampled_from(ORDERABLE), min_size=1, max_size=3, unique=True),
    descending=st.booleans(),
    limit=st.integers(min_value=1, max_value=7),
)
async def test_every_orderable_column_pages_like_postgresql_orders(
    db: LeadDB,
    pg: asyncpg.Connection,
    seeded: uuid.UUID,
    order: list[str],
    descending: bool,
    limit: int,
) -> None:
    walked = await _walk(db, seeded, order, descending, limit)
    assert walked == await _expected(pg, seeded, order, descending)


@pytest.fixture
async def seeded(db: LeadDB) -> uuid.UUID:
    return await _seed(db, 17)


async def test_boolean_and_enum_orders_go_past_page_one(db: LeadDB) -> None:
    org = await make_org(db)
    async with db.tenant(org.id) as uow:
        for index in range(5):
            await uow.users.create(
                UserCreate(email=f"u{index}@example.com", full_name="U", is_active=index % 2 == 0)
            )
        await uow.commit()
    async with db.tenant(org.id) as uow:
        for order in (["is_active"], ["role", "is_active"]):
            first = await uow.users.list(limit=2, order_by=order)
            assert first.next_cursor is not None
            rest = await uow.users.list(limit=10, order_by=order, after=first.next_cursor)
            everyone = {user.id for user in first.items} | {user.id for user in rest.items}
            assert len(everyone) == 5


@pytest.mark.parametrize("column", ["custom_fields", "tags"])
async def test_orders_without_a_keyset_are_refused_naming_the_column(
    db: LeadDB, column: str
) -> None:
    org = await _seed(db, 3)
    async with db.tenant(org) as uow:
        with pytest.raises(InvalidValueError) as caught:
            await uow.leads.list(order_by=[column], limit=1)
        assert caught.value.field == column
        assert column in str(caught.value)
        # Refused before any SQL: the transaction is still usable.
        assert await uow.leads.count() == 3


async def test_secret_columns_are_never_ordered_or_filtered_on(db: LeadDB) -> None:
    org = await make_org(db)
    await make_user(db, org.id)
    async with db.tenant(org.id) as uow:
        await uow.integrations.create(
            IntegrationCreate(provider=IntegrationProvider.HUBSPOT, name="CRM")
        )
        calls = [
            uow.users.list(order_by=["password_hash"]),
            uow.users.list(order_by=["email", "password_hash"]),
            uow.users.list(Eq("password_hash", "$argon2id$guess")),
            uow.users.count(Range(gte=0).on("password_hash")),
            uow.users.exists(IsNull("password_hash", null=False)),
            uow.users.count(In("password_hash", ["a", "b"])),
            uow.integrations.list(order_by=["credentials_encrypted"]),
            uow.integrations.count(Eq("credentials_encrypted", b"x")),
            uow.integrations.exists(IsNull("credentials_encrypted")),
        ]
        for call in calls:
            with pytest.raises(InvalidFilterError) as caught:
                await call
            assert "secret" in str(caught.value)
        with pytest.raises(InvalidFilterError) as unknown:
            await uow.users.list(Eq("nope", 1))
        assert "password_hash" not in str(unknown.value)
        await uow.commit()


async def test_enroll_beyond_the_limit_is_a_leaddb_error(db: LeadDB) -> None:
    org = await make_org(db)
    async with db.tenant(org.id) as uow:
        campaign = await uow.campaigns.create(CampaignCreate(name="Big"))
        with pytest.raises(InvalidValueError) as caught:
            await uow.campaigns.enroll(campaign.id, [uuid.uuid4() for _ in range(50_001)])
        assert caught.value.field == "lead_ids"
        assert isinstance(caught.value, LeadDBError)
        assert await uow.campaigns.get(campaign.id) is not None
