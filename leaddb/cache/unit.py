"""The cache's share of one unit of work."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Set
from typing import Protocol


class CacheUnit(Protocol):
    """What a unit of work asks of the cache."""

    async def invalidate(
        self, written: Mapping[str, Set[uuid.UUID]], bulk_written: Set[str]
    ) -> None:
        """Forget every cached row the committed transaction changed."""
