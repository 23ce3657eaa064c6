"""n8n workflow templates and their executions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import ClassVar

from pydantic import BaseModel, JsonValue
from sqlalchemy import ColumnElement, and_, extract, func, select

from leaddb.connections.driver_errors import run
from leaddb.errors import InvalidValueError
from leaddb.models import (
    Workflow,
    WorkflowCreate,
    WorkflowExecution,
    WorkflowExecutionCreate,
    WorkflowExecutionStatus,
    WorkflowExecutionUpdate,
    WorkflowUpdate,
)
from leaddb.models.base import table_of
from leaddb.repositories.base import Repository
from leaddb.sql.compile import Positional, compile_positional, inline, param
from leaddb.sql.statements import aliased


def _stats() -> Positional:
    w = aliased(table_of(Workflow), "w")
    e = aliased(table_of(WorkflowExecution), "e")

    def with_status(status: WorkflowExecutionStatus) -> ColumnElement[int]:
        return func.count(e.c.id).filter(e.c.status == inline(status.value))

    finished = and_(e.c.finished_at.is_not(None), e.c.started_at.is_not(None))
    duration = func.avg(extract("epoch", e.c.finished_at - e.c.started_at)).filter(finished)
    statement = (
        select(
            w.c.id.label("workflow_id"),
            w.c.name,
            func.count(e.c.id).label("executions"),
            with_status(WorkflowExecutionStatus.SUCCEEDED).label("succeeded"),
            with_status(WorkflowExecutionStatus.FAILED).label("failed"),
            duration.label("mean_duration_seconds"),
        )
        .select_from(
            w.outerjoin(
                e, and_(e.c.organization_id == w.c.organization_id, e.c.workflow_id == w.c.id)
            )
        )
        .where(w.c.organization_id == param("tenant", w.c.organization_id.type))
        .group_by(w.c.id, w.c.name)
        .order_by(w.c.name, w.c.id)
    )
    return compile_positional(statement, ("tenant",))


_STATS_SQL = _stats()

FINAL_STATUSES = frozenset(
    {
        WorkflowExecutionStatus.SUCCEEDED,
        WorkflowExecutionStatus.FAILED,
        WorkflowExecutionStatus.CANCELLED,
    }
)


class WorkflowStats(BaseModel):
    """How a workflow has been doing."""

    workflow_id: uuid.UUID
    name: str
    executions: int
    succeeded: int
    failed: int
    mean_duration_seconds: float | None

    @property
    def success_rate(self) -> float | None:
        finished = self.succeeded + self.failed
        return None if finished == 0 else self.succeeded / finished


class WorkflowRepository(Repository[Workflow, WorkflowCreate, WorkflowUpdate]):
    """n8n workflow templates of one organization."""

    model: ClassVar[type[Workflow]] = Workflow

    async def stats(self) -> list[WorkflowStats]:
        """Executions, success rate and mean duration of every workflow."""
        connection = await self._connection()
        rows = await run(
            connection.fetch, _STATS_SQL.text, *_STATS_SQL.args((self._uow.require_tenant(),))
        )
        return [
            WorkflowStats(
                workflow_id=row["workflow_id"],
                name=row["name"],
                executions=row["executions"],
                succeeded=row["succeeded"],
                failed=row["failed"],
                mean_duration_seconds=(
                    None
                    if row["mean_duration_seconds"] is None
                    else float(row["mean_duration_seconds"])
                ),
            )
            for row in rows
        ]


class WorkflowExecutionRepository(
    Repository[WorkflowExecution, WorkflowExecutionCreate, WorkflowExecutionUpdate]
):
    """Runs of workflows."""

    model: ClassVar[type[WorkflowExecution]] = WorkflowExecution

    async def start(
        self,
        workflow_id: uuid.UUID,
        *,
        lead_id: uuid.UUID | None = None,
        input: dict[str, JsonValue] | None = None,
        n8n_execution_id: str | None = None,
    ) -> WorkflowExecution:
        """Record that a run has started (status running, started now)."""
        return await self.create(
            WorkflowExecutionCreate(
                workflow_id=workflow_id,
                lead_id=lead_id,
                status=WorkflowExecutionStatus.RUNNING,
                started_at=datetime.now(UTC),
                input=input or {},
                n8n_execution_id=n8n_execution_id,
            )
        )

    async def finish(
        self,
        execution_id: uuid.UUID,
        status: WorkflowExecutionStatus,
        *,
        output: dict[str, JsonValue] | None = None,
        error: str | None = None,
    ) -> WorkflowExecution:
        """Record how a run ended (succeeded, failed or cancelled; finished now)."""
        if status not in FINAL_STATUSES:
            raise InvalidValueError(
                f"a run finishes as one of {sorted(FINAL_STATUSES)}, not {status!r}",
                field="status",
            )
        patch = WorkflowExecutionUpdate(
            status=status, finished_at=datetime.now(UTC), output=output or {}, error=error
        )
        return await self.update(execution_id, patch)
