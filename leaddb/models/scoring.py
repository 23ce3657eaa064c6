"""Lead scoring: the rules an organization scores its leads with, and the history of scores."""

import uuid
from typing import Annotated, ClassVar, Final

import sqlalchemy as sa
from annotated_types import Interval
from pydantic import JsonValue
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from leaddb.models.base import (
    CreatedAtMixin,
    CreatedAtRead,
    CreateSchema,
    ReadSchema,
    TenantMixin,
    TenantRead,
    TimestampsMixin,
    TimestampsRead,
    UpdateSchema,
    VersionMixin,
    VersionRead,
    fk_index,
    tenant_fk,
    tenant_table_args,
)
from leaddb.models.enums import LeadTemperature, ScoringOperator
from leaddb.models.fields import (
    SCORE_MAX,
    SCORE_MIN,
    JsonObject,
    Name,
    Score,
    db_default,
    enum_field,
    json_field,
    text_field,
)

__all__ = [
    "POINTS_MAX",
    "POINTS_MIN",
    "PRIORITY_MAX",
    "LeadScoreHistory",
    "LeadScoreHistoryBase",
    "LeadScoreHistoryCreate",
    "LeadScoreHistoryRead",
    "LeadScoreHistoryUpdate",
    "LeadScoringRule",
    "LeadScoringRuleBase",
    "LeadScoringRuleCreate",
    "LeadScoringRuleRead",
    "LeadScoringRuleUpdate",
    "Operator",
    "Points",
    "Priority",
    "RuleField",
    "ScoreReason",
    "Temperature",
]

POINTS_MIN: Final = -100
POINTS_MAX: Final = 100
PRIORITY_MAX: Final = 10_000

Points = Annotated[int, Interval(ge=POINTS_MIN, le=POINTS_MAX)]
"""What a matching rule adds to a lead's score (negative rules subtract)."""
Priority = Annotated[int, Interval(ge=0, le=PRIORITY_MAX)]
"""Order in which rules are evaluated (ascending)."""
RuleField = Annotated[str, text_field(100, min_length=1)]
"""The lead field a rule looks at (the allow-list is checked by the scoring engine)."""
ScoreReason = Annotated[str | None, text_field(500)]
Operator = Annotated[ScoringOperator, enum_field(ScoringOperator)]
Temperature = Annotated[LeadTemperature, enum_field(LeadTemperature)]


class LeadScoringRuleBase(SQLModel):
    """Fields of a scoring rule shared by the table and its schemas."""

    name: Name
    field: RuleField
    operator: Operator
    # Any JSON value (a number, a string, a list for in/not_in, null for exists).
    value: JsonValue = Field(default=None, nullable=True, sa_type=JSONB)
    points: Points
    priority: Priority = db_default(0)
    is_active: bool = db_default(True)


class LeadScoringRule(VersionMixin, TimestampsMixin, LeadScoringRuleBase, TenantMixin, table=True):
    """One rule: when ``<lead.field> <operator> <value>`` holds, add ``points``."""

    __tablename__ = "lead_scoring_rules"
    __entity_name__: ClassVar[str] = "lead_scoring_rule"
    __table_args__ = tenant_table_args(
        sa.CheckConstraint(f"points BETWEEN {POINTS_MIN} AND {POINTS_MAX}", name="points_range"),
        sa.CheckConstraint(f"priority BETWEEN 0 AND {PRIORITY_MAX}", name="priority_range"),
        # The engine loads an organization's active rules in priority order.
        sa.Index(None, "organization_id", "is_active", "priority"),
    )


class LeadScoringRuleCreate(LeadScoringRuleBase, CreateSchema):
    """Payload to create a scoring rule."""


class LeadScoringRuleUpdate(UpdateSchema):
    """Partial update of a scoring rule."""

    name: Name | None = None
    field: RuleField | None = None
    operator: Operator | None = None
    value: JsonValue = None
    points: Points | None = None
    priority: Priority | None = None
    is_active: bool | None = None


class LeadScoringRuleRead(VersionRead, TimestampsRead, LeadScoringRuleBase, ReadSchema, TenantRead):
    """A scoring rule as returned to callers."""


class LeadScoreHistoryBase(SQLModel):
    """One change of a lead's score, as the scoring engine records it."""

    lead_id: uuid.UUID
    old_score: Score
    new_score: Score
    old_temperature: Temperature
    new_temperature: Temperature
    reason: ScoreReason = None
    # Points per rule that matched, e.g. {"rules": [{"rule_id": "...", "points": 10}]}.
    breakdown: JsonObject = json_field()


class LeadScoreHistory(CreatedAtMixin, LeadScoreHistoryBase, TenantMixin, table=True):
    """Append-only: rows are inserted by the scoring engine and never updated."""

    __tablename__ = "lead_score_history"
    __entity_name__: ClassVar[str] = "lead_score_history"
    __table_args__ = tenant_table_args(
        # A lead's score history goes with the lead.
        tenant_fk("lead_id", "leads", on_delete="cascade"),
        fk_index("lead_id", "created_at"),
        sa.CheckConstraint(
            f"old_score BETWEEN {SCORE_MIN} AND {SCORE_MAX}", name="old_score_range"
        ),
        sa.CheckConstraint(
            f"new_score BETWEEN {SCORE_MIN} AND {SCORE_MAX}", name="new_score_range"
        ),
    )


class LeadScoreHistoryCreate(LeadScoreHistoryBase, CreateSchema):
    """Payload of one history row."""


class LeadScoreHistoryUpdate(UpdateSchema):
    """Score history is append-only: this schema has no field, so no update can change a row."""


class LeadScoreHistoryRead(CreatedAtRead, LeadScoreHistoryBase, ReadSchema, TenantRead):
    """A score change as returned to callers."""
