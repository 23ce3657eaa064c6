"""Lead scoring: the rules an organization scores its leads with, and the history of scores.

The Create and Update schemas of a rule check its field, operator and value against the rule
grammar of :mod:`leaddb.models.rule_grammar`.
"""

import uuid
from typing import Annotated, ClassVar, Final, Self

import sqlalchemy as sa
from annotated_types import Interval
from pydantic import field_validator, model_validator
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
    patch_of,
    tenant_fk,
    tenant_table_args,
)
from leaddb.models.enums import LeadTemperature, ScoringOperator
from leaddb.models.fields import (
    SCORE_MAX,
    SCORE_MIN,
    Json,
    JsonObject,
    Name,
    Score,
    db_default,
    enum_field,
    json_field,
    text_field,
)
from leaddb.models.rule_grammar import (
    check_operand_shape,
    check_operator,
    parse_rule,
    rule_target,
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
"""The lead field a rule looks at: a scorable column or ``custom_fields.<key>``
(``leaddb.models.rule_grammar.SCORING_FIELDS``)."""
ScoreReason = Annotated[str | None, text_field(500)]
Operator = Annotated[ScoringOperator, enum_field(ScoringOperator)]
Temperature = Annotated[LeadTemperature, enum_field(LeadTemperature)]


class LeadScoringRuleBase(SQLModel):
    """Fields of a scoring rule shared by the table and its schemas."""

    name: Name
    field: RuleField
    operator: Operator
    # Any JSON value (a number, a string, a list for in/not_in, null for exists).
    value: Json = Field(default=None, nullable=True, sa_type=JSONB)
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
    """Payload to create a scoring rule; field, operator and value are checked together, and
    a ValidationError says which of them is wrong and why."""

    @field_validator("field")
    @classmethod
    def _scorable_field(cls, field: str) -> str:
        rule_target(field)
        return field

    @model_validator(mode="after")
    def _valid_condition(self) -> Self:
        parse_rule(self.field, self.operator, self.value)
        return self


@patch_of(LeadScoringRuleBase)
class LeadScoringRuleUpdate(UpdateSchema):
    """Partial update of a scoring rule."""

    # check_fields=False: the field comes from LeadScoringRuleBase through patch_of, after
    # this class body is made.
    @field_validator("field", check_fields=False)
    @classmethod
    def _scorable_field(cls, field: str) -> str:
        rule_target(field)
        return field

    @model_validator(mode="after")
    def _valid_parts(self) -> Self:
        """Check what the patch says by itself; the repository checks the merged rule.

        A patch may change the value alone (its field and operator are in the stored rule),
        so only the parts given together can be checked here.
        """
        has_value = "value" in self.model_fields_set
        if self.field is not None and self.operator is not None:
            if has_value:
                parse_rule(self.field, self.operator, self.value)
            else:
                check_operator(rule_target(self.field), self.operator)
        elif self.operator is not None and has_value:
            check_operand_shape(self.operator, self.value)
        return self


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
        # No foreign key of its own to organizations: the composite key to its lead already
        # names an existing organization (and cascades from it through the lead), while a
        # second key check per row cost a 100,000-lead rescore about 0.6 s.
        organization_fk=False,
    )


class LeadScoreHistoryCreate(LeadScoreHistoryBase, CreateSchema):
    """Payload of one history row."""


class LeadScoreHistoryUpdate(UpdateSchema):
    """Score history is append-only: this schema has no field, so no update can change a row."""


class LeadScoreHistoryRead(CreatedAtRead, LeadScoreHistoryBase, ReadSchema, TenantRead):
    """A score change as returned to callers."""
