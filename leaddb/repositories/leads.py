"""Leads and what hangs off a lead: notes, assignments, score history."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar, Protocol

from pydantic import JsonValue
from sqlalchemy import ColumnElement, Table, func, or_, select, update

from leaddb.connections.driver_errors import run
from leaddb.errors import InvalidFilterError
from leaddb.models import (
    Communication,
    CommunicationCreate,
    Lead,
    LeadAssignment,
    LeadAssignmentCreate,
    LeadAssignmentUpdate,
    LeadCreate,
    LeadNote,
    LeadNoteCreate,
    LeadNoteUpdate,
    LeadScoreHistory,
    LeadScoreHistoryCreate,
    LeadSource,
    LeadStatus,
    LeadTemperature,
    LeadUpdate,
    User,
    lead_search_condition,
)
from leaddb.models.base import table_of
from leaddb.repositories.base import AppendOnlyRepository, Repository
from leaddb.repositories.filters import (
    MAX_SEARCH_LENGTH,
    ArrayContains,
    ArrayOverlaps,
    Filter,
    IsNull,
    JsonContains,
    Range,
    keyword,
)
from leaddb.repositories.pagination import Page
from leaddb.repositories.reads import as_uuid
from leaddb.sql.compile import Positional, compile_cached, compile_positional, param
from leaddb.sql.statements import insert_target

if TYPE_CHECKING:
    from leaddb.repositories.communications import CommunicationRepository
    from leaddb.repositories.users import UserRepository
    from leaddb.repositories.work import Work

OPEN_STATUSES = tuple(status for status in LeadStatus if status not in {"won", "lost"})


class _Search:
    """Full-text search over name, email and company, using the ``ix_leads_search`` index."""

    def __init__(self, terms: str) -> None:
        if (
            not isinstance(terms, str)
            or not terms.strip()
            or len(terms) > MAX_SEARCH_LENGTH
            or "\x00" in terms
        ):
            raise InvalidFilterError(
                f"search: give 1 to {MAX_SEARCH_LENGTH} characters of text, without NUL"
            )
        self.terms = terms

    def condition(self, table: Table) -> ColumnElement[bool]:
        return lead_search_condition(self.terms, table)


class _EngagedBefore:
    """No engagement since ``moment`` (never engaged counts as stale)."""

    def __init__(self, moment: datetime) -> None:
        if not isinstance(moment, datetime) or moment.tzinfo is None:
            raise InvalidFilterError("stale leads need a timezone-aware datetime")
        self.moment = moment

    def condition(self, table: Table) -> ColumnElement[bool]:
        column = table.c.last_engagement_at
        return or_(column.is_(None), column < self.moment)


class LeadSiblings(Protocol):
    """The repositories of the same unit of work that lead operations also write or read."""

    @property
    def users(self) -> UserRepository: ...

    @property
    def assignments(self) -> LeadAssignmentRepository: ...

    @property
    def communications(self) -> CommunicationRepository: ...


class LeadRepository(Repository[Lead, LeadCreate, LeadUpdate]):
    """Leads of one organization."""

    model: ClassVar[type[Lead]] = Lead

    def __init__(self, uow: Work, *, siblings: LeadSiblings) -> None:
        super().__init__(uow)
        self._siblings = siblings

    async def list(
        self,
        *filters: Filter,
        limit: int = 50,
        after: str | None = None,
        include_deleted: bool = False,
        order_by: Sequence[str] | None = None,
        descending: bool = False,
        status: LeadStatus | Collection[LeadStatus] | None = None,
        temperature: LeadTemperature | Collection[LeadTemperature] | None = None,
        source: LeadSource | Collection[LeadSource] | None = None,
        owner_id: uuid.UUID | Collection[uuid.UUID] | None = None,
        unowned: bool | None = None,
        score: int | Range[int] | None = None,
        tags_all: Collection[str] | None = None,
        tags_any: Collection[str] | None = None,
        custom_fields: dict[str, JsonValue] | None = None,
        search: str | None = None,
        engaged_before: datetime | None = None,
        created: Range[datetime] | None = None,
    ) -> Page[Lead]:
        """A page of leads; every keyword given narrows it (see ``Repository.list``)."""
        built: list[Filter] = list(filters)
        for field, value in (
            ("status", status),
            ("temperature", temperature),
            ("source", source),
            ("owner_id", owner_id),
            ("score", score),
            ("created_at", created),
        ):
            if value is not None:
                built.append(keyword(field, value))
        if unowned is not None:
            built.append(IsNull("owner_id", null=unowned))
        if tags_all:
            built.append(ArrayContains("tags", list(tags_all)))
        if tags_any:
            built.append(ArrayOverlaps("tags", list(tags_any)))
        if custom_fields:
            built.append(JsonContains("custom_fields", custom_fields))
        if search is not None:
            built.append(_Search(search))
        if engaged_before is not None:
            built.append(_EngagedBefore(engaged_before))
        return await super().list(
            *built,
            limit=limit,
            after=after,
            include_deleted=include_deleted,
            order_by=order_by,
            descending=descending,
        )

    async def upsert(self, data: LeadCreate) -> Lead:
        """Create the lead, or update the one with the same email (any case) in this tenant
        with the fields set in ``data`` (the others keep their values).

        A soft-deleted lead with that email comes back to life with the new values. When every
        field set holds its value already, nothing is written: the same version, no audit row.
        """
        return await self._upsert(data, [("email", "lower")])

    async def owners(self, leads: Sequence[Lead]) -> dict[uuid.UUID, User]:
        """The owners of ``leads``, by user id, in one statement: a page of leads and their
        owners cost two statements whatever the page size (no relationship is ever loaded
        lazily; models have none)."""
        owner_ids = {lead.owner_id for lead in leads if lead.owner_id is not None}
        if not owner_ids:
            return {}
        users = self._siblings.users
        found: builtins.list[User] = await users.get_many(owner_ids)
        return {user.id: user for user in found}

    async def get_by_email(self, email: str) -> Lead | None:
        """The live lead with this email, ignoring case."""
        table = self.table
        statement = select(*table.c).where(
            table.c.organization_id == self._uow.require_tenant(),
            func.lower(table.c.email) == email.lower(),
            table.c.deleted_at.is_(None),
        )
        compiled, args = compile_cached(statement)
        connection = await self._connection()
        row = await run(connection.fetchrow, compiled.text, *args)
        return None if row is None else self._hydrator.one(row)

    async def search(self, terms: str, *, limit: int = 20) -> builtins.list[Lead]:
        """Leads whose name, email or company match ``terms`` (web-search syntax)."""
        page = await self.list(limit=limit, search=terms)
        return page.items

    async def stale(
        self, since: datetime, *, limit: int = 50, after: str | None = None
    ) -> Page[Lead]:
        """Open leads with no engagement since ``since``, oldest first."""
        return await self.list(
            limit=limit, after=after, status=list(OPEN_STATUSES), engaged_before=since
        )

    async def top_scored(self, *, limit: int = 10) -> builtins.list[Lead]:
        """The live leads with the highest scores."""
        page = await self.list(limit=limit, order_by=("score",), descending=True)
        return page.items

    async def assign(
        self, lead_id: uuid.UUID, user_id: uuid.UUID, *, assigned_by: uuid.UUID | None = None
    ) -> LeadAssignment:
        """Give the lead to a user: close the active assignment, open a new one, set the owner."""
        lead = await self.get_one(lead_id)
        assignments = self._siblings.assignments
        await assignments.close_active(lead.id)
        assignment: LeadAssignment = await assignments.create(
            LeadAssignmentCreate(
                lead_id=lead.id,
                user_id=user_id,
                assigned_by_user_id=assigned_by or self._uow.actor_id,
            )
        )
        await self.update(lead.id, LeadUpdate(owner_id=user_id))
        return assignment

    async def record_communication(self, data: CommunicationCreate) -> Communication:
        """Store a communication and move the lead's last engagement forward to it."""
        communications = self._siblings.communications
        communication: Communication = await communications.create(data)
        moment = communication.sent_at or communication.created_at
        connection = await self._connection()
        changed = await run(
            connection.fetchval,
            _ENGAGED.text,
            *_ENGAGED.args((self._uow.require_tenant(), communication.lead_id, moment)),
        )
        if changed is not None:
            self._written(communication.lead_id)
        return communication


class LeadNoteRepository(Repository[LeadNote, LeadNoteCreate, LeadNoteUpdate]):
    """Notes on leads."""

    model: ClassVar[type[LeadNote]] = LeadNote

    async def for_lead(self, lead_id: uuid.UUID, *, limit: int = 50) -> list[LeadNote]:
        """A lead's notes, pinned first, then newest first."""
        key = as_uuid(lead_id)
        if key is None:
            return []
        table = self.table
        statement = (
            select(*table.c)
            .where(table.c.organization_id == self._uow.require_tenant(), table.c.lead_id == key)
            .order_by(table.c.is_pinned.desc(), table.c.created_at.desc(), table.c.id.desc())
            .limit(limit)
        )
        compiled, args = compile_cached(statement)
        connection = await self._connection()
        rows = await run(connection.fetch, compiled.text, *args)
        return self._hydrator.many(rows)


class LeadAssignmentRepository(
    Repository[LeadAssignment, LeadAssignmentCreate, LeadAssignmentUpdate]
):
    """Who has been given which lead; at most one active assignment per lead."""

    model: ClassVar[type[LeadAssignment]] = LeadAssignment
    default_order: ClassVar[tuple[str, ...]] = ("assigned_at", "id")

    async def close_active(self, lead_id: uuid.UUID) -> LeadAssignment | None:
        """End the lead's active assignment, if it has one."""
        connection = await self._connection()
        row = await run(
            connection.fetchrow,
            _ACTIVE_ASSIGNMENT.text,
            *_ACTIVE_ASSIGNMENT.args((self._uow.require_tenant(), lead_id)),
        )
        if row is None:
            return None
        return await self.update(row["id"], LeadAssignmentUpdate(unassigned_at=_now()))

    async def active(self, lead_id: uuid.UUID) -> LeadAssignment | None:
        """The lead's active assignment."""
        page = await self.list(keyword("lead_id", lead_id), IsNull("unassigned_at"), limit=1)
        return page.items[0] if page.items else None


class LeadScoreHistoryRepository(AppendOnlyRepository[LeadScoreHistory, LeadScoreHistoryCreate]):
    """Append-only record of score changes."""

    model: ClassVar[type[LeadScoreHistory]] = LeadScoreHistory
    audited: ClassVar[bool] = False

    async def for_lead(self, lead_id: uuid.UUID, *, limit: int = 50) -> Page[LeadScoreHistory]:
        return await self.list(keyword("lead_id", lead_id), limit=limit, descending=True)


def _now() -> datetime:
    return datetime.now(UTC)


def _engaged() -> Positional:
    """Move a lead's last engagement forward (never back); parameters: tenant, lead, moment.
    No new version and no ``updated_at``: the table without Core's update defaults."""
    leads = insert_target(table_of(Lead))
    moment = param("moment", leads.c.last_engagement_at.type)
    last = leads.c.last_engagement_at
    statement = (
        update(leads)
        .values(last_engagement_at=moment)
        .where(
            leads.c.organization_id == param("tenant", leads.c.organization_id.type),
            leads.c.id == param("lead", leads.c.id.type),
            or_(last.is_(None), last < moment),
        )
        .returning(leads.c.id)
    )
    return compile_positional(statement, ("tenant", "lead", "moment"))


def _active_assignment() -> Positional:
    """The id of a lead's active assignment, locked; parameters: tenant, lead."""
    assignments = table_of(LeadAssignment)
    statement = (
        select(assignments.c.id)
        .where(
            assignments.c.organization_id == param("tenant", assignments.c.organization_id.type),
            assignments.c.lead_id == param("lead", assignments.c.lead_id.type),
            assignments.c.unassigned_at.is_(None),
        )
        .with_for_update()
    )
    return compile_positional(statement, ("tenant", "lead"))


_ENGAGED = _engaged()
_ACTIVE_ASSIGNMENT = _active_assignment()
