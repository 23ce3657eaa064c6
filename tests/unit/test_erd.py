"""The schema documentation: docs/schema.md is what the generator makes from the models now, and
the generated diagram says what the metadata says (columns, keys, cardinality, ON DELETE)."""

import difflib
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from leaddb import erd
from leaddb.cli import app
from leaddb.models import metadata, views_metadata

SCHEMA_MD = Path(__file__).resolve().parents[2] / "docs" / "schema.md"
ATTRIBUTE = re.compile(
    r"^ {8}(?P<type>[A-Za-z][A-Za-z0-9_\-\[\]()]*) (?P<name>\w+)"
    r'(?: (?P<keys>(?:PK|FK|UK)(?:, (?:PK|FK|UK))*))?(?: "[^"]*")?$'
)
RELATIONSHIP = re.compile(
    r"^ {4}(?P<parent>\w+) (?P<left>\|\||\|o)(?P<line>--|\.\.)(?P<right>o\{|o\|) "
    r'(?P<child>\w+) : "(?P<label>[\w, ]+)"$'
)


def _entities(diagram: str) -> dict[str, list[re.Match[str]]]:
    """Attributes of every entity block of a Mermaid diagram; fails on a malformed line."""
    entities: dict[str, list[re.Match[str]]] = {}
    current: list[re.Match[str]] | None = None
    for line in diagram.splitlines()[1:]:
        if line.endswith(" {"):
            current = entities.setdefault(line.strip().removesuffix(" {"), [])
        elif line == "    }":
            current = None
        elif current is not None:
            match = ATTRIBUTE.match(line)
            assert match, f"not a Mermaid attribute: {line!r}"
            current.append(match)
    return entities


def test_docs_schema_md_is_what_the_generator_makes_now() -> None:
    expected = erd.schema_markdown(metadata, views_metadata)
    current = SCHEMA_MD.read_text(encoding="utf-8") if SCHEMA_MD.is_file() else ""
    if current != expected:
        diff = "".join(
            list(
                difflib.unified_diff(
                    current.splitlines(keepends=True),
                    expected.splitlines(keepends=True),
                    "docs/schema.md (committed)",
                    "docs/schema.md (generated)",
                )
            )[:40]
        )
        pytest.fail(
            f"docs/schema.md is out of date with the models; regenerate it with "
            f"`{erd.REGENERATE_COMMAND}` and commit the result.\n{diff}"
        )


def test_every_table_and_view_has_a_purpose_line() -> None:
    assert set(erd.TABLE_PURPOSES) == set(metadata.tables)
    assert set(erd.VIEW_PURPOSES) == set(views_metadata.tables)


def test_diagram_lists_every_column_with_its_keys_and_a_mermaid_safe_type() -> None:
    diagram = erd.mermaid_erd(metadata)
    assert diagram.startswith("erDiagram\n")
    entities = _entities(diagram)
    assert list(entities) == list(erd.TABLE_PURPOSES)
    for name, attributes in entities.items():
        table = metadata.tables[name]
        assert [a["name"] for a in attributes] == list(table.c.keys())
        for attribute in attributes:
            keys = set((attribute["keys"] or "").split(", ")) - {""}
            column = table.c[attribute["name"]]
            assert ("PK" in keys) == column.primary_key, attribute.string
            assert ("FK" in keys) == bool(column.foreign_keys), attribute.string
    leads = {a["name"]: a for a in entities["leads"]}
    assert leads["organization_id"]["keys"] == "PK, FK"
    assert leads["tags"]["type"] == "varchar(64)[]"
    assert leads["status"]["type"] == "lead_status"
    assert leads["estimated_value"].group(0).endswith('numeric estimated_value "numeric(14,2)"')
    assert {a["name"]: a["keys"] for a in entities["organizations"]}["slug"] == "UK"


def test_diagram_has_one_relationship_per_foreign_key_with_its_cardinality() -> None:
    lines = [line for line in erd.mermaid_erd(metadata).splitlines() if " : " in line]
    assert all(RELATIONSHIP.match(line) for line in lines), lines
    assert len(lines) == sum(len(t.foreign_key_constraints) for t in metadata.tables.values())
    # Every tenant table hangs off organizations through its key (identifying, solid line),
    # but score history (through its lead) and the audit trail (through what it describes).
    for name in set(metadata.tables) - {"organizations", "lead_score_history", "activity_logs"}:
        assert f'    organizations ||--o{{ {name} : "organization_id"' in lines
    assert '    leads ||..o{ lead_score_history : "lead_id"' in lines
    # A nullable reference is zero-or-one on the parent's side, a NOT NULL one exactly one.
    assert '    users |o..o{ leads : "owner_id"' in lines
    assert '    leads ||..o{ lead_notes : "lead_id"' in lines
    assert '    leads |o..o{ workflow_executions : "lead_id"' in lines


def test_cardinality_rules_on_a_small_schema() -> None:
    schema = sa.MetaData()
    sa.Table("parent", schema, sa.Column("id", sa.Integer, primary_key=True))
    child = sa.Table(
        "child",
        schema,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("one_id", sa.ForeignKey("parent.id", ondelete="CASCADE"), nullable=False),
        sa.Column("maybe_id", sa.ForeignKey("parent.id", ondelete="SET NULL"), unique=True),
    )
    lines = {
        fk.columns.keys()[0]: erd.relationship_line(fk) for fk in child.foreign_key_constraints
    }
    assert lines["one_id"] == '    parent ||..o{ child : "one_id"'
    assert lines["maybe_id"] == '    parent |o..o| child : "maybe_id"'
    by_column = {fk.columns.keys()[0]: fk for fk in child.foreign_key_constraints}
    assert erd.on_delete_behaviour(by_column["one_id"]) == (
        "deleting the `parent` row deletes its `child` rows."
    )
    assert "clears `maybe_id` in its `child` rows" in erd.on_delete_behaviour(by_column["maybe_id"])


def test_on_delete_sentences_of_the_real_foreign_keys() -> None:
    leads = metadata.tables["leads"]
    owner = next(fk for fk in leads.foreign_key_constraints if fk.referred_table.name == "users")
    assert erd.on_delete_behaviour(owner) == (
        "deleting the `users` row clears `owner_id` only; the `leads` row and its "
        "`organization_id` stay."
    )
    markdown = erd.schema_markdown(metadata, views_metadata)
    for table in metadata.tables.values():
        for fk in table.foreign_key_constraints:
            assert f"`{fk.name}`" in markdown
            assert f"ON DELETE {fk.ondelete}: {erd.on_delete_behaviour(fk)}" in markdown


def test_markdown_refuses_a_table_without_a_purpose_line() -> None:
    schema = sa.MetaData()
    sa.Table("mystery", schema, sa.Column("id", sa.Integer, primary_key=True))
    with pytest.raises(ValueError, match="TABLE_PURPOSES"):
        erd.schema_markdown(schema)


def test_markdown_documents_every_index_constraint_view_and_enum() -> None:
    markdown = erd.schema_markdown(metadata, views_metadata)
    assert "```mermaid\nerDiagram\n" in markdown
    for table in metadata.tables.values():
        assert f"### `{table.name}`" in markdown
        for index in table.indexes:
            assert f" {index.name} ON {table.name} " in markdown
        for constraint in table.constraints:
            assert f"`{constraint.name}`" in markdown or isinstance(
                constraint, sa.PrimaryKeyConstraint
            )
    for view in views_metadata.tables.values():
        assert f"### `{view.name}`" in markdown
    assert "| `lead_status` | `LeadStatus` | `new`, `contacted`," in markdown


def test_cli_prints_the_diagram_and_the_markdown() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["erd"])
    assert result.exit_code == 0, result.output
    assert result.stdout == erd.mermaid_erd(metadata)
    result = runner.invoke(app, ["erd", "--markdown"])
    assert result.exit_code == 0, result.output
    assert result.stdout == erd.schema_markdown(metadata, views_metadata)


def test_cli_writes_the_file_and_check_fails_when_it_is_stale(tmp_path: Path) -> None:
    runner = CliRunner()
    target = tmp_path / "docs" / "schema.md"
    stale = runner.invoke(app, ["erd", "--markdown", "--output", str(target), "--check"])
    assert stale.exit_code == 2
    assert erd.REGENERATE_COMMAND in stale.stderr
    written = runner.invoke(app, ["erd", "--markdown", "--output", str(target)])
    assert written.exit_code == 0, written.output
    assert target.read_text(encoding="utf-8") == erd.schema_markdown(metadata, views_metadata)
    fresh = runner.invoke(app, ["erd", "--markdown", "--output", str(target), "--check"])
    assert fresh.exit_code == 0, fresh.output
