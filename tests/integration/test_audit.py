"""The audit trail: one activity_logs row per write, in the same transaction, with the actor and
the changed fields before and after; nothing for rolled-back work; never a secret."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from cryptography.fernet import Fernet
from pydantic import SecretStr

from leaddb import LeadDB, LeadDBSettings
from leaddb.models import (
    ActivityAction,
    Integration,
    IntegrationCreate,
    IntegrationProvider,
    IntegrationRead,
    IntegrationUpdate,
    LeadCreate,
    LeadNoteCreate,
    LeadUpdate,
    User,
    UserCreate,
    UserRead,
    UserUpdate,
)

from .factories import PASSWORD, make_lead, make_org, make_user

API_KEY = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
NEW_PASSWORD = "a brand new passphrase 99"
ROTATED_KEY = API_KEY + "-rotated"


class AuditLog:
    """Reads one entity's activity rows and hands back the ones added since the last look."""

    def __init__(self, pg: asyncpg.Connection, entity_id: uuid.UUID) -> None:
        self._pg = pg
        self._entity_id = entity_id
        self._seen: set[uuid.UUID] = set()

    async def new_rows(self) -> list[dict[str, Any]]:
        rows = await self._pg.fetch(
            "SELECT id, organization_id, actor_user_id, entity_type, entity_id, "
            "action::text AS action, changes::text AS changes FROM activity_logs "
            "WHERE entity_id = $1",
            self._entity_id,
        )
        fresh = [
            {**dict(row), "changes": json.loads(row["changes"])}
            for row in rows
            if row["id"] not in self._seen
        ]
        self._seen.update(row["id"] for row in rows)
        return fresh

    async def one_new(self, action: str) -> dict[str, Any]:
        fresh = await self.new_rows()
        assert len(fresh) == 1, fresh
        assert fresh[0]["action"] == action
        return fresh[0]


async def test_every_write_logs_one_row_with_actor_and_the_patched_fields(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    actor = await make_user(db, org.id)
    async with db.tenant(org.id, actor=actor.id) as uow:
        lead = await uow.leads.create(LeadCreate(email="ada@example.com", first_name="Ada"))
        await uow.commit()
    log = AuditLog(pg, lead.id)
    created = await log.one_new("created")
    assert (created["organization_id"], created["actor_user_id"]) == (org.id, actor.id)
    assert (created["entity_type"], created["entity_id"]) == ("lead", lead.id)
    assert created["changes"]["after"]["email"] == "ada@example.com"
    assert created["changes"]["after"]["first_name"] == "Ada"

    async with db.tenant(org.id, actor=actor.id) as uow:
        await uow.leads.update(lead.id, LeadUpdate(first_name="Augusta", score=50, phone=None))
        await uow.commit()
    updated = await log.one_new("updated")
    assert updated["actor_user_id"] == actor.id
    assert updated["changes"] == {
        "before": {"first_name": "Ada", "score": 0, "phone": None},
        "after": {"first_name": "Augusta", "score": 50, "phone": None},
    }

    async with db.tenant(org.id, actor=actor.id) as uow:
        await uow.leads.delete(lead.id)
        await uow.commit()
    deleted = await log.one_new("deleted")
    assert set(deleted["changes"]["before"]) == set(deleted["changes"]["after"]) == {"deleted_at"}
    assert deleted["changes"]["before"]["deleted_at"] is None
    assert deleted["changes"]["after"]["deleted_at"] is not None

    async with db.tenant(org.id, actor=actor.id) as uow:
        await uow.leads.restore(lead.id)
        await uow.commit()
    restored = await log.one_new("restored")
    assert restored["changes"]["after"]["deleted_at"] is None
    assert restored["actor_user_id"] == actor.id

    async with db.tenant(org.id, actor=actor.id) as uow:
        await uow.leads.upsert(LeadCreate(email="ADA@example.com", first_name="Ada"))
        await uow.commit()
    upserted = await log.one_new("updated")
    assert upserted["actor_user_id"] == actor.id
    assert upserted["changes"]["after"]["first_name"] == "Ada"


async def test_an_upsert_that_creates_logs_created_and_one_that_updates_logs_before_and_after(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    async with db.tenant(org.id) as uow:
        lead = await uow.leads.upsert(LeadCreate(email="grace@example.com", first_name="Grace"))
        await uow.commit()
    log = AuditLog(pg, lead.id)
    created = await log.one_new("created")
    assert created["changes"]["after"]["first_name"] == "Grace"
    async with db.tenant(org.id) as uow:
        await uow.leads.upsert(LeadCreate(email="grace@example.com", first_name="Admiral"))
        await uow.commit()
    updated = await log.one_new("updated")
    assert updated["changes"]["after"]["first_name"] == "Admiral"
    assert updated["changes"]["before"]["first_name"] == "Grace"


async def test_hard_deleting_a_note_logs_its_last_state(db: LeadDB, pg: asyncpg.Connection) -> None:
    org = await make_org(db)
    lead = await make_lead(db, org.id)
    async with db.tenant(org.id) as uow:
        note = await uow.notes.create(LeadNoteCreate(lead_id=lead.id, body="Prefers email"))
        await uow.commit()
    log = AuditLog(pg, note.id)
    assert (await log.one_new("created"))["entity_type"] == "lead_note"
    async with db.tenant(org.id) as uow:
        await uow.notes.delete(note.id)
        await uow.commit()
    deleted = await log.one_new("deleted")
    assert deleted["changes"]["before"]["body"] == "Prefers email"


async def test_the_audit_row_is_written_with_the_change_and_rolled_back_with_it(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    lead = await make_lead(db, org.id)
    log = AuditLog(pg, lead.id)
    await log.one_new("created")
    async with db.tenant(org.id) as uow:
        await uow.leads.update(lead.id, LeadUpdate(score=77))
        await uow.leads.delete(lead.id)
        draft = await uow.leads.create(LeadCreate(email="draft@example.com"))
        # Not visible outside the transaction yet...
        assert await log.new_rows() == []
        # ...but inside it, next to the change it describes.
        history = await uow.activity.for_entity("lead", lead.id)
        assert [item.action for item in history.items] == [
            ActivityAction.CREATED,
            ActivityAction.UPDATED,
            ActivityAction.DELETED,
        ]
    assert await log.new_rows() == []
    assert await AuditLog(pg, draft.id).new_rows() == []
    async with db.tenant(org.id) as uow:
        history = await uow.activity.for_entity("lead", lead.id)
        assert [item.action for item in history.items] == [ActivityAction.CREATED]


async def test_update_many_logs_one_row_per_changed_lead(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    leads = [await make_lead(db, org.id) for _ in range(3)]
    async with db.tenant(org.id) as uow:
        await uow.leads.update_many([lead.id for lead in leads], LeadUpdate(score=5))
        await uow.commit()
    rows = await pg.fetch(
        "SELECT entity_id FROM activity_logs WHERE action = 'updated' AND entity_type = 'lead'"
    )
    assert sorted(row["entity_id"] for row in rows) == sorted(lead.id for lead in leads)


def _keyed(settings: LeadDBSettings) -> LeadDBSettings:
    return settings.model_copy(
        update={"credentials_key": SecretStr(Fernet.generate_key().decode())}
    )


async def _seed_secrets(db: LeadDB) -> tuple[uuid.UUID, User, Integration]:
    """A user with a changed password and an integration with rotated credentials."""
    org = await make_org(db)
    async with db.tenant(org.id) as uow:
        user = await uow.users.create(
            UserCreate(email="sam@example.com", full_name="Sam", password=SecretStr(PASSWORD))
        )
        integration = await uow.integrations.create(
            IntegrationCreate(
                provider=IntegrationProvider.N8N,
                name="n8n cloud",
                config={"base_url": "https://n8n.example.com"},
                credentials={"api_key": SecretStr(API_KEY)},
            )
        )
        await uow.commit()
    async with db.tenant(org.id) as uow:
        await uow.users.update(user.id, UserUpdate(password=SecretStr(NEW_PASSWORD)))
        await uow.integrations.update(
            integration.id, IntegrationUpdate(credentials={"api_key": SecretStr(ROTATED_KEY)})
        )
        # Written by this unit of work, so read from its transaction.
        assert (await uow.integrations.credentials(integration.id))[
            "api_key"
        ].get_secret_value() == ROTATED_KEY
        await uow.commit()
    return org.id, user, integration


async def _secrets(pg: asyncpg.Connection, user: User, integration: Integration) -> list[str]:
    password_hash = await pg.fetchval("SELECT password_hash FROM users WHERE id = $1", user.id)
    ciphertext = await pg.fetchval(
        "SELECT credentials_encrypted FROM integrations WHERE id = $1", integration.id
    )
    assert password_hash.startswith("scrypt$")
    assert ciphertext
    assert API_KEY.encode() not in ciphertext
    token = bytes(ciphertext)
    return [
        PASSWORD,
        NEW_PASSWORD,
        password_hash,
        API_KEY,
        ROTATED_KEY,
        token.decode(),
        token.hex(),
    ]


async def test_secrets_never_reach_the_audit_trail(
    settings: LeadDBSettings, pg: asyncpg.Connection
) -> None:
    async with await LeadDB.connect(_keyed(settings)) as db:
        _, user, integration = await _seed_secrets(db)
    secrets = await _secrets(pg, user, integration)
    rows = await pg.fetch(
        "SELECT action::text AS action, changes::text AS changes FROM activity_logs "
        "WHERE entity_id = ANY($1::uuid[])",
        [user.id, integration.id],
    )
    assert sorted(row["action"] for row in rows) == ["created", "created", "updated", "updated"]
    for row in rows:
        for secret in secrets:
            assert secret not in row["changes"]
        assert "password_hash" not in row["changes"]
        assert "credentials_encrypted" not in row["changes"]


async def test_secret_bearing_rows_read_back_without_leaking_into_repr_or_cache(
    settings: LeadDBSettings, pg: asyncpg.Connection, redis_client: aioredis.Redis
) -> None:
    async with await LeadDB.connect(_keyed(settings)) as db:
        org_id, user, integration = await _seed_secrets(db)
        secrets = await _secrets(pg, user, integration)
        async with db.tenant(org_id) as uow:
            stored_user = await uow.users.get_one(user.id)
            assert [found.id for found in await uow.users.get_many([user.id])] == [user.id]
            stored_integration = await uow.integrations.get_one(integration.id)
            decrypted = await uow.integrations.credentials(integration.id)
        assert decrypted["api_key"].get_secret_value() == ROTATED_KEY
    for shown in (
        repr(stored_user),
        str(stored_user),
        repr(stored_integration),
        str(stored_integration),
        UserRead.model_validate(stored_user).model_dump_json(),
        IntegrationRead.model_validate(stored_integration).model_dump_json(),
    ):
        for secret in secrets:
            assert secret not in shown
    async for key in redis_client.scan_iter():
        if await redis_client.type(key) != b"string":
            continue
        value = await redis_client.get(key)
        assert value is not None
        for secret in secrets:
            assert secret.encode() not in value, key


async def test_a_password_hash_never_enters_the_cache(
    db: LeadDB, pg: asyncpg.Connection, redis_client: aioredis.Redis
) -> None:
    org = await make_org(db)
    user = await make_user(db, org.id, "pat@example.com", password=PASSWORD)
    for _ in range(2):  # a miss, then what would be a hit
        async with db.tenant(org.id) as uow:
            assert (await uow.users.get_one(user.id)).id == user.id
            assert [found.id for found in await uow.users.get_many([user.id])] == [user.id]
    password_hash = await pg.fetchval("SELECT password_hash FROM users WHERE id = $1", user.id)
    assert password_hash.startswith("scrypt$")
    async for key in redis_client.scan_iter():
        if await redis_client.type(key) == b"string":
            value = await redis_client.get(key)
            assert value is not None
            assert password_hash.encode() not in value, key
