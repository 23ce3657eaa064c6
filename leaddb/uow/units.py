"""The two kinds of unit of work a service opens: per tenant, and for the platform.

Each exposes its repositories as attributes, built on first use; a platform unit of work has no
tenant repositories, so tenant data cannot be reached through it by accident.
"""

from __future__ import annotations

import uuid
from functools import cached_property
from typing import TYPE_CHECKING

from leaddb.errors import TenantViolationError
from leaddb.uow.base import UnitOfWork

if TYPE_CHECKING:
    from leaddb.connections.pool import ConnectionPool
    from leaddb.connections.replicas import ReplicaRouter
    from leaddb.repositories.activity import ActivityLogRepository
    from leaddb.repositories.campaigns import CampaignLeadRepository, CampaignRepository
    from leaddb.repositories.communications import CommunicationRepository
    from leaddb.repositories.integrations import IntegrationRepository
    from leaddb.repositories.leads import (
        LeadAssignmentRepository,
        LeadNoteRepository,
        LeadRepository,
        LeadScoreHistoryRepository,
    )
    from leaddb.repositories.organizations import OrganizationRepository
    from leaddb.repositories.scoring_rules import LeadScoringRuleRepository
    from leaddb.repositories.users import PlatformUserRepository, UserRepository
    from leaddb.repositories.views import ViewRepository
    from leaddb.repositories.workflows import WorkflowExecutionRepository, WorkflowRepository
    from leaddb.scoring import ScoringEngine
    from leaddb.uow.base import Host


class TenantUnitOfWork(UnitOfWork):
    """A unit of work scoped to one organization: every repository filters by it."""

    tenant_id: uuid.UUID

    def __init__(
        self,
        db: Host,
        pool: ConnectionPool,
        tenant_id: uuid.UUID,
        *,
        actor_id: uuid.UUID | None,
        read_only: bool = False,
        router: ReplicaRouter | None = None,
    ) -> None:
        if not isinstance(tenant_id, uuid.UUID):
            raise TenantViolationError(f"a tenant is an organization's UUID, not {tenant_id!r}")
        super().__init__(
            db, pool, tenant_id=tenant_id, actor_id=actor_id, read_only=read_only, router=router
        )

    @cached_property
    def leads(self) -> LeadRepository:
        from leaddb.repositories.leads import LeadRepository

        return LeadRepository(self, siblings=self)

    @cached_property
    def users(self) -> UserRepository:
        from leaddb.repositories.users import UserRepository

        return UserRepository(self)

    @cached_property
    def campaigns(self) -> CampaignRepository:
        from leaddb.repositories.campaigns import CampaignRepository

        return CampaignRepository(self)

    @cached_property
    def campaign_leads(self) -> CampaignLeadRepository:
        from leaddb.repositories.campaigns import CampaignLeadRepository

        return CampaignLeadRepository(self)

    @cached_property
    def communications(self) -> CommunicationRepository:
        from leaddb.repositories.communications import CommunicationRepository

        return CommunicationRepository(self)

    @cached_property
    def workflows(self) -> WorkflowRepository:
        from leaddb.repositories.workflows import WorkflowRepository

        return WorkflowRepository(self)

    @cached_property
    def workflow_executions(self) -> WorkflowExecutionRepository:
        from leaddb.repositories.workflows import WorkflowExecutionRepository

        return WorkflowExecutionRepository(self)

    @cached_property
    def integrations(self) -> IntegrationRepository:
        from leaddb.repositories.integrations import IntegrationRepository

        return IntegrationRepository(self)

    @cached_property
    def scoring_rules(self) -> LeadScoringRuleRepository:
        from leaddb.repositories.scoring_rules import LeadScoringRuleRepository

        return LeadScoringRuleRepository(self)

    @cached_property
    def score_history(self) -> LeadScoreHistoryRepository:
        from leaddb.repositories.leads import LeadScoreHistoryRepository

        return LeadScoreHistoryRepository(self)

    @cached_property
    def notes(self) -> LeadNoteRepository:
        from leaddb.repositories.leads import LeadNoteRepository

        return LeadNoteRepository(self)

    @cached_property
    def assignments(self) -> LeadAssignmentRepository:
        from leaddb.repositories.leads import LeadAssignmentRepository

        return LeadAssignmentRepository(self)

    @cached_property
    def activity(self) -> ActivityLogRepository:
        from leaddb.repositories.activity import ActivityLogRepository

        return ActivityLogRepository(self)

    @cached_property
    def scoring(self) -> ScoringEngine:
        """The lead-scoring engine of this tenant."""
        from leaddb.scoring import ScoringEngine

        return ScoringEngine(self, self.scoring_rules)

    @cached_property
    def views(self) -> ViewRepository:
        from leaddb.repositories.views import ViewRepository

        return ViewRepository(self)


class PlatformUnitOfWork(UnitOfWork):
    """Work above any one tenant: organizations, and finding a user by email to log in.

    It has no tenant repositories, so tenant data cannot be reached through it by accident.
    """

    def __init__(
        self,
        db: Host,
        pool: ConnectionPool,
        *,
        actor_id: uuid.UUID | None = None,
        read_only: bool = False,
        router: ReplicaRouter | None = None,
    ) -> None:
        super().__init__(
            db, pool, tenant_id=None, actor_id=actor_id, read_only=read_only, router=router
        )

    @cached_property
    def organizations(self) -> OrganizationRepository:
        from leaddb.repositories.organizations import OrganizationRepository

        return OrganizationRepository(self)

    @cached_property
    def users(self) -> PlatformUserRepository:
        from leaddb.repositories.users import PlatformUserRepository

        return PlatformUserRepository(self)
