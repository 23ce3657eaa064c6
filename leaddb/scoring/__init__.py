"""Lead scoring: rules evaluated in Python (``score``) or compiled into one set-based statement
(``rescore_organization``), with identical results; see :class:`ScoringEngine`.

``uow.scoring`` is the engine of a tenant unit of work::

    async with db.tenant(org.id) as uow:
        summary = await uow.scoring.rescore_organization()   # RescoreSummary(scored, changed, ...)
        await uow.commit()

The rule grammar (fields, operators, values, semantics) is :mod:`leaddb.models.rule_grammar`.
"""

from leaddb.models.rule_grammar import (
    OPERATORS_BY_KIND,
    SCORING_FIELDS,
    ParsedRule,
    RuleTarget,
    ScoringFieldKind,
    parse_rule,
)
from leaddb.scoring.engine import ScoringEngine
from leaddb.scoring.evaluate import CompiledRule, ScoringRules
from leaddb.scoring.results import LeadRescore, RescoreSummary, RuleMatch, ScoreResult, SkippedRule

__all__ = [
    "OPERATORS_BY_KIND",
    "SCORING_FIELDS",
    "CompiledRule",
    "LeadRescore",
    "ParsedRule",
    "RescoreSummary",
    "RuleMatch",
    "RuleTarget",
    "ScoreResult",
    "ScoringEngine",
    "ScoringFieldKind",
    "ScoringRules",
    "SkippedRule",
    "parse_rule",
]
