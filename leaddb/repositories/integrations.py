"""Integrations, whose credentials are encrypted at rest (Fernet, key from settings)."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

from leaddb.errors import ConfigurationError, LeadDBError
from leaddb.models import Integration, IntegrationCreate, IntegrationUpdate
from leaddb.repositories.base import Repository
from leaddb.settings import LeadDBSettings


def credentials_cipher(settings: LeadDBSettings) -> MultiFernet:
    """The cipher of ``LEADDB_CREDENTIALS_KEY``: comma-separated Fernet keys, newest first, so
    keys can be rotated without losing what older keys encrypted."""
    if settings.credentials_key is None:
        raise ConfigurationError(
            "LEADDB_CREDENTIALS_KEY is not set: integration credentials cannot be stored "
            "(generate a key with `python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'`)"
        )
    try:
        keys = [
            Fernet(key.strip()) for key in settings.credentials_key.get_secret_value().split(",")
        ]
    except ValueError:
        raise ConfigurationError(
            "LEADDB_CREDENTIALS_KEY holds a key that is not a Fernet key"
        ) from None
    return MultiFernet(keys)


class IntegrationRepository(Repository[Integration, IntegrationCreate, IntegrationUpdate]):
    """Integrations of one organization. ``credentials`` in a payload are encrypted before
    they reach the database; they never appear in a Read schema, a repr, a log or the cache."""

    model: ClassVar[type[Integration]] = Integration

    def prepare_values(self, values: dict[str, Any]) -> dict[str, Any]:
        if "credentials" not in values:
            return values
        credentials = values.pop("credentials")
        if credentials is None:
            values["credentials_encrypted"] = None
            return values
        plain = {
            key: value.get_secret_value() if isinstance(value, SecretStr) else value
            for key, value in credentials.items()
        }
        values["credentials_encrypted"] = credentials_cipher(self._uow.settings).encrypt(
            orjson.dumps(plain)
        )
        return values

    async def credentials(self, integration_id: uuid.UUID) -> dict[str, SecretStr]:
        """The decrypted credentials of an integration (empty when it has none)."""
        integration = await self.get_one(integration_id)
        if integration.credentials_encrypted is None:
            return {}
        try:
            plain = credentials_cipher(self._uow.settings).decrypt(
                integration.credentials_encrypted
            )
        except InvalidToken:
            raise LeadDBError(
                "integration credentials cannot be decrypted with LEADDB_CREDENTIALS_KEY"
            ) from None
        return {key: SecretStr(str(value)) for key, value in orjson.loads(plain).items()}
