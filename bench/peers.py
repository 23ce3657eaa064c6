"""The peers: SQLAlchemy's ORM (always there) and, when installed, advanced-alchemy and fastcrud.

The two third-party peers are installed in the ``bench`` nox session only, and imported lazily
here: one that cannot be imported (or fails its first call) is reported as unavailable with the
reason, and the run carries on without it. Every peer maps the very ``leaddb.models.Lead``
SQLModel class and runs on ``create_async_engine("postgresql+asyncpg://...")``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from uuid_utils.compat import uuid7

from leaddb.models import Lead, LeadBase

ADVANCED_ALCHEMY = "advanced-alchemy"
FASTCRUD = "fastcrud"


@dataclass
class Peer:
    """One third-party peer: whether it can be used here, and why not."""

    name: str
    version: str | None
    module: Any = None
    reason: str = ""

    @property
    def available(self) -> bool:
        return self.module is not None


class LeadIn(LeadBase):
    """A lead with its tenant and id, as fastcrud's ``create`` / ``upsert_multi`` take it."""

    organization_id: uuid.UUID
    id: uuid.UUID = Field(default_factory=uuid7)


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _load(name: str, modules: tuple[str, ...]) -> Peer:
    version = _version(name)
    if version is None:
        hint = " (its pip install failed in the bench session: see the nox log)"
        inside_nox = "nox" in os.environ.get("VIRTUAL_ENV", "")
        return Peer(name, None, reason="not installed" + (hint if inside_nox else ""))
    loaded: dict[str, Any] = {}
    try:
        for module in modules:
            loaded[module] = importlib.import_module(module)
    except Exception as error:
        return Peer(name, version, reason=f"import failed: {type(error).__name__}: {error}")
    return Peer(name, version, module=loaded)


def load_peers() -> dict[str, Peer]:
    """advanced-alchemy and fastcrud, each loaded or explained."""
    return {
        ADVANCED_ALCHEMY: _load(
            ADVANCED_ALCHEMY, ("advanced_alchemy.repository", "advanced_alchemy.filters")
        ),
        FASTCRUD: _load(FASTCRUD, ("fastcrud",)),
    }


def unavailable(peer: Peer, error: BaseException) -> None:
    """Mark a peer unusable after a failure at run time (e.g. an incompatibility)."""
    peer.module = None
    peer.reason = f"failed at run time: {type(error).__name__}: {str(error)[:200]}"


def engine(url: str) -> AsyncEngine:
    """The SQLAlchemy engine every SQLAlchemy-based contender shares."""
    return create_async_engine(url, pool_size=8, max_overflow=0)


def session(bound: AsyncEngine) -> AsyncSession:
    """A session as an application would open one (defaults: expire on commit, autobegin)."""
    return AsyncSession(bound)


def advanced_alchemy_repository(peer: Peer, db_session: AsyncSession) -> Any:
    """``SQLAlchemyAsyncRepository[Lead]`` on ``db_session`` (the class is made once)."""
    repository_class = peer.module.get("LeadRepository")
    if repository_class is None:
        base = peer.module["advanced_alchemy.repository"].SQLAlchemyAsyncRepository
        repository_class = type("LeadRepository", (base,), {"model_type": Lead})
        peer.module["LeadRepository"] = repository_class
    return repository_class(session=db_session)


def advanced_alchemy_filters(peer: Peer) -> Any:
    return peer.module["advanced_alchemy.filters"]


def fastcrud(peer: Peer) -> Any:
    """``FastCRUD(Lead)``."""
    return peer.module["fastcrud"].FastCRUD(Lead)
