"""``ScoringEngine``: scores one organization's leads with its active rules (``uow.scoring``).

Three ways in: ``score()`` evaluates rules in Python and touches nothing; ``rescore(lead_id)``
scores one lead in Python and stores the result with one UPDATE; ``rescore_organization()``
rescores every live lead of the tenant with one set-based statement compiled from the rules.
Both stored paths write a score-history row only for a lead whose score or temperature changed,
bump its version, audit the run once, and tell the unit of work what the cache must forget.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

import orjson
from pydantic import JsonValue

from leaddb.connections.driver_errors import run
from leaddb.errors import NotFoundError
from leaddb.models import Lead, LeadBase, LeadScoreHistory, LeadScoringRule, Organization
from leaddb.models.organization import TemperatureThresholds
from leaddb.repositories.reads import as_uuid
from leaddb.rows.hydrate import Hydrator
from leaddb.scoring.evaluate import ScoringRules, score_lead, utc_now
from leaddb.scoring.results import LeadRescore, RescoreSummary, ScoreResult
from leaddb.scoring.sql import (
    organization_audit,
    rescore_lead_statement,
    rescore_organization_statement,
    select_lead,
    select_organization,
)

if TYPE_CHECKING:
    from leaddb.repositories.scoring_rules import LeadScoringRuleRepository
    from leaddb.repositories.work import TenantWork

__all__ = ["ScoringEngine"]

LEAD_ENTITY = Lead.__entity_name__
HISTORY_ENTITY = LeadScoreHistory.__entity_name__
AUDIT_ENTITY = "activity_log"
RESCORE_REASON = "rescore"
RESCORE_ORGANIZATION_REASON = "rescore_organization"

_leads = Hydrator(Lead)
_organizations = Hydrator(Organization)
_SELECT_LEAD = select_lead()
_SELECT_ORGANIZATION = select_organization()
_RESCORE_LEAD = rescore_lead_statement(audit=False)
_RESCORE_LEAD_AUDITED = rescore_lead_statement(audit=True)
_ORGANIZATION_AUDIT = organization_audit()


class ScoringEngine:
    """The lead-scoring engine of one tenant unit of work (``uow.scoring``).

    Every statement runs in the unit of work's transaction (and so under its row-level
    security); nothing is committed until ``uow.commit()``, which also invalidates the cache.
    """

    def __init__(self, uow: TenantWork, rules: LeadScoringRuleRepository) -> None:
        self._uow = uow
        self._rules = rules

    async def thresholds(self) -> TemperatureThresholds:
        """The organization's temperature bands (defaults: cold < 30 <= warm < 70 <= hot)."""
        uow = self._uow
        connection = await uow.statement_connection()
        row = await run(
            connection.fetchrow,
            _SELECT_ORGANIZATION.text,
            *_SELECT_ORGANIZATION.args((uow.require_tenant(),)),
        )
        if row is None:
            raise NotFoundError(Organization.__entity_name__, str(uow.tenant_id))
        return _organizations.one(row).temperature_thresholds()

    async def load_rules(self) -> ScoringRules:
        """The active rules, parsed and in evaluation order, with the temperature bands:
        load once, then ``score()`` any number of leads with them."""
        rules = await self._rules.active()
        return ScoringRules.parse(rules, await self.thresholds())

    def score(
        self,
        lead: LeadBase,
        rules: ScoringRules | Iterable[LeadScoringRule],
        thresholds: TemperatureThresholds | None = None,
        *,
        now: datetime | None = None,
    ) -> ScoreResult:
        """Score ``lead`` in Python, without touching the database.

        ``rules`` is what ``load_rules()`` returned, or rule rows (inactive ones are ignored;
        ones that do not parse are skipped and listed in the result). ``thresholds`` overrides
        the bands (default: those of ``rules``, else cold < 30 <= warm < 70 <= hot). Day-based
        rules are relative to ``now`` (timezone-aware; default the current time).
        """
        parsed = rules if isinstance(rules, ScoringRules) else ScoringRules.parse(rules)
        if thresholds is not None and thresholds != parsed.thresholds:
            parsed = ScoringRules(parsed.rules, parsed.skipped, thresholds)
        return score_lead(lead, parsed, utc_now(now))

    async def rescore(self, lead_id: uuid.UUID, *, now: datetime | None = None) -> LeadRescore:
        """Score one live lead with the active rules and store the result.

        The lead is locked, scored in Python, and, when its score or temperature changes,
        updated by one statement that also bumps its version and writes a history row and an
        audit row. NotFoundError when the lead does not exist here or is deleted.
        """
        moment = utc_now(now)
        key = as_uuid(lead_id)
        if key is None:
            raise NotFoundError(LEAD_ENTITY, str(lead_id))
        rules = await self.load_rules()
        return await self._rescore_one(key, rules, moment, reason=RESCORE_REASON, audit=True)

    async def _rescore_one(
        self,
        key: uuid.UUID,
        rules: ScoringRules,
        moment: datetime,
        *,
        reason: str,
        audit: bool,
    ) -> LeadRescore:
        uow = self._uow
        tenant = uow.require_tenant()
        connection = await uow.statement_connection()
        row = await run(connection.fetchrow, _SELECT_LEAD.text, *_SELECT_LEAD.args((tenant, key)))
        if row is None:
            raise NotFoundError(LEAD_ENTITY, str(key))
        lead = _leads.one(row)
        result = score_lead(lead, rules, moment)
        old_score, old_temperature = lead.score, lead.temperature
        if (result.score, result.temperature) == (old_score, old_temperature):
            return LeadRescore(lead, result, old_score, old_temperature)
        breakdown = result.breakdown()
        args: list[object] = [
            tenant,
            key,
            result.score,
            result.temperature.value,
            old_score,
            old_temperature.value,
            reason,
            orjson.dumps(breakdown).decode(),
        ]
        if audit:
            changes: dict[str, JsonValue] = {
                "before": {"score": old_score, "temperature": old_temperature.value},
                "after": {"score": result.score, "temperature": result.temperature.value},
                **breakdown,
                "now": moment.isoformat(),
            }
            args += [uow.actor_id, orjson.dumps(changes).decode()]
        sql = _RESCORE_LEAD_AUDITED if audit else _RESCORE_LEAD
        written = await run(connection.fetchrow, sql.text, *sql.args(args))
        if written is None:  # cannot happen while the row lock is held
            raise NotFoundError(LEAD_ENTITY, str(key))
        data = dict(written)
        history_id, audit_id = data.pop("_history_id"), data.pop("_audit_id")
        uow.record_write(LEAD_ENTITY, (key,))
        uow.record_created(HISTORY_ENTITY, (history_id,))
        if audit_id is not None:
            uow.record_created(AUDIT_ENTITY, (audit_id,))
        return LeadRescore(_leads.one(data), result, old_score, old_temperature)

    async def rescore_organization(self, *, now: datetime | None = None) -> RescoreSummary:
        """Rescore every live lead of the tenant with one set-based statement.

        The active rules are compiled into the statement (every value a bind parameter);
        leads whose score or temperature changes are updated (version and ``updated_at``
        bumped) and get one history row each. A lead a concurrent transaction changed while
        the statement ran is rescored on its own right after (``retried``). The run writes
        exactly one audit row (entity ``organization``, action ``rescored``). Rules that
        cannot be evaluated are skipped and reported. ``now`` anchors the day-based rules
        (default: the current time).
        """
        moment = utc_now(now)
        uow = self._uow
        tenant = uow.require_tenant()
        rules = await self.load_rules()
        statement = rescore_organization_statement(
            rules.rules,
            tenant=tenant,
            now=moment,
            thresholds=rules.thresholds,
            reason=RESCORE_ORGANIZATION_REASON,
        )
        connection = await uow.statement_connection()
        row = await run(connection.fetchrow, statement.text, *statement.args)
        # Which leads changed is not listed (that would cost a row per lead): the cache drops
        # this tenant's cached leads wholesale at commit, and history rows are read from the
        # transaction until then.
        uow.record_bulk_write(LEAD_ENTITY)
        uow.record_bulk_write(HISTORY_ENTITY)
        changed, retried = int(row["changed"]), 0
        for lead_id in row["conflicts"] or ():
            try:
                outcome = await self._rescore_one(
                    lead_id, rules, moment, reason=RESCORE_ORGANIZATION_REASON, audit=False
                )
            except NotFoundError:
                continue  # deleted in the meantime: nothing to score
            retried += 1
            changed += outcome.changed
        rule_ids = tuple(rule.rule_id for rule in rules.rules)
        summary = RescoreSummary(
            scored=int(row["scored"]),
            changed=changed,
            retried=retried,
            rules=rule_ids,
            skipped=rules.skipped,
            now=moment,
        )
        changes = {
            "scored": summary.scored,
            "changed": summary.changed,
            "retried": summary.retried,
            "rules": [str(rule_id) for rule_id in rule_ids],
            "skipped": [str(skipped.rule_id) for skipped in rules.skipped],
            "now": moment.isoformat(),
        }
        audit_id = await run(
            connection.fetchval,
            _ORGANIZATION_AUDIT.text,
            *_ORGANIZATION_AUDIT.args((tenant, uow.actor_id, orjson.dumps(changes).decode())),
        )
        uow.record_created(AUDIT_ENTITY, (audit_id,))
        return summary
