"""n8n workflows: the templates an organization automates with, and their runs."""

import uuid
from typing import Annotated, ClassVar, Optional

import sqlalchemy as sa
from pydantic import AwareDatetime
from sqlmodel import SQLModel

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
    navigation,
    patch_of,
    tenant_fk,
    tenant_table_args,
)
from leaddb.models.enums import WorkflowExecutionStatus, WorkflowTrigger
from leaddb.models.fields import (
    JsonObject,
    Name,
    db_default,
    enum_field,
    json_field,
    text_field,
    timestamp_field,
)

__all__ = [
    "ErrorText",
    "N8nId",
    "OptionalN8nId",
    "Workflow",
    "WorkflowBase",
    "WorkflowCreate",
    "WorkflowExecution",
    "WorkflowExecutionBase",
    "WorkflowExecutionCreate",
    "WorkflowExecutionRead",
    "WorkflowExecutionUpdate",
    "WorkflowRead",
    "WorkflowUpdate",
]

N8nId = Annotated[str, text_field(64, min_length=1)]
"""An id n8n assigned (workflow or execution)."""
OptionalN8nId = Annotated[str | None, text_field(64)]
ErrorText = Annotated[str | None, text_field(10_000)]


class WorkflowBase(SQLModel):
    """Fields of a workflow template shared by the table and its schemas."""

    name: Name
    n8n_workflow_id: N8nId
    trigger: WorkflowTrigger = enum_field(WorkflowTrigger, default=WorkflowTrigger.MANUAL)
    definition: JsonObject = json_field()
    is_active: bool = db_default(True)


class Workflow(VersionMixin, TimestampsMixin, WorkflowBase, TenantMixin, table=True):
    """An n8n workflow an organization runs on its leads."""

    __tablename__ = "workflows"
    __entity_name__: ClassVar[str] = "workflow"
    executions: list["WorkflowExecution"] = navigation()
    __table_args__ = tenant_table_args(
        # Which workflows does this event start?
        sa.Index(None, "organization_id", "trigger", "is_active"),
    )


class WorkflowCreate(WorkflowBase, CreateSchema):
    """Payload to register a workflow."""


@patch_of(WorkflowBase)
class WorkflowUpdate(UpdateSchema):
    """Partial update of a workflow."""


class WorkflowRead(VersionRead, TimestampsRead, WorkflowBase, ReadSchema, TenantRead):
    """A workflow as returned to callers."""


class WorkflowExecutionBase(SQLModel):
    """Fields of a workflow run shared by the table and its schemas."""

    workflow_id: uuid.UUID
    lead_id: uuid.UUID | None = None
    status: WorkflowExecutionStatus = enum_field(
        WorkflowExecutionStatus, default=WorkflowExecutionStatus.PENDING
    )
    started_at: AwareDatetime | None = timestamp_field()
    finished_at: AwareDatetime | None = timestamp_field()
    input: JsonObject = json_field()
    output: JsonObject = json_field()
    error: ErrorText = None
    n8n_execution_id: OptionalN8nId = None


class WorkflowExecution(CreatedAtMixin, WorkflowExecutionBase, TenantMixin, table=True):
    """One run of a workflow, optionally about one lead."""

    __tablename__ = "workflow_executions"
    __entity_name__: ClassVar[str] = "workflow_execution"
    workflow: Optional["Workflow"] = navigation()
    __table_args__ = tenant_table_args(
        # A workflow's run history goes with the workflow.
        tenant_fk("workflow_id", "workflows", on_delete="cascade"),
        # Runs outlive the lead they were about; only lead_id is cleared.
        tenant_fk("lead_id", "leads", on_delete="set_null"),
        # A workflow's runs, newest last; also the index of the workflow FK.
        fk_index("workflow_id", "created_at"),
        fk_index("lead_id"),
        sa.CheckConstraint("finished_at >= started_at", name="finished_after_started"),
    )


class WorkflowExecutionCreate(WorkflowExecutionBase, CreateSchema):
    """Payload to record a run."""


@patch_of(WorkflowExecutionBase, exclude=("workflow_id",))
class WorkflowExecutionUpdate(UpdateSchema):
    """Partial update of a run (its progress and result); its workflow is fixed."""


class WorkflowExecutionRead(CreatedAtRead, WorkflowExecutionBase, ReadSchema, TenantRead):
    """A run as returned to callers."""
