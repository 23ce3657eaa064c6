"""The signed tenant context that the database's row-level-security policies verify.

A unit of work tells PostgreSQL its tenant with ``SET LOCAL leaddb.tenant =
'<org_id>.<hex HMAC-SHA256(key, "t:" + org_id)>'`` (the platform: ``leaddb.platform =
'<hex HMAC-SHA256(key, "p:platform")>'``). The policies call ``leaddb_tenant()`` /
``leaddb_platform()`` (migration 0007), which verify the MAC against a key that the role
``leaddb_app`` cannot read, so SQL run inside a unit of work cannot claim another tenant, nor
the platform, by setting either value itself.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import uuid

PLATFORM_MESSAGE = b"p:platform"


class ContextSigner:
    """Signs tenant and platform contexts with the database's context key."""

    def __init__(self, key: bytes) -> None:
        if not 16 <= len(key) <= 64:
            raise ValueError("a context key is 16 to 64 bytes")
        self._key = key
        self.platform = self._mac(PLATFORM_MESSAGE)
        # Signing costs ~1.5 µs; a service opens many units of work for few tenants.
        self.tenant = functools.lru_cache(maxsize=4096)(self._tenant)

    def _mac(self, message: bytes) -> str:
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def _tenant(self, organization_id: uuid.UUID) -> str:
        text = str(organization_id)
        return f"{text}.{self._mac(b't:' + text.encode())}"
