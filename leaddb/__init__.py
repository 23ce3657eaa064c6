"""leaddb: the typed async data layer of a multi-tenant lead-management platform."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from leaddb.db import LeadDB
    from leaddb.settings import LeadDBSettings

__all__ = ["LeadDB", "LeadDBSettings"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Imported on first use, not with the package: `leaddb --help` (and any tool importing a
    # light submodule) then does not pay for SQLAlchemy, asyncpg and the models.
    if name == "LeadDB":
        from leaddb.db import LeadDB

        return LeadDB
    if name == "LeadDBSettings":
        from leaddb.settings import LeadDBSettings

        return LeadDBSettings
    raise AttributeError(f"module 'leaddb' has no attribute {name!r}")
