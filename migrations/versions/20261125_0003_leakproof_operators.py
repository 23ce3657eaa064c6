"""Let row-level security keep leaddb's indexes usable.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

Under row-level security PostgreSQL evaluates the policy before any condition of the query that
is not LEAKPROOF, so such a condition cannot drive an index scan: filtering leads by status (an
enum), by tags or custom fields (GIN), by full-text search, or by lower(email) would scan every
row of the table instead. The functions below cannot raise an error or reveal anything about the
values they compare (enum comparisons compare sort positions; containment, overlap and text
matching only answer true or false), so they are marked LEAKPROOF in this database.

Only a superuser may do this. Without one the migration goes on, a NOTICE says so, and those
filters stay correct but slower (docs/operations.md). Marking is per database: keep leaddb in a
database of its own.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTIONS = (
    "enum_eq(anyenum, anyenum)",
    "enum_ne(anyenum, anyenum)",
    "enum_lt(anyenum, anyenum)",
    "enum_le(anyenum, anyenum)",
    "enum_gt(anyenum, anyenum)",
    "enum_ge(anyenum, anyenum)",
    "arraycontains(anyarray, anyarray)",
    "arrayoverlap(anyarray, anyarray)",
    "jsonb_contains(jsonb, jsonb)",
    "ts_match_vq(tsvector, tsquery)",
    "lower(text)",
)


def _set(leakproof: bool) -> None:
    word = "LEAKPROOF" if leakproof else "NOT LEAKPROOF"
    statements = " ".join(f"ALTER FUNCTION {function} {word};" for function in FUNCTIONS)
    op.execute(
        f"DO $$ BEGIN {statements} "
        "EXCEPTION WHEN insufficient_privilege THEN "
        "RAISE NOTICE 'leaddb: not a superuser, so enum, array, JSON and text-search filters "
        "cannot use their indexes under row-level security'; END $$"
    )


def upgrade() -> None:
    _set(leakproof=True)


def downgrade() -> None:
    _set(leakproof=False)
