"""create_many's large-batch path against real PostgreSQL: COPY in chunks, each chunk's audit
images built in Python, the whole batch or none of it."""

from __future__ import annotations

import asyncio
import datetime
import gc
import itertools
import uuid
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
import pytest

from leaddb import LeadDB, LeadDBSettings
from leaddb.errors import InvalidFilterError, InvalidValueError, TenantViolationError
from leaddb.models import Lead, LeadCreate, LeadSource, LeadStatus, UserCreate
from leaddb.repositories.bulk import CopiedInsert, chunk_bounds, jsonb_key_order
from leaddb.repositories.collector import CollectorPause

from .factories import lead_payloads, make_org, make_user

# Three chunks: the first two small ones and part of a full one.
BATCH = 2_300


class LeadImport(LeadCreate):
    """A caller's own payload type that carries an organization (e.g. from an import file)."""

    organization_id: uuid.UUID


class LeadOfMine(LeadCreate):
    """A caller's subclass with no field of its own: not the batch's schema, the same columns."""


def _same_json(audited: object, stored: object) -> bool:
    """Equal as the values they spell: timestamps may differ in how many fractional zeros
    they write, numbers in their trailing zeros (jsonb compares those numerically already)."""
    if isinstance(audited, dict) and isinstance(stored, dict):
        return audited.keys() == stored.keys() and all(
            _same_json(audited[key], stored[key]) for key in audited
        )
    if isinstance(audited, list) and isinstance(stored, list):
        return len(audited) == len(stored) and all(map(_same_json, audited, stored))
    if isinstance(audited, str) and isinstance(stored, str) and audited != stored:
        try:
            return datetime.datetime.fromisoformat(audited) == datetime.datetime.fromisoformat(
                stored
            )
        except ValueError:
            return False
    if isinstance(audited, bool) or isinstance(stored, bool):
        return audited is stored
    if isinstance(audited, int | float | Decimal) and isinstance(stored, int | float | Decimal):
        return Decimal(str(audited)) == Decimal(str(stored))
    return audited == stored


def _varied(count: int, owner: uuid.UUID) -> list[LeadCreate]:
    plus_five = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
    return [
        LeadCreate(
            email=f"bulk-{index}@example.com",
            first_name=f"Zoë {index}",
            source=LeadSource.REFERRAL,
            status=LeadStatus.QUALIFIED,
            score=index % 101,
            estimated_value=Decimal("1234.50") + index,
            expected_close_date=datetime.date(2027, 1, 1) + datetime.timedelta(days=index % 300),
            last_engagement_at=datetime.datetime(2026, 11, 1, 9, 30, 0, 120000, plus_five)
            + datetime.timedelta(seconds=index),
            owner_id=owner if index % 2 else None,
            tags=["vip", f"tag-{index}", 'quote"d'] if index % 3 else [],
            custom_fields={"nested": {"list": [1, 2.5, None, "x"]}, "index": index},
        )
        for index in range(count)
    ]


def test_the_test_batch_spans_several_chunks() -> None:
    assert len(chunk_bounds(BATCH)) == 3


async def test_a_large_batch_is_stored_whole_in_order_with_audit_images_of_the_stored_rows(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    owner = await make_user(db, org.id)
    payloads = _varied(BATCH, owner.id)
    async with db.tenant(org.id, actor=owner.id) as uow:
        created = await uow.leads.create_many(payloads)
        await uow.commit()
    assert [lead.email for lead in created] == [payload.email for payload in payloads]
    await _assert_stored_as_returned(db, org.id, created)
    rows = await pg.fetch(
        "SELECT a.changes, a.actor_user_id, to_jsonb(l) AS row FROM activity_logs a "
        "JOIN leads l ON l.organization_id = a.organization_id AND l.id = a.entity_id "
        "WHERE a.organization_id = $1 AND a.entity_type = 'lead' AND a.action = 'created'",
        org.id,
    )
    assert len(rows) == BATCH
    # The images are sent with their keys in the order jsonb keeps them (so that PostgreSQL
    # need not sort them): jsonb_object_keys lists them in that kept order.
    kept_order = await pg.fetchval(
        "SELECT array(SELECT jsonb_object_keys(a.changes -> 'after')) FROM activity_logs a "
        "WHERE a.organization_id = $1 AND a.entity_type = 'lead' AND a.action = 'created' LIMIT 1",
        org.id,
    )
    assert len(kept_order) > 20
    assert tuple(kept_order) == jsonb_key_order(kept_order)
    for row in rows:
        changes: dict[str, Any] = orjson.loads(row["changes"])
        stored_row = orjson.loads(row["row"])
        assert set(changes) == {"after"}
        assert _same_json(changes["after"], stored_row), (changes["after"], stored_row)
        assert row["actor_user_id"] == owner.id


async def _assert_stored_as_returned(db: LeadDB, org: uuid.UUID, created: list[Lead]) -> None:
    """What a later unit of work reads of the created leads is what create_many returned."""
    async with db.tenant(org) as uow:
        stored = await uow.leads.get_many([lead.id for lead in created])
    assert [lead.model_dump() if lead else None for lead in stored] == [
        lead.model_dump() for lead in created
    ]


async def _audited_as_stored(pg: asyncpg.Connection, org: uuid.UUID) -> int:
    """How many created leads of ``org`` there are, asserting each audit image is its row."""
    rows = await pg.fetch(
        "SELECT a.changes, to_jsonb(l) AS row FROM activity_logs a "
        "JOIN leads l ON l.organization_id = a.organization_id AND l.id = a.entity_id "
        "WHERE a.organization_id = $1 AND a.entity_type = 'lead' AND a.action = 'created'",
        org,
    )
    for row in rows:
        after = orjson.loads(row["changes"])["after"]
        assert _same_json(after, orjson.loads(row["row"])), (after, row["row"])
    return len(rows)


async def test_which_schemas_are_checked_in_place(db: LeadDB) -> None:
    org = await make_org(db)
    async with db.tenant(org.id) as uow:
        # LeadCreate: flat, no tenant or immutable field, a repository that keeps values.
        assert uow.leads._plain_fields(LeadCreate) == tuple(LeadCreate.model_fields)
        # A payload that names its organization is checked against the unit's tenant.
        assert uow.leads._plain_fields(LeadImport) is None
        # Users hash their passwords (prepare_values): their values are not the payload's.
        assert uow.users._plain_fields(UserCreate) is None


async def test_items_of_another_type_among_plain_ones_are_stored_alike(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    owner = await make_user(db, org.id)
    payloads: list[LeadCreate] = _varied(BATCH, owner.id)
    for index in (1, 300, 2_000, BATCH - 1):  # in the first, second and last chunks
        payloads[index] = LeadOfMine.model_validate(payloads[index].model_dump())
    async with db.tenant(org.id, actor=owner.id) as uow:
        created = await uow.leads.create_many(payloads)
        await uow.commit()
    assert [lead.model_dump(exclude={"id", "created_at", "updated_at"}) for lead in created] == [
        {
            **payload.model_dump(),
            "organization_id": org.id,
            "version": 1,
            "deleted_at": None,
        }
        for payload in payloads
    ]
    await _assert_stored_as_returned(db, org.id, created)
    assert await _audited_as_stored(pg, org.id) == BATCH


async def test_items_changed_by_the_caller_while_the_batch_runs_do_not_split_rows_from_models(
    db: LeadDB, pg: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = await make_org(db)
    payloads = lead_payloads(BATCH, prefix="moving")
    copy = CopiedInsert._copy
    copies = 0

    async def copying(insert: CopiedInsert, records: Any, columns: list[str]) -> None:
        # Another task of the caller's changes every item while the batch is under way.
        nonlocal copies
        copies += 1
        for payload in payloads:
            payload.first_name = f"changed before copy {copies}"
        await copy(insert, records, columns)

    monkeypatch.setattr(CopiedInsert, "_copy", copying)
    async with db.tenant(org.id) as uow:
        created = await uow.leads.create_many(payloads)
        await uow.commit()
    assert copies == len(chunk_bounds(BATCH))
    # Each chunk as its items were when it was read (the first before any change).
    assert created[0].first_name is None
    assert created[-1].first_name == f"changed before copy {copies - 1}"
    await _assert_stored_as_returned(db, org.id, created)
    assert await _audited_as_stored(pg, org.id) == BATCH


async def test_an_item_missing_a_field_is_refused_as_of_another_schema(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    payloads = lead_payloads(BATCH, prefix="partial")
    # Built without validation and without its email: not the batch's columns.
    payloads[1_900] = LeadCreate.model_construct(first_name="No Email")
    async with db.tenant(org.id) as uow:
        with pytest.raises(InvalidFilterError, match="one schema"):
            await uow.leads.create_many(payloads)
        await uow.commit()
    assert await pg.fetchval("SELECT count(*) FROM leads WHERE organization_id = $1", org.id) == 0
    # A bad value further in the same chunk is what is reported, as for any schema: a chunk's
    # items are all checked before their columns are compared.
    payloads[2_000] = payloads[2_000].model_copy(update={"first_name": "nul\x00byte"})
    async with db.tenant(org.id) as uow:
        with pytest.raises(InvalidValueError, match="NUL"):
            await uow.leads.create_many(payloads)


async def test_a_bad_value_in_a_later_chunk_leaves_none_of_the_batch_and_the_unit_usable(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    payloads = lead_payloads(BATCH, prefix="bad")
    payloads[-5] = payloads[-5].model_copy(update={"first_name": "nul\x00byte"})
    async with db.tenant(org.id) as uow:
        with pytest.raises(InvalidValueError, match="NUL"):
            await uow.leads.create_many(payloads)
        survivor = await uow.leads.create(LeadCreate(email="after-the-refusal@example.com"))
        await uow.commit()
    emails = await pg.fetch("SELECT email FROM leads WHERE organization_id = $1", org.id)
    assert [row["email"] for row in emails] == [survivor.email]
    logged = await pg.fetchval(
        "SELECT count(*) FROM activity_logs WHERE organization_id = $1 AND entity_type = 'lead'",
        org.id,
    )
    assert logged == 1


async def test_another_tenants_row_in_a_later_chunk_is_refused_before_commit(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org, other = await make_org(db), await make_org(db)
    payloads = [
        LeadImport(email=f"tenant-{index}@example.com", organization_id=org.id)
        for index in range(BATCH)
    ]
    payloads[1_700] = LeadImport(email="theirs@example.com", organization_id=other.id)
    async with db.tenant(org.id) as uow:
        with pytest.raises(TenantViolationError):
            await uow.leads.create_many(payloads)
        await uow.commit()
    assert await pg.fetchval("SELECT count(*) FROM leads") == 0


async def test_a_batch_cancelled_at_any_point_leaves_nothing_and_a_clean_pool(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    payloads = lead_payloads(BATCH, prefix="cancel")
    cancelled = 0
    for delay in (0.0, 0.01, 0.03, 0.06, 0.1, 0.2):

        async def batch() -> None:
            async with db.tenant(org.id) as uow:
                await uow.leads.create_many(payloads)
                await uow.commit()

        task = asyncio.ensure_future(batch())
        await asyncio.sleep(delay)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            cancelled += 1
        if await pg.fetchval("SELECT count(*) FROM leads WHERE organization_id = $1", org.id):
            # Committed before the cancellation arrived: whole, then, and cleared for the next.
            assert (
                await pg.fetchval("SELECT count(*) FROM leads WHERE organization_id = $1", org.id)
                == BATCH
            )
            await pg.execute("DELETE FROM leads WHERE organization_id = $1", org.id)
        assert db._pool.get_idle_size() == db._pool.get_size()
    assert cancelled >= 3
    # The pool's connections are all usable: as many units of work as it holds, at once.
    async with asyncio.TaskGroup() as group:
        for _ in range(db._pool.get_size()):
            group.create_task(_one_lead(db, org.id))
    assert await pg.fetchval("SELECT count(*) FROM leads WHERE organization_id = $1", org.id) == (
        db._pool.get_size()
    )
    in_transaction = await pg.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = 'leaddb' "
        "AND state LIKE 'idle in transaction%'"
    )
    assert in_transaction == 0


async def _one_lead(db: LeadDB, org_id: uuid.UUID) -> None:
    async with db.tenant(org_id) as uow:
        await uow.leads.create(LeadCreate(email=f"{uuid.uuid4().hex}@example.com"))
        await uow.commit()


async def test_create_one_audits_the_stored_row_without_its_secrets(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    user = await make_user(db, org.id, password="correct horse battery staple")
    (payload,) = _varied(1, user.id)
    async with db.tenant(org.id) as uow:
        lead = await uow.leads.create(payload)
        await uow.commit()
    for table, entity_id in (("leads", lead.id), ("users", user.id)):
        row = await pg.fetchrow(
            f"SELECT a.changes, to_jsonb(t) - 'password_hash' AS row FROM activity_logs a "
            f"JOIN {table} t ON t.organization_id = a.organization_id AND t.id = a.entity_id "
            "WHERE a.entity_id = $1 AND a.action = 'created'",
            entity_id,
        )
        assert row is not None
        changes = orjson.loads(row["changes"])
        assert "password_hash" not in changes["after"]
        assert _same_json(changes["after"], orjson.loads(row["row"])), changes


async def _collections_before_the_last_chunk(
    db: LeadDB, rows: int, monkeypatch: pytest.MonkeyPatch, events: list[str] | None = None
) -> tuple[int, int]:
    """How many collections the collector started on its own while a create_many of ``rows``
    leads built its chunks, and after (its first threshold set low enough to start one every
    50 allocations). ``events`` receives what happened, in order: "building", "copy" for each
    chunk sent, "built" and "collection"."""
    org = await make_org(db)
    payloads = lead_payloads(rows, prefix=f"gc-{org.id.hex[:6]}")
    events = [] if events is None else events
    enter, end, copy = CollectorPause.__enter__, CollectorPause.end, CopiedInsert._copy

    def entering(pause: CollectorPause) -> CollectorPause:
        events.append("building")
        return enter(pause)

    def ending(pause: CollectorPause) -> None:
        events.append("built")
        end(pause)

    def seen(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            events.append("collection")

    async def copying(insert: CopiedInsert, records: list[Any], columns: list[str]) -> None:
        events.append("copy")
        await copy(insert, records, columns)

    monkeypatch.setattr(CollectorPause, "__enter__", entering)
    monkeypatch.setattr(CollectorPause, "end", ending)
    monkeypatch.setattr(CopiedInsert, "_copy", copying)
    thresholds = gc.get_threshold()
    gc.collect()
    gc.callbacks.append(seen)
    gc.set_threshold(50, thresholds[1], thresholds[2])
    try:
        async with db.tenant(org.id) as uow:
            await uow.leads.create_many(payloads)
            await uow.commit()
    finally:
        gc.set_threshold(*thresholds)
        gc.callbacks.remove(seen)
    assert gc.isenabled()
    building, built = events.index("building"), events.index("built")
    return events[building:built].count("collection"), events[built:].count("collection")


async def test_by_default_a_large_batch_leaves_the_processs_collector_alone(
    db: LeadDB, settings: LeadDBSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert settings.bulk_pauses_gc is False
    events: list[str] = []
    before, _ = await _collections_before_the_last_chunk(db, BATCH, monkeypatch, events)
    assert before > 0
    # Collections all along, as without leaddb: while each chunk after the first is built.
    copies = [index for index, event in enumerate(events) if event == "copy"]
    assert len(copies) == len(chunk_bounds(BATCH)) > 1
    for start, stop in itertools.pairwise(copies):
        assert "collection" in events[start:stop], events


async def test_a_large_batch_asked_to_holds_the_collector_back_until_its_last_chunk_is_sent(
    settings: LeadDBSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    async with await LeadDB.connect(settings.model_copy(update={"bulk_pauses_gc": True})) as db:
        before, after = await _collections_before_the_last_chunk(db, BATCH, monkeypatch, events)
    assert before == 0
    assert after > 0  # the collector runs again once the rows are built
    # ... and only once the last chunk is sent: its first run, over the whole batch, then
    # overlaps the last insert instead of delaying that chunk's COPY.
    copies = [index for index, event in enumerate(events) if event == "copy"]
    assert len(copies) == len(chunk_bounds(BATCH)) > 1
    assert copies[-1] < events.index("built")


async def test_a_batch_that_fails_switches_the_collector_back_on(settings: LeadDBSettings) -> None:
    async with await LeadDB.connect(settings.model_copy(update={"bulk_pauses_gc": True})) as db:
        org = await make_org(db)
        payloads = lead_payloads(BATCH, prefix="gc-fail")
        payloads[-1] = payloads[-1].model_copy(update={"first_name": "nul\x00byte"})
        async with db.tenant(org.id) as uow:
            with pytest.raises(InvalidValueError):
                await uow.leads.create_many(payloads)
            assert gc.isenabled()
