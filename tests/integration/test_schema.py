"""The migrated database, introspected through pg_catalog: every table, its keys, the composite
tenant foreign keys and the indexes behind them, enum types, views, the special indexes, bounded
text, and the ``leaddb_uuid7()`` function. The unit tests check the same rules on the models;
these check what the migrations actually built."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from conftest import asyncpg_dsn

from leaddb.models import metadata, views_metadata

TENANT_TABLES = sorted(set(metadata.tables) - {"organizations"})

# Key columns of every constraint, in key order.
CONSTRAINTS = """
SELECT c.conrelid::regclass::text AS table_name, c.conname AS name, c.contype::text AS kind,
       c.confrelid::regclass::text AS target, pg_get_constraintdef(c.oid) AS definition,
       ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
             ORDER BY k.n) AS columns,
       ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum
             ORDER BY k.n) AS target_columns
FROM pg_constraint c
WHERE c.connamespace = 'public'::regnamespace AND c.conrelid::regclass::text <> 'alembic_version'
"""

# Every index: its key columns in order (NULL for an expression), method, predicate, definition.
INDEXES = """
SELECT t.relname AS table_name, i.relname AS name, am.amname AS method, x.indisunique AS unique,
       x.indpred IS NOT NULL AS partial, pg_get_indexdef(x.indexrelid) AS definition,
       ARRAY(SELECT a.attname::text FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
             LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
             ORDER BY k.n) AS columns
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_am am ON am.oid = i.relam
WHERE t.relnamespace = 'public'::regnamespace AND t.relname <> 'alembic_version'
"""


# Everything a migration can create, one sorted list of rows per kind.
SNAPSHOT = {
    "relations": "SELECT relname, relkind::text, relrowsecurity, relforcerowsecurity, "
    "coalesce(reloptions, '{}')::text FROM pg_class "
    "WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'v', 'm', 'S', 'p')",
    "columns": "SELECT table_name, ordinal_position, column_name, data_type, udt_name, "
    "character_maximum_length, numeric_precision, numeric_scale, is_nullable, column_default "
    "FROM information_schema.columns WHERE table_schema = 'public'",
    "constraints": "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
    "FROM pg_constraint WHERE connamespace = 'public'::regnamespace",
    "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'",
    "enums": "SELECT t.typname, e.enumsortorder::float8, e.enumlabel FROM pg_type t "
    "JOIN pg_enum e ON e.enumtypid = t.oid WHERE t.typnamespace = 'public'::regnamespace",
    "views": "SELECT viewname, definition FROM pg_views WHERE schemaname = 'public'",
    "functions": "SELECT proname, pg_get_functiondef(oid) FROM pg_proc "
    "WHERE pronamespace = 'public'::regnamespace",
    "policies": "SELECT tablename, policyname, cmd, roles::text, qual, with_check "
    "FROM pg_policies WHERE schemaname = 'public'",
    "grants": "SELECT table_name, grantee, privilege_type "
    "FROM information_schema.role_table_grants WHERE table_schema = 'public'",
}


async def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Everything the migrations create in the database at ``url``, comparable with ``==``."""
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        snapshot = {
            kind: sorted(tuple(row) for row in await connection.fetch(sql))
            for kind, sql in SNAPSHOT.items()
        }
        if await connection.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL"):
            rows = await connection.fetch("SELECT version_num FROM alembic_version")
            snapshot["alembic_version"] = [tuple(row) for row in rows]
    finally:
        await connection.close()
    return snapshot


def assert_same_schema(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    """Two snapshots are equal; a failure names the kind and the first rows that differ."""
    assert actual.keys() == expected.keys()
    for kind in expected:
        missing = sorted(set(expected[kind]) - set(actual[kind]), key=repr)
        extra = sorted(set(actual[kind]) - set(expected[kind]), key=repr)
        assert (missing, extra) == ([], []), f"{kind}: missing {missing[:5]}, extra {extra[:5]}"


async def _constraints(pg: asyncpg.Connection, kind: str) -> list[asyncpg.Record]:
    rows = await pg.fetch(CONSTRAINTS + " AND c.contype::text = $1", kind)
    return sorted(rows, key=lambda row: (row["table_name"], row["name"]))


async def _indexes(pg: asyncpg.Connection) -> dict[str, asyncpg.Record]:
    return {row["name"]: row for row in await pg.fetch(INDEXES)}


async def test_every_model_table_exists_and_nothing_else(pg: asyncpg.Connection) -> None:
    rows = await pg.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
        "AND tablename <> 'alembic_version'"
    )
    assert sorted(row["tablename"] for row in rows) == sorted(metadata.tables)
    assert len(rows) == 14


async def test_tenant_tables_have_primary_key_organization_id_then_id(
    pg: asyncpg.Connection,
) -> None:
    keys = {row["table_name"]: list(row["columns"]) for row in await _constraints(pg, "p")}
    assert keys.pop("organizations") == ["id"]
    assert keys == {name: ["organization_id", "id"] for name in TENANT_TABLES}


async def test_references_between_tenant_tables_are_composite_with_organization_id(
    pg: asyncpg.Connection,
) -> None:
    foreign_keys = await _constraints(pg, "f")
    to_organizations = {
        row["table_name"] for row in foreign_keys if row["target"] == "organizations"
    }
    # Score history reaches its organization through its lead only (migration 0005); the audit
    # trail through the row each entry describes (0006).
    assert to_organizations == set(TENANT_TABLES) - {"lead_score_history", "activity_logs"}
    between_tenants = [row for row in foreign_keys if row["target"] != "organizations"]
    assert len(between_tenants) >= 15
    for row in foreign_keys:
        if row["target"] == "organizations":
            assert list(row["columns"]) == ["organization_id"], row["name"]
            assert row["definition"].endswith("ON DELETE CASCADE"), row["name"]
        else:
            assert len(row["columns"]) == 2, row["name"]
            assert row["columns"][0] == "organization_id", row["name"]
            assert list(row["target_columns"]) == ["organization_id", "id"], row["name"]
    # ... and they are the model's foreign keys, with the model's ON DELETE, by name.
    expected = {
        str(fk.name): (fk.ondelete or "NO ACTION")
        for table in metadata.tables.values()
        for fk in table.foreign_key_constraints
    }
    found = {row["name"]: row["definition"] for row in foreign_keys}
    assert set(found) == set(expected)
    for name, ondelete in expected.items():
        assert found[name].endswith(f"ON DELETE {ondelete}"), (name, found[name])


async def test_every_foreign_key_has_an_index_whose_leading_columns_are_its_own(
    pg: asyncpg.Connection,
) -> None:
    indexes = [row for row in (await _indexes(pg)).values() if not row["partial"]]
    for fk in await _constraints(pg, "f"):
        columns = set(fk["columns"])
        serving = [
            index["name"]
            for index in indexes
            if index["table_name"] == fk["table_name"]
            and set(index["columns"][: len(columns)]) == columns
        ]
        assert serving, f"{fk['name']} has no index starting with {sorted(columns)}"


async def test_constraint_and_index_names_are_the_models_names(pg: asyncpg.Connection) -> None:
    constraints = {(row["table_name"], row["name"]) for row in await pg.fetch(CONSTRAINTS)}
    indexes = {(row["table_name"], row["name"]) for row in (await _indexes(pg)).values()}
    expected_constraints = {
        (table.name, str(constraint.name))
        for table in metadata.tables.values()
        for constraint in table.constraints
    }
    expected_indexes = {
        (table.name, str(index.name))
        for table in metadata.tables.values()
        for index in table.indexes
    }
    # Primary keys and unique constraints are backed by indexes of the same name.
    backing = {
        (table.name, str(c.name))
        for table in metadata.tables.values()
        for c in table.constraints
        if isinstance(c, sa.PrimaryKeyConstraint | sa.UniqueConstraint)
    }
    assert constraints == expected_constraints
    assert indexes == expected_indexes | backing


async def test_enum_types_hold_exactly_the_python_enums_values(pg: asyncpg.Connection) -> None:
    rows = await pg.fetch(
        "SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder) AS labels "
        "FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid "
        "WHERE t.typnamespace = 'public'::regnamespace GROUP BY t.typname"
    )
    found = {row["typname"]: list(row["labels"]) for row in rows}
    expected: dict[str, list[str]] = {}
    for table in metadata.tables.values():
        for column in table.columns:
            kind = column.type
            if isinstance(kind, sa.Enum) and kind.name is not None:
                assert kind.enum_class is not None
                expected[kind.name] = [str(member.value) for member in kind.enum_class]
    assert found == expected
    assert len(found) == 17
    columns = await pg.fetch(
        "SELECT table_name, column_name, udt_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND data_type = 'USER-DEFINED'"
    )
    for row in columns:
        if row["table_name"] in metadata.tables:
            column_type = metadata.tables[row["table_name"]].c[row["column_name"]].type
            assert isinstance(column_type, sa.Enum)
            assert row["udt_name"] == column_type.name


@pytest.mark.parametrize("view", list(views_metadata.tables))
async def test_view_exists_with_the_columns_of_its_read_model(
    pg: asyncpg.Connection, view: str
) -> None:
    rows = await pg.fetch(
        "SELECT column_name, udt_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
        view,
    )
    assert [row["column_name"] for row in rows] == list(views_metadata.tables[view].c.keys())
    kinds = {row["column_name"]: row["udt_name"] for row in rows}
    assert kinds["organization_id"] == "uuid"
    assert await pg.fetchval("SELECT count(*) FROM pg_views WHERE viewname = $1", view) == 1
    assert await pg.fetch(f"SELECT * FROM {view}") == []


async def test_emails_are_unique_per_organization_ignoring_case(pg: asyncpg.Connection) -> None:
    indexes = await _indexes(pg)
    for table in ("users", "leads"):
        index = indexes[f"ix_{table}_organization_id_lower_email"]
        assert index["unique"]
        assert not index["partial"]
        assert index["definition"].endswith("(organization_id, lower((email)::text))")


async def test_one_active_assignment_per_lead_is_a_partial_unique_index(
    pg: asyncpg.Connection,
) -> None:
    index = (await _indexes(pg))["ix_lead_assignments_one_active_per_lead"]
    assert index["unique"]
    assert list(index["columns"]) == ["organization_id", "lead_id"]
    assert index["definition"].endswith("WHERE (unassigned_at IS NULL)")


async def test_tags_custom_fields_and_search_have_gin_indexes(pg: asyncpg.Connection) -> None:
    indexes = await _indexes(pg)
    gin = {name for name, row in indexes.items() if row["method"] == "gin"}
    assert gin == {"ix_leads_tags", "ix_leads_custom_fields", "ix_leads_search"}
    assert list(indexes["ix_leads_tags"]["columns"]) == ["tags"]
    assert list(indexes["ix_leads_custom_fields"]["columns"]) == ["custom_fields"]
    search = indexes["ix_leads_search"]["definition"]
    assert "to_tsvector('simple'::regconfig" in search
    for column in ("first_name", "last_name", "email", "company"):
        assert f"COALESCE({column}, ''::character varying)" in search


async def test_rescoring_can_update_leads_without_touching_an_index(
    pg: asyncpg.Connection,
) -> None:
    """Rescoring writes score, temperature, version and updated_at of most leads at once: with
    none of them in an index and room on every page, each update is HOT (heap only)."""
    definitions = [row["definition"] for row in (await _indexes(pg)).values()
                   if row["table_name"] == "leads"]  # fmt: skip
    assert len(definitions) == 9
    for definition in definitions:
        for column in ("score", "temperature", "version", "updated_at"):
            assert column not in definition, definition
    options = await pg.fetchval("SELECT reloptions FROM pg_class WHERE oid = 'leads'::regclass")
    assert options == ["fillfactor=50"]


async def test_every_text_column_is_bounded(pg: asyncpg.Connection) -> None:
    rows = await pg.fetch(
        "SELECT c.relname AS table_name, a.attname AS column_name, "
        "format_type(a.atttypid, a.atttypmod) AS type FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid "
        "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' "
        "AND a.attnum > 0 AND NOT a.attisdropped "
        "AND format_type(a.atttypid, a.atttypmod) ~ '^(character varying|text)'"
    )
    checks = " ".join(row["definition"] for row in await _constraints(pg, "c"))
    for row in rows:
        name = f"{row['table_name']}.{row['column_name']}"
        if row["type"].startswith("character varying"):
            assert row["type"].startswith("character varying("), f"{name} has no length"
        else:  # text: bounded by a check constraint
            assert f"char_length({row['column_name']}) <=" in checks, f"{name} is unbounded"
    assert {row["type"] for row in rows} >= {"character varying(64)[]", "text"}


async def test_uuid7_function_gives_version_7_ids_that_sort_by_time(
    pg: asyncpg.Connection,
) -> None:
    before = datetime.now(UTC)
    # In the order they were made (generate_series' n), not sorted by the database.
    rows = await pg.fetch("SELECT leaddb_uuid7() FROM generate_series(1, 1000) AS g(n) ORDER BY n")
    batch = [row[0] for row in rows]
    assert len(set(batch)) == 1000
    assert all(isinstance(value, uuid.UUID) for value in batch)
    assert {value.version for value in batch} == {7}
    assert {value.variant for value in batch} == {uuid.RFC_4122}
    stamps = [value.int >> 80 for value in batch]  # the 48-bit Unix milliseconds
    assert stamps == sorted(stamps)
    assert abs(stamps[0] - before.timestamp() * 1000) < 5_000
    # Ids made a few milliseconds apart sort in the order they were made.
    spaced = []
    for _ in range(5):
        spaced.append(await pg.fetchval("SELECT leaddb_uuid7()"))
        await asyncio.sleep(0.003)
    assert spaced == sorted(spaced)
    assert len({value.int >> 80 for value in spaced}) == 5
