"""Deactivating or deleting a user or an organization through the repositories ends their
sessions once the change is committed (and not when it is rolled back)."""

from __future__ import annotations

from leaddb import LeadDB
from leaddb.models import (
    Organization,
    OrganizationCreate,
    OrganizationUpdate,
    User,
    UserCreate,
    UserUpdate,
)


async def _tenant_with_users(db: LeadDB, slug: str) -> tuple[Organization, User, User]:
    async with db.platform() as uow:
        organization = await uow.organizations.create(OrganizationCreate(name=slug, slug=slug))
        await uow.commit()
    async with db.tenant(organization.id) as uow:
        ada = await uow.users.create(UserCreate(email=f"ada@{slug}.example.com", full_name="Ada"))
        bob = await uow.users.create(UserCreate(email=f"bob@{slug}.example.com", full_name="Bob"))
        await uow.commit()
    return organization, ada, bob


async def test_deactivating_a_user_revokes_their_sessions_after_commit(db: LeadDB) -> None:
    organization, ada, bob = await _tenant_with_users(db, "revoke-user")
    ada_tokens = [
        await db.sessions.create(user_id=ada.id, organization_id=organization.id) for _ in range(2)
    ]
    bob_token = await db.sessions.create(user_id=bob.id, organization_id=organization.id)

    async with db.tenant(organization.id) as uow:
        await uow.users.update(ada.id, UserUpdate(is_active=False))
        # Rolled back: nothing revoked.
    assert all([await db.sessions.get(token) for token in ada_tokens])

    async with db.tenant(organization.id) as uow:
        await uow.users.update(ada.id, UserUpdate(is_active=False))
        assert await db.sessions.get(ada_tokens[0]) is not None  # not before the commit
        await uow.commit()
    assert [await db.sessions.get(token) for token in ada_tokens] == [None, None]
    assert await db.sessions.get(bob_token) is not None


async def test_deleting_a_user_revokes_their_sessions(db: LeadDB) -> None:
    organization, ada, _ = await _tenant_with_users(db, "delete-user")
    token = await db.sessions.create(user_id=ada.id, organization_id=organization.id)
    async with db.tenant(organization.id) as uow:
        await uow.users.delete(ada.id)
        await uow.commit()
    assert await db.sessions.get(token) is None


async def test_deactivating_an_organization_revokes_every_session_in_it(db: LeadDB) -> None:
    acme, ada, bob = await _tenant_with_users(db, "revoke-org")
    other, carol, _ = await _tenant_with_users(db, "keep-org")
    tokens = [
        await db.sessions.create(user_id=user.id, organization_id=acme.id) for user in (ada, bob)
    ]
    kept = await db.sessions.create(user_id=carol.id, organization_id=other.id)
    async with db.platform() as uow:
        await uow.organizations.update(acme.id, OrganizationUpdate(is_active=False))
        await uow.commit()
    assert [await db.sessions.get(token) for token in tokens] == [None, None]
    assert await db.sessions.get(kept) is not None
