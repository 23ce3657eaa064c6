"""Filters and keyset pagination of the generic repository, on leads."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from leaddb import LeadDB
from leaddb.errors import InvalidCursorError, InvalidFilterError
from leaddb.models import Lead, LeadCreate, LeadStatus, LeadUpdate
from leaddb.repositories.filters import Eq, In, IsNull, Range
from leaddb.repositories.pagination import Page

from .factories import (
    assert_leaddb_error,
    lead_payloads,
    make_lead,
    make_org,
    make_user,
)

INJECTION = "x'); DROP TABLE leads; --"


def emails(page: Page[Lead]) -> set[str]:
    return {lead.email for lead in page.items}


async def test_keyword_filters_narrow_the_list(db: LeadDB) -> None:
    org = await make_org(db)
    owner = await make_user(db, org.id)
    now = datetime.now(UTC)
    async with db.tenant(org.id) as uow:
        for payload in [
            LeadCreate(
                email="ada@example.com",
                first_name="Ada",
                last_name="Lovelace",
                company="Analytical Engines",
                status=LeadStatus.WON,
                score=90,
                tags=["vip", "uk"],
                custom_fields={"plan": "gold", "seats": 10},
                owner_id=owner.id,
                last_engagement_at=now - timedelta(days=1),
            ),
            LeadCreate(
                email="grace@example.com",
                first_name="Grace",
                last_name="Hopper",
                company="Navy",
                status=LeadStatus.NEW,
                score=40,
                tags=["us"],
                custom_fields={"plan": "silver"},
                phone="+1 555 010 0000",
                last_engagement_at=now - timedelta(days=30),
            ),
            LeadCreate(
                email="alan@example.com",
                first_name="Alan",
                last_name="Turing",
                status=LeadStatus.QUALIFIED,
                score=20,
                tags=["uk"],
                custom_fields={"plan": "gold"},
            ),
        ]:
            await uow.leads.create(payload)
        await uow.commit()
    async with db.tenant(org.id) as uow:
        all_three = {"ada@example.com", "grace@example.com", "alan@example.com"}
        assert emails(await uow.leads.list()) == all_three
        assert emails(await uow.leads.list(status=LeadStatus.NEW)) == {"grace@example.com"}
        assert emails(await uow.leads.list(status=[LeadStatus.WON, LeadStatus.QUALIFIED])) == {
            "ada@example.com",
            "alan@example.com",
        }
        assert emails(await uow.leads.list(score=Range(gte=20, lt=90))) == {
            "grace@example.com",
            "alan@example.com",
        }
        assert emails(await uow.leads.list(score=40)) == {"grace@example.com"}
        assert emails(await uow.leads.list(owner_id=owner.id)) == {"ada@example.com"}
        assert emails(await uow.leads.list(unowned=True)) == {
            "grace@example.com",
            "alan@example.com",
        }
        assert emails(await uow.leads.list(tags_all=["vip", "uk"])) == {"ada@example.com"}
        assert emails(await uow.leads.list(tags_any=["us", "vip"])) == {
            "ada@example.com",
            "grace@example.com",
        }
        assert emails(await uow.leads.list(custom_fields={"plan": "gold"})) == {
            "ada@example.com",
            "alan@example.com",
        }
        assert emails(await uow.leads.list(custom_fields={"plan": "gold", "seats": 10})) == {
            "ada@example.com"
        }
        assert emails(await uow.leads.list(search="lovelace")) == {"ada@example.com"}
        assert emails(await uow.leads.list(search="Navy")) == {"grace@example.com"}
        assert emails(await uow.leads.list(engaged_before=now - timedelta(days=7))) == {
            "grace@example.com",
            "alan@example.com",
        }
        assert emails(await uow.leads.list(created=Range(lt=now - timedelta(days=1)))) == set()


async def test_filter_objects_narrow_list_count_and_exists(db: LeadDB) -> None:
    org = await make_org(db)
    with_phone = await make_lead(db, org.id, phone="+44 20 7946 0000", score=10)
    without = await make_lead(db, org.id, score=70)
    async with db.tenant(org.id) as uow:
        phoned = await uow.leads.list(IsNull("phone", null=False))
        assert [lead.id for lead in phoned.items] == [with_phone.id]
        assert await uow.leads.count(IsNull("phone")) == 1
        assert await uow.leads.count(In("id", [with_phone.id, without.id, uuid.uuid4()])) == 2
        assert await uow.leads.count(In("id", [])) == 0
        assert await uow.leads.count(Range(gte=50).on("score")) == 1
        assert await uow.leads.exists(Eq("score", 70), Eq("id", without.id))
        assert not await uow.leads.exists(Eq("score", 70), Eq("id", with_phone.id))


async def test_unknown_fields_and_bad_limits_are_invalid_filters(db: LeadDB) -> None:
    org = await make_org(db)
    await make_lead(db, org.id)
    async with db.tenant(org.id) as uow:
        for call in (
            uow.leads.list(Eq("nope", 1)),
            uow.leads.count(Eq("nope", 1)),
            uow.leads.exists(IsNull("nope")),
            uow.leads.list(limit=0),
            uow.leads.list(limit=10_001),
            uow.leads.list(order_by=["nope"]),
        ):
            with pytest.raises(InvalidFilterError) as caught:
                await call
            assert_leaddb_error(caught)
        with pytest.raises(InvalidFilterError):
            await uow.leads.list(search="")
        # None of that reached PostgreSQL: the transaction is still good.
        assert await uow.leads.count() == 1
        await uow.commit()


async def test_caller_strings_are_never_spliced_into_sql(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    lead = await make_lead(db, org.id, first_name="Robert")
    async with db.tenant(org.id) as uow:
        assert (await uow.leads.list(search=INJECTION)).items == []
        assert await uow.leads.count(Eq("email", INJECTION)) == 0
        assert await uow.leads.count(Eq("first_name", INJECTION)) == 0
        assert await uow.leads.count(In("last_name", [INJECTION, "'; --"])) == 0
        assert (await uow.leads.list(custom_fields={INJECTION: INJECTION})).items == []
        assert (await uow.leads.list(tags_any=[INJECTION])).items == []
        assert await uow.leads.get_by_email(INJECTION) is None
        await uow.leads.update(lead.id, LeadUpdate(last_name=INJECTION))
        await uow.commit()
    assert await pg.fetchval("SELECT to_regclass('public.leads') IS NOT NULL")
    assert await pg.fetchval("SELECT last_name FROM leads WHERE id = $1", lead.id) == INJECTION
    async with db.tenant(org.id) as uow:
        assert await uow.leads.count(Eq("last_name", INJECTION)) == 1


async def _expected_order(pg: asyncpg.Connection, org_id: uuid.UUID, desc: bool) -> list[uuid.UUID]:
    direction = "DESC" if desc else "ASC"
    rows = await pg.fetch(
        f"SELECT id FROM leads WHERE organization_id = $1 AND deleted_at IS NULL "
        f"ORDER BY created_at {direction}, id {direction}",
        org_id,
    )
    return [row["id"] for row in rows]


async def _seed_thousand(db: LeadDB, org_id: uuid.UUID) -> None:
    # Four transactions: 250 leads share each created_at, so the id must break the ties.
    for batch in range(4):
        async with db.tenant(org_id) as uow:
            await uow.leads.create_many(lead_payloads(250, prefix=f"page{batch}"))
            await uow.commit()


@pytest.mark.parametrize("descending", [False, True], ids=["ascending", "descending"])
async def test_keyset_pages_visit_every_lead_once_in_order(
    db: LeadDB, pg: asyncpg.Connection, descending: bool
) -> None:
    org = await make_org(db)
    await _seed_thousand(db, org.id)
    expected = await _expected_order(pg, org.id, descending)
    assert len(expected) == 1000
    assert (
        await pg.fetchval(
            "SELECT count(DISTINCT created_at) FROM leads WHERE organization_id = $1", org.id
        )
        == 4
    )
    seen: list[uuid.UUID] = []
    sizes: list[int] = []
    after: str | None = None
    async with db.tenant(org.id) as uow:
        while True:
            page = await uow.leads.list(limit=37, after=after, descending=descending)
            seen.extend(lead.id for lead in page.items)
            sizes.append(len(page.items))
            if page.next_cursor is None:
                break
            after = page.next_cursor
    assert seen == expected
    assert len(set(seen)) == 1000
    assert sizes == [37] * 27 + [1]


async def test_tampered_truncated_and_foreign_cursors_are_refused(db: LeadDB) -> None:
    org, other_org = await make_org(db), await make_org(db)
    async with db.tenant(org.id) as uow:
        await uow.leads.create_many(lead_payloads(4, prefix="new"))
        await uow.leads.create_many(lead_payloads(4, prefix="won", status=LeadStatus.WON))
        await uow.commit()
    async with db.tenant(other_org.id) as uow:
        await uow.leads.create_many(lead_payloads(4, prefix="theirs"))
        await uow.commit()
    async with db.tenant(org.id) as uow:
        page = await uow.leads.list(status=LeadStatus.NEW, limit=2)
        cursor = page.next_cursor
        assert cursor is not None
        # The genuine cursor works.
        rest = await uow.leads.list(status=LeadStatus.NEW, limit=2, after=cursor)
        assert len(rest.items) == 2
        middle = len(cursor) // 2
        flipped = cursor[:middle] + ("B" if cursor[middle] == "A" else "A") + cursor[middle + 1 :]
        for bad in (flipped, cursor[:-6], cursor[: len(cursor) // 3], "", "%%%not-base64%%%"):
            with pytest.raises(InvalidCursorError) as caught:
                await uow.leads.list(status=LeadStatus.NEW, limit=2, after=bad)
            assert_leaddb_error(caught)
        with pytest.raises(InvalidCursorError):
            await uow.leads.list(status=LeadStatus.WON, limit=2, after=cursor)
        with pytest.raises(InvalidCursorError):
            await uow.leads.list(status=LeadStatus.NEW, limit=2, after=cursor, descending=True)
        # No SQL failed: the transaction is still usable.
        assert await uow.leads.count() == 8
        await uow.commit()
    async with db.tenant(other_org.id) as uow:
        with pytest.raises(InvalidCursorError):
            await uow.leads.list(status=LeadStatus.NEW, limit=2, after=cursor)
        assert await uow.leads.count() == 4
        await uow.commit()
