"""The models' tables, keys, constraints, indexes and views, checked without a database.

The Create / Update / Read schemas and their validation are tested in test_models_schemas.py.
"""

import re
import uuid

import pytest
import sqlalchemy as sa
from annotated_types import MaxLen
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlalchemy.sql import visitors
from sqlmodel import SQLModel

import leaddb.models as m
from leaddb.models.base import table_of
from leaddb.models.lead import LEADS_FILLFACTOR

DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]
ORG = uuid.uuid4()
TABLES = {table_of(model).name: table_of(model) for model in m.TABLE_MODELS}
TENANT_TABLES = [table for name, table in TABLES.items() if name != "organizations"]


# --- tables ------------------------------------------------------------------------------------


def test_metadata_holds_exactly_the_fourteen_tables() -> None:
    assert set(m.metadata.tables) == set(TABLES)
    assert len(TABLES) == 14
    assert not set(m.views_metadata.tables) & set(m.metadata.tables)


def test_tenant_tables_have_primary_key_organization_id_then_id() -> None:
    assert [c.name for c in TABLES["organizations"].primary_key.columns] == ["id"]
    for table in TENANT_TABLES:
        assert [c.name for c in table.primary_key.columns] == ["organization_id", "id"], table


def test_foreign_keys_between_tenant_tables_are_composite_with_organization_id() -> None:
    for table in TENANT_TABLES:
        for fk in table.foreign_key_constraints:
            local = [c.name for c in fk.columns]
            remote = [(e.column.table.name, e.column.name) for e in fk.elements]
            if fk.referred_table.name == "organizations":
                assert (local, remote, fk.ondelete) == (
                    ["organization_id"],
                    [("organizations", "id")],
                    "CASCADE",
                ), table
            else:
                assert local[0] == "organization_id", fk.name
                assert len(local) == 2, fk.name
                target = fk.referred_table.name
                assert remote == [(target, "organization_id"), (target, "id")], fk.name


def test_set_null_foreign_keys_clear_only_their_own_column() -> None:
    for table in TENANT_TABLES:
        for fk in table.foreign_key_constraints:
            if fk.ondelete and fk.ondelete.startswith("SET NULL"):
                column = fk.columns[1]
                assert fk.ondelete == f"SET NULL ({column.name})", fk.name
                assert column.nullable, fk.name
    ddl = str(CreateTable(TABLES["leads"]).compile(dialect=DIALECT))
    assert "REFERENCES users (organization_id, id) ON DELETE SET NULL (owner_id)" in ddl


def test_every_foreign_key_has_an_index_starting_with_its_columns() -> None:
    for table in TABLES.values():
        leading: list[list[str]] = [[c.name for c in table.primary_key.columns]]
        leading += [
            [c.name for c in uq.columns]
            for uq in table.constraints
            if isinstance(uq, sa.UniqueConstraint)
        ]
        leading += [
            [c.name for c in ix.columns]
            for ix in table.indexes
            if ix.dialect_options["postgresql"]["where"] is None
            and len(ix.columns) == len(ix.expressions)
        ]
        for fk in table.foreign_key_constraints:
            cols = [c.name for c in fk.columns]
            assert any(found[: len(cols)] == cols for found in leading), fk.name


def test_every_constraint_and_index_has_a_deterministic_name() -> None:
    prefixes: dict[type[sa.Constraint], str] = {
        sa.PrimaryKeyConstraint: "pk_",
        sa.ForeignKeyConstraint: "fk_",
        sa.UniqueConstraint: "uq_",
        sa.CheckConstraint: "ck_",
    }
    for name, table in TABLES.items():
        for constraint in table.constraints:
            assert isinstance(constraint.name, str), constraint
            assert constraint.name.startswith(prefixes[type(constraint)] + name)
            assert len(constraint.name) <= 63
        for index in table.indexes:
            assert isinstance(index.name, str)
            assert index.name.startswith(f"ix_{name}_")
            assert len(index.name) <= 63
    assert "ck_leads_score_range" in {c.name for c in TABLES["leads"].constraints}


def test_ddl_of_every_table_and_index_compiles_for_postgresql() -> None:
    for table in TABLES.values():
        assert "CREATE TABLE" in str(CreateTable(table).compile(dialect=DIALECT))
        for index in table.indexes:
            assert "CREATE" in str(CreateIndex(index).compile(dialect=DIALECT))


def _char_length_limits(table: sa.Table) -> dict[str, int]:
    limits: dict[str, int] = {}
    for check in table.constraints:
        if isinstance(check, sa.CheckConstraint):
            match = re.fullmatch(r"char_length\((\w+)\) <= (\d+)", str(check.sqltext))
            if match:
                limits[match[1]] = int(match[2])
    return limits


def _schema_max_length(model: type[SQLModel], field: str) -> int | None:
    lengths = [
        meta.max_length for meta in model.model_fields[field].metadata if isinstance(meta, MaxLen)
    ]
    return lengths[0] if lengths else None


def test_every_text_column_is_bounded_in_the_database_and_in_the_schema() -> None:
    for model in m.TABLE_MODELS:
        table = table_of(model)
        limits = _char_length_limits(table)
        for column in table.columns:
            kind = column.type
            if isinstance(kind, sa.ARRAY):
                kind = kind.item_type
            if not isinstance(kind, sa.String) or isinstance(kind, sa.Enum):
                continue
            bound = kind.length if kind.length is not None else limits.get(column.name)
            assert bound is not None, f"{table.name}.{column.name} has no length limit"
            if not isinstance(column.type, sa.ARRAY):
                assert _schema_max_length(model, column.name) == bound, column


def test_enum_columns_use_one_snake_case_type_of_lowercase_values() -> None:
    seen: dict[str, sa.Enum] = {}
    for table in TABLES.values():
        for column in table.columns:
            if isinstance(column.type, sa.Enum):
                enum_cls = column.type.enum_class
                assert enum_cls is not None
                assert column.type.name is not None
                assert (
                    column.type.name == re.sub(r"(?<!^)(?=[A-Z])", "_", enum_cls.__name__).lower()
                )
                assert column.type.enums == [member.value for member in enum_cls]
                assert all(value == value.lower() for value in column.type.enums)
                assert seen.setdefault(column.type.name, column.type) is column.type
    assert seen["lead_status"].enums[0] == "new"


def test_database_filled_columns_are_not_null_with_server_defaults() -> None:
    for table in TABLES.values():
        for name in ("created_at", "updated_at", "version", "enrolled_at", "assigned_at"):
            if name in table.c:
                column = table.c[name]
                assert not column.nullable, column
                assert column.server_default is not None, column
        for column in table.columns:
            if isinstance(column.type, sa.DateTime):
                assert column.type.timezone, column
            if isinstance(column.type, postgresql.JSONB) and not column.nullable:
                assert column.server_default is not None, column
    assert {c.name for c in TABLES["leads"].columns} >= {"created_at", "deleted_at", "version"}


def test_table_facts_for_the_generic_repository() -> None:
    names = [model.__entity_name__ for model in m.TABLE_MODELS]
    assert all("__entity_name__" in vars(model) for model in m.TABLE_MODELS)
    assert len(set(names)) == len(names)
    assert m.Lead.__entity_name__ == "lead"
    assert [mod for mod in m.TABLE_MODELS if not m.is_tenant_scoped(mod)] == [m.Organization]
    assert {mod for mod in m.TABLE_MODELS if m.is_soft_deletable(mod)} == {m.Lead, m.Campaign}
    assert m.is_versioned(m.Lead)
    assert not m.is_versioned(m.ActivityLog)
    assert all(hasattr(mod, "deleted_at") == m.is_soft_deletable(mod) for mod in m.TABLE_MODELS)


def test_new_ids_are_time_ordered_uuid7() -> None:
    first, second = m.new_id(), m.new_id()
    assert first.version == 7
    assert first < second
    assert m.Lead(organization_id=ORG, email="a@b.example").id.version == 7


def test_search_vector_is_the_expression_of_its_gin_index() -> None:
    index = next(ix for ix in TABLES["leads"].indexes if ix.name == "ix_leads_search")
    ddl = str(CreateIndex(index).compile(dialect=DIALECT))
    query = str(m.lead_search_vector().compile(dialect=DIALECT)).replace("leads.", "")
    assert "USING gin (" + query + ")" in ddl
    assert "'simple'::regconfig" in query
    condition = m.lead_search_condition("ada lovelace").compile(dialect=DIALECT)
    assert "websearch_to_tsquery('simple'::regconfig, %(param_1)s" in str(condition)


def test_no_index_of_leads_holds_what_rescoring_writes() -> None:
    """Rescoring writes these columns of most leads at once. An index on any of them (in its
    key, expression or WHERE) would make every such update a new entry in every index of leads
    instead of a heap-only (HOT) update; the half-full pages leave the room HOT needs."""
    leads = TABLES["leads"]
    written = {"score", "temperature", "version", "updated_at"}
    for index in leads.indexes:
        parts = [part for part in index.expressions if isinstance(part, sa.ClauseElement)]
        where = index.dialect_options["postgresql"]["where"]
        if where is not None:
            parts.append(where)
        used = {column.name for column in index.columns} | {
            node.name
            for part in parts
            for node in visitors.iterate(part)
            if isinstance(node, sa.Column)
        }
        assert not used & written, (index.name, used & written)
    assert leads.dialect_options["postgresql"]["with"] == {"fillfactor": LEADS_FILLFACTOR}
    assert "WITH (fillfactor = 50)" in str(CreateTable(leads).compile(dialect=DIALECT))


# --- views -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "read", "sql"),
    [
        (m.lead_pipeline_view, m.LeadPipeline, m.LEAD_PIPELINE_VIEW_SQL),
        (m.campaign_performance_view, m.CampaignPerformance, m.CAMPAIGN_PERFORMANCE_VIEW_SQL),
    ],
)
def test_views_are_described_apart_from_the_tables(
    table: sa.Table, read: type[SQLModel], sql: str
) -> None:
    assert table.metadata is m.views_metadata
    assert table.name not in m.metadata.tables
    assert list(read.model_fields) == list(table.c.keys())
    assert sql.startswith(f"CREATE OR REPLACE VIEW {table.name} AS")
    assert "deleted_at IS NULL" in sql
    assert all(re.search(rf"[ .]{name}(,|\n|$)", sql) for name in table.c.keys())  # noqa: SIM118
