"""`leaddb sql --citus` against the migrated schema: every tenant table distributed by
organization_id and colocated, every other table a reference table, and every key, unique
index and foreign key of a distributed table including organization_id (what Citus requires
to enforce them inside a shard). Citus itself is not installable here (docs/scaling.md)."""

from __future__ import annotations

import re

import asyncpg
from sqlmodel import SQLModel
from typer.testing import CliRunner

import leaddb.models  # noqa: F401  (registers every table in the metadata)
from leaddb.citus import ANCHOR, PRIVATE_REFERENCE_TABLES, citus_script
from leaddb.cli import app

_DISTRIBUTED = re.compile(
    r"SELECT create_distributed_table\('(\w+)', '(\w+)', colocate_with => '(\w+)'\);"
)
_REFERENCE = re.compile(r"SELECT create_reference_table\('([\w.]+)'\);")


async def _tables(pg: asyncpg.Connection, schema: str) -> dict[str, set[str]]:
    rows = await pg.fetch(
        "SELECT c.relname, a.attname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
        "WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND c.relname <> 'alembic_version'",
        schema,
    )
    tables: dict[str, set[str]] = {}
    for row in rows:
        tables.setdefault(row["relname"], set()).add(row["attname"])
    return tables


def test_the_cli_prints_the_ddl_then_the_citus_statements() -> None:
    result = CliRunner().invoke(app, ["sql", "--citus"])
    assert result.exit_code == 0, result.output
    assert "CREATE TABLE" in result.output
    assert result.output.rstrip().endswith(citus_script(SQLModel.metadata).rstrip())
    assert result.output.index("CREATE TABLE") < result.output.index("create_distributed_table")


async def test_every_tenant_table_is_distributed_colocated_and_every_other_is_a_reference(
    pg: asyncpg.Connection,
) -> None:
    script = citus_script(SQLModel.metadata)
    distributed = {table: (column, with_) for table, column, with_ in _DISTRIBUTED.findall(script)}
    reference = set(_REFERENCE.findall(script))
    public = await _tables(pg, "public")
    tenant = {name for name, columns in public.items() if "organization_id" in columns}
    assert len(tenant) >= 10
    assert set(distributed) == tenant
    assert all(column == "organization_id" for column, _ in distributed.values())
    assert distributed[ANCHOR][1] == "none"
    assert {with_ for table, (_, with_) in distributed.items() if table != ANCHOR} == {ANCHOR}
    private = {f"leaddb_private.{name}" for name in await _tables(pg, "leaddb_private")}
    assert private == set(PRIVATE_REFERENCE_TABLES)
    assert reference == (set(public) - tenant) | private


async def test_every_key_and_foreign_key_of_a_distributed_table_includes_organization_id(
    pg: asyncpg.Connection,
) -> None:
    script = citus_script(SQLModel.metadata)
    order = [table for table, _, _ in _DISTRIBUTED.findall(script)]
    constraints = await pg.fetch(
        "SELECT con.conname, con.contype, src.relname AS source, dst.relname AS target, "
        "ARRAY(SELECT attname FROM pg_attribute WHERE attrelid = con.conrelid "
        "      AND attnum = ANY (con.conkey)) AS columns, "
        "ARRAY(SELECT attname FROM pg_attribute WHERE attrelid = con.confrelid "
        "      AND attnum = ANY (con.confkey)) AS target_columns "
        "FROM pg_constraint con JOIN pg_class src ON src.oid = con.conrelid "
        "LEFT JOIN pg_class dst ON dst.oid = con.confrelid "
        "WHERE con.contype IN ('p', 'u', 'f', 'x') AND src.relname = ANY ($1::text[])",
        order,
    )
    checked = 0
    for row in constraints:
        assert "organization_id" in row["columns"], row["conname"]
        if row["contype"] == "f" and row["target"] in order:
            # Colocated: organization_id pairs with organization_id, and the target table
            # is distributed before the table that refers to it.
            pairs = dict(zip(row["columns"], row["target_columns"], strict=True))
            assert pairs.get("organization_id") == "organization_id", row["conname"]
            assert order.index(row["target"]) < order.index(row["source"]), row["conname"]
        checked += 1
    unique_indexes = await pg.fetch(
        "SELECT i.indexrelid::regclass::text AS name, "
        "ARRAY(SELECT attname FROM pg_attribute WHERE attrelid = i.indrelid "
        "      AND attnum = ANY (i.indkey)) AS columns "
        "FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
        "WHERE i.indisunique AND c.relname = ANY ($1::text[])",
        order,
    )
    for row in unique_indexes:
        assert "organization_id" in row["columns"], row["name"]
    assert checked > len(order) * 2
