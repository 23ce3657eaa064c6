"""Users: inside a tenant, and the cross-tenant lookup a login needs."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import SecretStr
from sqlalchemy import Select, func, select

from leaddb.connections.driver_errors import run
from leaddb.models import User, UserCreate, UserUpdate, table_of
from leaddb.passwords import hash_password, verify_password
from leaddb.repositories.base import Repository
from leaddb.repositories.reads import as_uuid
from leaddb.rows.hydrate import Hydrator
from leaddb.sql.compile import compile_cached

if TYPE_CHECKING:
    from leaddb.repositories.work import Work


def _hash_password_field(values: dict[str, Any]) -> dict[str, Any]:
    if "password" in values:
        password = values.pop("password")
        if isinstance(password, SecretStr):
            password = password.get_secret_value()
        values["password_hash"] = None if password is None else hash_password(password)
    return values


class UserRepository(Repository[User, UserCreate, UserUpdate]):
    """Users of one organization. Passwords are stored only as scrypt hashes."""

    model: ClassVar[type[User]] = User

    def prepare_values(self, values: dict[str, Any]) -> dict[str, Any]:
        return _hash_password_field(values)

    async def update(
        self, id: uuid.UUID, patch: UserUpdate, *, expected_version: int | None = None
    ) -> User:
        """Update a user; deactivating one ends every session of theirs once committed."""
        user = await super().update(id, patch, expected_version=expected_version)
        if not user.is_active:
            self._revoke_sessions_after_commit(user.id)
        return user

    async def update_many(self, ids: Collection[uuid.UUID], patch: UserUpdate) -> list[User]:
        """Update several users; deactivating them ends their sessions once committed."""
        users = await super().update_many(ids, patch)
        if patch.is_active is False:
            for user in users:
                self._revoke_sessions_after_commit(user.id)
        return users

    async def delete(self, id: uuid.UUID, *, expected_version: int | None = None) -> None:
        """Delete a user (their leads keep existing, unowned) and end their sessions."""
        await super().delete(id, expected_version=expected_version)
        self._revoke_sessions_after_commit(id)

    def _revoke_sessions_after_commit(self, user_id: uuid.UUID) -> None:
        sessions = self._uow.sessions
        self._uow.after_commit(lambda: sessions.revoke_all(user_id))

    async def get_by_email(self, email: str) -> User | None:
        """The user with this email in this organization, ignoring case."""
        table = self.table
        statement = select(*table.c).where(
            table.c.organization_id == self._uow.require_tenant(),
            func.lower(table.c.email) == email.lower(),
        )
        compiled, args = compile_cached(statement)
        connection = await self._connection()
        row = await run(connection.fetchrow, compiled.text, *args)
        return None if row is None else self._hydrator.one(row)


class PlatformUserRepository:
    """Users across organizations, for logging in: read-only, by email or by id.

    Changes to users go through a tenant unit of work, which scopes and audits them.
    """

    _hydrator: ClassVar[Hydrator[User]] = Hydrator(User)

    def __init__(self, uow: Work) -> None:
        self._uow = uow

    async def _rows(self, statement: Select[Any]) -> list[User]:
        compiled, args = compile_cached(statement)
        connection = await self._uow.statement_connection()
        rows = await run(connection.fetch, compiled.text, *args)
        return self._hydrator.many(rows)

    async def get(self, user_id: uuid.UUID) -> User | None:
        """The user with this id, in whichever organization it is."""
        key = as_uuid(user_id)
        if key is None:
            return None
        table = table_of(User)
        found = await self._rows(select(*table.c).where(table.c.id == key))
        return found[0] if found else None

    async def find_by_email(self, email: str) -> list[User]:
        """Every active user with this email, in any organization (one per organization)."""
        table = table_of(User)
        return await self._rows(
            select(*table.c)
            .where(func.lower(table.c.email) == email.lower(), table.c.is_active.is_(True))
            .order_by(table.c.organization_id)
        )

    async def authenticate(self, email: str, password: str) -> list[User]:
        """The active users with this email whose password matches."""
        return [
            user
            for user in await self.find_by_email(email)
            if verify_password(password, user.password_hash)
        ]
