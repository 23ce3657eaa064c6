"""Leads: the people and companies an organization sells to, and their full-text search."""

import uuid
from datetime import date
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Final, Optional

import sqlalchemy as sa
from pydantic import AfterValidator, AwareDatetime
from sqlalchemy.dialects.postgresql import ARRAY, TSVECTOR
from sqlmodel import Field, SQLModel

from leaddb.models.base import (
    CreateSchema,
    ReadSchema,
    SoftDeleteMixin,
    SoftDeleteRead,
    TenantMixin,
    TenantRead,
    TimestampsMixin,
    TimestampsRead,
    UpdateSchema,
    VersionMixin,
    VersionRead,
    fk_index,
    navigation,
    patch_of,
    table_of,
    tenant_fk,
    tenant_table_args,
)
from leaddb.models.enums import LeadSource, LeadStatus, LeadTemperature
from leaddb.models.fields import (
    MAX_TAGS,
    SCORE_MAX,
    SCORE_MIN,
    TAG_MAX_LENGTH,
    Email,
    JsonObject,
    OptionalHttpUrl,
    OptionalMoney,
    OptionalName,
    Score,
    Tags,
    db_default,
    enum_field,
    json_field,
    text_field,
    timestamp_field,
)

# MAX_TAGS, TAG_MAX_LENGTH and Tags are declared in leaddb.models.fields (the rule grammar checks a
# tag rule against the same length) and stay importable from here.
__all__ = [
    "LEADS_FILLFACTOR",
    "MAX_TAGS",
    "PHONE_PATTERN",
    "SEARCH_CONFIG",
    "TAG_MAX_LENGTH",
    "Lead",
    "LeadBase",
    "LeadCreate",
    "LeadRead",
    "LeadUpdate",
    "OptionalPhone",
    "PersonName",
    "Tags",
    "lead_search_condition",
    "lead_search_vector",
]

PHONE_PATTERN: Final = r"^\+?[0-9 ().\-]{6,32}$"
LEADS_FILLFACTOR: Final = 50
"""How full new pages of ``leads`` are filled (percent); see ``Lead.__table_args__``."""
SEARCH_CONFIG: Final = "simple"
"""Text-search configuration of the lead search: language-neutral, no stemming."""


if TYPE_CHECKING:
    from leaddb.models.communication import Communication
    from leaddb.models.lead_assignment import LeadAssignment
    from leaddb.models.lead_note import LeadNote
    from leaddb.models.scoring import LeadScoreHistory
    from leaddb.models.user import User


def _check_phone_digits(value: str) -> str:
    if sum(character.isdigit() for character in value) < 6:
        raise ValueError("a phone number needs at least 6 digits")
    return value


PhoneNumber = Annotated[str, AfterValidator(_check_phone_digits)]
OptionalPhone = Annotated[PhoneNumber | None, text_field(32, pattern=PHONE_PATTERN)]
"""E.164-ish: an optional ``+``, then digits, spaces, ``().-``; at least 6 digits."""

PersonName = Annotated[str | None, text_field(100)]


class LeadBase(SQLModel):
    """Fields of a lead shared by the table and its schemas."""

    email: Email
    first_name: PersonName = None
    last_name: PersonName = None
    phone: OptionalPhone = None
    company: OptionalName = None
    job_title: OptionalName = None
    linkedin_url: OptionalHttpUrl = None
    source: LeadSource = enum_field(LeadSource, default=LeadSource.OTHER)
    status: LeadStatus = enum_field(LeadStatus, default=LeadStatus.NEW)
    score: Score = db_default(0)
    temperature: LeadTemperature = enum_field(LeadTemperature, default=LeadTemperature.COLD)
    estimated_value: OptionalMoney = None
    expected_close_date: date | None = None
    last_engagement_at: AwareDatetime | None = timestamp_field()
    owner_id: uuid.UUID | None = None
    tags: Tags = Field(
        default_factory=list,
        sa_type=ARRAY(sa.String(TAG_MAX_LENGTH)),
        sa_column_kwargs={"server_default": sa.text("'{}'")},
    )
    custom_fields: JsonObject = json_field()


class Lead(SoftDeleteMixin, VersionMixin, TimestampsMixin, LeadBase, TenantMixin, table=True):
    """A lead; ``email`` is unique per organization ignoring case (soft-deleted rows included,
    so restoring one never collides)."""

    __tablename__ = "leads"
    __entity_name__: ClassVar[str] = "lead"
    owner: Optional["User"] = navigation()
    notes: list["LeadNote"] = navigation()
    assignments: list["LeadAssignment"] = navigation()
    score_history: list["LeadScoreHistory"] = navigation()
    communications: list["Communication"] = navigation()
    __table_args__ = (
        *tenant_table_args(
            # The owner's leads stay when the owner is deleted; only owner_id is cleared.
            tenant_fk("owner_id", "users", on_delete="set_null"),
            fk_index("owner_id"),
            sa.CheckConstraint(f"score BETWEEN {SCORE_MIN} AND {SCORE_MAX}", name="score_range"),
            sa.CheckConstraint("estimated_value >= 0", name="estimated_value_non_negative"),
            # Pipeline listings: filter by status, newest first, keyset on (created_at, id).
            sa.Index(None, "organization_id", "status", "created_at", "id"),
            sa.Index(None, "organization_id", "last_engagement_at"),
            sa.Index(None, "tags", postgresql_using="gin"),
            sa.Index(None, "custom_fields", postgresql_using="gin"),
        ),
        # Rescoring rewrites most leads at once. Half-full pages leave room for each new
        # version beside the old one, so the update touches no index (a HOT update); that is
        # also why no index may contain score, temperature, version or updated_at.
        {"postgresql_with": {"fillfactor": LEADS_FILLFACTOR}},
    )


def lead_search_vector(source: sa.FromClause | None = None) -> sa.ColumnElement[Any]:
    """The ``tsvector`` of a lead's names, email and company, exactly as the GIN index
    ``ix_leads_search`` stores it; use this very expression in queries so the index applies.

    ``source`` is the ``leads`` table (default) or an alias of it, e.g.
    ``sa.alias(table_of(Lead), "t")`` to compile it for a statement that calls leads ``t``.
    Constants are literals, not bind parameters: an index on an expression serves only queries
    whose expression matches it, and a parameter never matches a constant.
    """
    columns = (source if source is not None else table_of(Lead)).c
    # Constants are text(), not literal_column(): sa.Index attaches itself to the table of the
    # first column it finds in its expression, and a tableless literal column may come first.
    empty = sa.text("''")
    space = sa.text("' '")
    # Left-nested and parenthesised the way PostgreSQL prints the index back, so Alembic's
    # autogenerate sees no difference between this expression and the reflected index.
    # (A custom "||" operator: SQLAlchemy flattens its own concat into one unparenthesised list.)
    document: sa.ColumnElement[str] = sa.func.coalesce(columns.first_name, empty)
    for column in (columns.last_name, columns.email, columns.company):
        document = _concat(_concat(document, space), sa.func.coalesce(column, empty))
    return sa.func.to_tsvector(_search_config(), document, type_=TSVECTOR)


def lead_search_condition(
    terms: str, source: sa.FromClause | None = None
) -> sa.ColumnElement[bool]:
    """``lead_search_vector() @@ websearch_to_tsquery('simple', terms)``; ``terms`` is a bind
    parameter and may be raw user input (quotes, ``or``, ``-word``): never a syntax error."""
    query = sa.func.websearch_to_tsquery(_search_config(), sa.literal(terms, sa.Text))
    return lead_search_vector(source).bool_op("@@")(query)


def _concat(left: sa.ColumnElement[str], right: Any) -> sa.ColumnElement[str]:
    return left.op("||", return_type=sa.Text)(right)


def _search_config() -> sa.TextClause:
    return sa.text(f"'{SEARCH_CONFIG}'::regconfig")


# Indexes on expressions need the table's columns, so they are declared after the class.
_leads = table_of(Lead)
# Case-insensitive uniqueness without citext: (organization_id, lower(email)).
sa.Index(
    "ix_leads_organization_id_lower_email",
    _leads.c.organization_id,
    sa.func.lower(_leads.c.email),
    unique=True,
)
sa.Index("ix_leads_search", lead_search_vector(), postgresql_using="gin")
# Default listings (no status filter): live leads in keyset order (created_at, id). It also
# serves the top-scored leads, read in full and sorted: an index on score would cost every
# rescored lead a new entry in every index (see LEADS_FILLFACTOR).
sa.Index(
    None,
    _leads.c.organization_id,
    _leads.c.created_at,
    _leads.c.id,
    postgresql_where=_leads.c.deleted_at.is_(None),
)


class LeadCreate(LeadBase, CreateSchema):
    """Payload to create a lead; the repository stamps ``organization_id``."""


@patch_of(LeadBase)
class LeadUpdate(UpdateSchema):
    """Partial update of a lead; omitted fields stay as they are."""


class LeadRead(SoftDeleteRead, VersionRead, TimestampsRead, LeadBase, ReadSchema, TenantRead):
    """A lead as returned to callers."""
