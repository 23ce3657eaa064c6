"""The rescoring statement is compiled once per shape of the rules (``condition_shape``) and
later calls only gather the rules' values (``condition_values``; that they are the values
``condition`` binds, in its order, is checked over every rule case in
tests/integration/test_scoring_conditions.py)."""

from __future__ import annotations

from leaddb.scoring import parse_rule
from leaddb.scoring.sql import condition_shape


def test_rules_that_differ_only_in_their_values_share_a_shape() -> None:
    assert condition_shape(parse_rule("estimated_value", "gte", 10)) == condition_shape(
        parse_rule("estimated_value", "gte", 90)
    )
    assert condition_shape(parse_rule("estimated_value", "gte", 10)) != condition_shape(
        parse_rule("estimated_value", "lte", 10)
    )
    assert condition_shape(parse_rule("email", "exists", True)) != condition_shape(
        parse_rule("email", "exists", False)
    )
