"""leaddb: the typed async data layer of a multi-tenant lead-management platform."""

from leaddb.db import LeadDB
from leaddb.settings import LeadDBSettings

__all__ = ["LeadDB", "LeadDBSettings"]
__version__ = "0.1.0"
