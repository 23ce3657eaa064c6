"""create_many's small-batch path against real PostgreSQL: one statement whatever the count,
every column type stored as ``create`` stores it, rows returned in the caller's order."""

from __future__ import annotations

import datetime
from decimal import Decimal

import asyncpg
from asyncpg.connection import LoggedQuery
from cryptography.fernet import Fernet
from pydantic import SecretStr

from leaddb import LeadDB, LeadDBSettings
from leaddb.models import (
    IntegrationCreate,
    IntegrationProvider,
    LeadCreate,
    LeadSource,
    LeadStatus,
    LeadUpdate,
)
from leaddb.repositories.inserts import COPY_THRESHOLD

from .factories import lead_payloads, make_org, make_user


def _varied_leads(owner: object, count: int) -> list[LeadCreate]:
    """Leads that use every kind of column: money, dates, offsets other than UTC, arrays, JSON."""
    plus_five = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
    engaged = datetime.datetime(2026, 11, 1, 9, 30, 0, 123456, plus_five)
    return [
        LeadCreate.model_validate(
            {
                "email": f"varied-{index}@example.com",
                "first_name": f"Zoë {index}",
                "company": "Ünïcode & Co" if index % 2 else None,
                "source": LeadSource.REFERRAL,
                "status": LeadStatus.QUALIFIED,
                "score": index,
                "estimated_value": Decimal("1234.50") + index,
                "expected_close_date": datetime.date(2027, 1, 1 + index),
                "last_engagement_at": engaged + datetime.timedelta(seconds=index),
                "owner_id": owner if index % 2 else None,
                "tags": ["vip", f"tag-{index}", 'quote"d'] if index % 3 else [],
                "custom_fields": {"nested": {"list": [1, 2.5, None, "x"]}, "index": index},
            }
        )
        for index in range(count)
    ]


async def test_a_small_batch_is_one_statement_returned_in_the_callers_order(db: LeadDB) -> None:
    org = await make_org(db)
    owner = await make_user(db, org.id)
    warm_up, *payloads = _varied_leads(owner.id, 8)
    async with db.tenant(org.id) as uow:
        connection = await uow.connection()
        # Once first, so asyncpg's one-off type introspection of this connection is done.
        await uow.leads.create_many([warm_up])
        statements: list[str] = []

        def log(record: LoggedQuery) -> None:
            statements.append(record.query)

        connection.add_query_logger(log)
        created = await uow.leads.create_many(payloads)
        connection.remove_query_logger(log)
        await uow.commit()
    assert len(statements) == 1
    assert [lead.email for lead in created] == [payload.email for payload in payloads]
    async with db.tenant(org.id) as uow:
        stored = {lead.id: lead for lead in await uow.leads.get_many([c.id for c in created])}
    for lead, payload in zip(created, payloads, strict=True):
        assert stored[lead.id] == lead
        for field in payload.model_fields_set:
            assert getattr(lead, field) == getattr(payload, field), field


async def test_a_small_batch_stores_what_create_stores(db: LeadDB, pg: asyncpg.Connection) -> None:
    org = await make_org(db)
    owner = await make_user(db, org.id)
    one, *rest = _varied_leads(owner.id, 4)
    async with db.tenant(org.id) as uow:
        single = await uow.leads.create(one)
        many = await uow.leads.create_many(rest)
        await uow.commit()
    compared = ("status", "score", "estimated_value", "tags", "custom_fields", "owner_id")
    for lead in many:
        assert lead.version == 1
        assert lead.organization_id == org.id
        assert lead.created_at == single.created_at  # the same transaction's now()
        assert type(lead.estimated_value) is Decimal
        for field in compared:
            assert type(getattr(lead, field)) is type(getattr(single, field)) or (
                getattr(lead, field) is None or getattr(single, field) is None
            )
    audited = await pg.fetch(
        "SELECT entity_id, changes FROM activity_logs WHERE organization_id = $1 "
        "AND entity_type = 'lead' AND action = 'created'",
        org.id,
    )
    assert {row["entity_id"] for row in audited} == {single.id, *(lead.id for lead in many)}


async def test_a_small_batch_of_integrations_encrypts_their_credentials(
    settings: LeadDBSettings,
) -> None:
    key = SecretStr(Fernet.generate_key().decode())
    async with await LeadDB.connect(settings.model_copy(update={"credentials_key": key})) as db:
        await _integrations_round_trip(db)


async def _integrations_round_trip(db: LeadDB) -> None:
    org = await make_org(db)
    payloads = [
        IntegrationCreate(
            provider=IntegrationProvider.HUBSPOT,
            name=f"hub {index}",
            credentials={"api_key": SecretStr(f"secret-{index}")},
        )
        for index in range(3)
    ]
    async with db.tenant(org.id) as uow:
        created = await uow.integrations.create_many(payloads)
        await uow.commit()
    async with db.tenant(org.id) as uow:
        for index, integration in enumerate(created):
            secrets = await uow.integrations.credentials(integration.id)
            assert secrets["api_key"].get_secret_value() == f"secret-{index}"


async def test_the_batch_just_below_the_copy_threshold_and_just_at_it_agree(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    async with db.tenant(org.id) as uow:
        few = await uow.leads.create_many(lead_payloads(COPY_THRESHOLD - 1, prefix="few"))
        many = await uow.leads.create_many(lead_payloads(COPY_THRESHOLD, prefix="many"))
        await uow.commit()
    assert len(few) == COPY_THRESHOLD - 1
    assert len(many) == COPY_THRESHOLD
    fields = set(few[0].model_dump()) - {"id", "email", "created_at", "updated_at"}
    assert few[0].model_dump(include=fields) == many[0].model_dump(include=fields)
    logged = await pg.fetchval(
        "SELECT count(*) FROM activity_logs WHERE organization_id = $1 AND action = 'created' "
        "AND entity_type = 'lead'",
        org.id,
    )
    assert logged == 2 * COPY_THRESHOLD - 1


async def test_update_many_is_one_statement_with_an_audit_row_per_changed_row(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org, other = await make_org(db), await make_org(db)
    async with db.tenant(org.id) as uow:
        leads = await uow.leads.create_many(lead_payloads(300, prefix="mine"))
        await uow.leads.delete(leads[0].id)
        await uow.commit()
    async with db.tenant(other.id) as uow:
        (theirs,) = await uow.leads.create_many(lead_payloads(1, prefix="theirs"))
        await uow.commit()
    wanted = [theirs.id, *(lead.id for lead in reversed(leads)), leads[5].id]
    async with db.tenant(org.id) as uow:
        connection = await uow.connection()
        await uow.leads.update_many([leads[1].id], LeadUpdate(score=1))  # prepares the statement
        statements: list[str] = []

        def log(record: LoggedQuery) -> None:
            statements.append(record.query)

        connection.add_query_logger(log)
        updated = await uow.leads.update_many(wanted, LeadUpdate(score=42))
        connection.remove_query_logger(log)
        await uow.commit()
    assert len(statements) == 1
    # The deleted lead and the other tenant's are left out; the order is the caller's.
    assert [lead.id for lead in updated] == [lead.id for lead in reversed(leads[1:])]
    assert all(lead.score == 42 for lead in updated)
    assert {lead.id: lead.version for lead in updated}[leads[1].id] == 3
    assert all(lead.version == 2 for lead in updated if lead.id != leads[1].id)
    async with db.tenant(other.id) as uow:
        assert (await uow.leads.get_one(theirs.id)).score == theirs.score
    logged = await pg.fetch(
        "SELECT (changes -> 'before' ->> 'score')::int AS before FROM activity_logs "
        "WHERE organization_id = $1 AND action = 'updated' "
        "AND entity_type = 'lead' AND changes -> 'after' ->> 'score' = '42'",
        org.id,
    )
    assert len(logged) == 299
    assert all(row["before"] != 42 for row in logged)
