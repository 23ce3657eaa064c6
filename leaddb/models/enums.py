"""Enumerations of leaddb: Python ``StrEnum``s whose lowercase values are the PostgreSQL labels.

Each enum becomes exactly one PostgreSQL enum type, named in snake_case after the class
(``LeadStatus`` -> ``lead_status``); :func:`leaddb.models.base.enum_type` builds that type. Add a
value at the end of a class and let the migration add it (``ALTER TYPE ... ADD VALUE``); never
rename or remove a value without a migration that rewrites the rows first.
"""

from enum import StrEnum

__all__ = [
    "ActivityAction",
    "CampaignLeadStatus",
    "CampaignStatus",
    "CampaignType",
    "CommunicationChannel",
    "CommunicationDirection",
    "CommunicationStatus",
    "IntegrationProvider",
    "IntegrationStatus",
    "LeadSource",
    "LeadStatus",
    "LeadTemperature",
    "ScoringOperator",
    "SubscriptionTier",
    "UserRole",
    "WorkflowExecutionStatus",
    "WorkflowTrigger",
]


class SubscriptionTier(StrEnum):
    """Billing plan of an organization."""

    FREE = "free"
    STARTER = "starter"
    PRO = "pro"
    ENTERPRISE = "enterprise"


class UserRole(StrEnum):
    """What a user may do inside their organization, from most to least powerful."""

    OWNER = "owner"
    ADMIN = "admin"
    MANAGER = "manager"
    AGENT = "agent"
    VIEWER = "viewer"


class LeadSource(StrEnum):
    """Where a lead came from."""

    WEB = "web"
    REFERRAL = "referral"
    IMPORT = "import"
    LINKEDIN = "linkedin"
    EVENT = "event"
    OUTBOUND = "outbound"
    API = "api"
    OTHER = "other"


class LeadStatus(StrEnum):
    """Pipeline stage of a lead; ``won`` and ``lost`` are terminal."""

    NEW = "new"
    CONTACTED = "contacted"
    QUALIFIED = "qualified"
    PROPOSAL = "proposal"
    NEGOTIATION = "negotiation"
    WON = "won"
    LOST = "lost"


class LeadTemperature(StrEnum):
    """Score band of a lead; the thresholds live in the organization's settings."""

    COLD = "cold"
    WARM = "warm"
    HOT = "hot"


class WorkflowTrigger(StrEnum):
    """Event that starts an n8n workflow."""

    MANUAL = "manual"
    LEAD_CREATED = "lead_created"
    STATUS_CHANGED = "status_changed"
    SCORE_CHANGED = "score_changed"
    SCHEDULE = "schedule"
    WEBHOOK = "webhook"


class WorkflowExecutionStatus(StrEnum):
    """Lifecycle of one n8n workflow run."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ActivityAction(StrEnum):
    """What happened to an entity, as recorded in the audit trail."""

    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"
    RESTORED = "restored"
    RESCORED = "rescored"
    ASSIGNED = "assigned"
    UNASSIGNED = "unassigned"
    STATUS_CHANGED = "status_changed"
    ENROLLED = "enrolled"
    LOGGED_IN = "logged_in"
    EXPORTED = "exported"


class ScoringOperator(StrEnum):
    """Comparison a lead-scoring rule applies between a lead field and the rule's value."""

    EQ = "eq"
    NE = "ne"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    IN = "in"
    NOT_IN = "not_in"
    CONTAINS = "contains"
    EXISTS = "exists"
    WITHIN_DAYS = "within_days"
    OLDER_THAN_DAYS = "older_than_days"


class CommunicationChannel(StrEnum):
    """Medium of a communication with a lead."""

    EMAIL = "email"
    SMS = "sms"
    CALL = "call"
    LINKEDIN = "linkedin"
    MEETING = "meeting"
    OTHER = "other"


class CommunicationDirection(StrEnum):
    """Whether the lead sent it (inbound) or we did (outbound)."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"


class CommunicationStatus(StrEnum):
    """Delivery state of a communication, roughly in lifecycle order."""

    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    OPENED = "opened"
    CLICKED = "clicked"
    REPLIED = "replied"
    BOUNCED = "bounced"
    FAILED = "failed"


class CampaignType(StrEnum):
    """Kind of campaign."""

    EMAIL = "email"
    SEQUENCE = "sequence"
    EVENT = "event"
    ADS = "ads"
    OTHER = "other"


class CampaignStatus(StrEnum):
    """Lifecycle of a campaign."""

    DRAFT = "draft"
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    ARCHIVED = "archived"


class CampaignLeadStatus(StrEnum):
    """Progress of one lead through one campaign."""

    ENROLLED = "enrolled"
    CONTACTED = "contacted"
    RESPONDED = "responded"
    CONVERTED = "converted"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"


class IntegrationProvider(StrEnum):
    """External system an integration connects to."""

    N8N = "n8n"
    HUBSPOT = "hubspot"
    SALESFORCE = "salesforce"
    GMAIL = "gmail"
    OUTLOOK = "outlook"
    SLACK = "slack"
    ZAPIER = "zapier"
    WEBHOOK = "webhook"
    OTHER = "other"


class IntegrationStatus(StrEnum):
    """Health of an integration."""

    ACTIVE = "active"
    PAUSED = "paused"
    ERROR = "error"
    DISCONNECTED = "disconnected"
