"""The models' schema rules and validation, checked without a database."""

import inspect
import re
import types
import typing
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from annotated_types import MaxLen
from pydantic import BaseModel, ValidationError
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlmodel import SQLModel

import leaddb.models as m
from leaddb.models.base import table_of

DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]
ORG = uuid.uuid4()
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TABLES = {table_of(model).name: table_of(model) for model in m.TABLE_MODELS}
TENANT_TABLES = [table for name, table in TABLES.items() if name != "organizations"]
SECRETS = {"password_hash", "credentials_encrypted"}
IMMUTABLE = {"id", "organization_id", "created_at", "updated_at", "version", "deleted_at"}


def schemas(model: type[SQLModel]) -> tuple[type[SQLModel], ...]:
    """Base, Create, Update and Read of a table class, found by name."""
    name = model.__name__
    found = tuple(getattr(m, name + suffix) for suffix in ("Base", "Create", "Update", "Read"))
    return typing.cast(tuple[type[SQLModel], ...], found)


ENTITIES = [pytest.param(model, id=model.__name__) for model in m.TABLE_MODELS]

# A valid payload of every Create schema.
VALID: dict[str, dict[str, Any]] = {
    "Organization": {"name": "Acme", "slug": "acme-2", "billing_email": "billing@acme.example"},
    "User": {"email": "ada@acme.example", "full_name": "Ada", "timezone": "Europe/Paris"},
    "Lead": {
        "email": "Grace@Navy.example",
        "first_name": "Grace",
        "phone": "+1 (555) 010-2030",
        "linkedin_url": "https://www.linkedin.com/in/grace",
        "score": 100,
        "estimated_value": "1234.50",
        "expected_close_date": date(2024, 6, 1),
        "last_engagement_at": NOW,
        "tags": ["vip", "navy"],
        "custom_fields": {"fleet": 7, "nested": {"ok": [1, None]}},
    },
    "LeadNote": {"lead_id": ORG, "body": "Called, very interested."},
    "LeadAssignment": {"lead_id": ORG, "user_id": ORG},
    "LeadScoringRule": {
        "name": "Big company",
        "field": "company_size",
        "operator": "gte",
        "value": 500,
        "points": -100,
    },
    "LeadScoreHistory": {
        "lead_id": ORG,
        "old_score": 0,
        "new_score": 40,
        "old_temperature": "cold",
        "new_temperature": "warm",
    },
    "Campaign": {"name": "Spring", "budget": 0, "start_date": date(2024, 3, 1)},
    "CampaignLead": {"campaign_id": ORG, "lead_id": ORG},
    "Communication": {"lead_id": ORG, "channel": "email", "direction": "outbound"},
    "Workflow": {"name": "Welcome", "n8n_workflow_id": "aB3dE"},
    "WorkflowExecution": {"workflow_id": ORG, "started_at": NOW},
    "Integration": {"provider": "hubspot", "name": "CRM", "credentials": {"api_key": "k"}},
    "ActivityLog": {"entity_type": "lead", "entity_id": ORG, "action": "created"},
}


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


@pytest.mark.parametrize("model", ENTITIES)
def test_not_null_columns_never_receive_none_from_a_create_payload(model: type[SQLModel]) -> None:
    table = table_of(model)
    create = schemas(model)[1]
    for name, field in create.model_fields.items():
        if name in table.c and not table.c[name].nullable and not field.is_required():
            assert field.get_default(call_default_factory=True) is not None, name


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


# --- schemas -----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ENTITIES)
def test_valid_payload_validates_and_builds_a_row(model: type[SQLModel]) -> None:
    create = schemas(model)[1].model_validate(VALID[model.__name__])
    values = create.model_dump(exclude={"password", "credentials"})
    tenant = {} if model is m.Organization else {"organization_id": ORG}
    row = model(**values, **tenant)
    assert all(getattr(row, name) == value for name, value in values.items())


@pytest.mark.parametrize(
    ("schema", "payload"),
    [
        (m.UserCreate, {"email": "not-an-email"}),
        (m.UserCreate, {"email": "a" * 250 + "@x.example"}),
        (m.UserCreate, {"timezone": "Mars/Olympus_Mons"}),
        (m.UserCreate, {"timezone": "../../etc/passwd"}),
        (m.UserCreate, {"avatar_url": "javascript:alert(1)"}),
        (m.UserCreate, {"password": "short"}),
        (m.LeadCreate, {"linkedin_url": "ftp://example.com/x"}),
        (m.LeadCreate, {"score": 101}),
        (m.LeadCreate, {"score": -1}),
        (m.LeadCreate, {"estimated_value": "-0.01"}),
        (m.LeadCreate, {"estimated_value": "1.234"}),
        (m.LeadCreate, {"estimated_value": 10**12}),
        (m.LeadCreate, {"first_name": "x" * 101}),
        (m.LeadCreate, {"phone": "call me"}),
        (m.LeadCreate, {"phone": "+1 (2)"}),
        (m.LeadCreate, {"phone": "12345678x"}),
        (m.LeadCreate, {"tags": ["t"] * 51}),
        (m.LeadCreate, {"tags": ["x" * 65]}),
        (m.LeadCreate, {"last_engagement_at": datetime(2024, 1, 1)}),  # naive
        (m.LeadCreate, {"emial": "typo@x.example"}),
        (m.LeadCreate, {"organization_id": str(ORG)}),
        (m.LeadUpdate, {"score": 101}),
        (m.LeadUpdate, {"company": "x" * 201}),
        (m.LeadUpdate, {"organization_id": str(ORG)}),
        (m.LeadUpdate, {"created_at": NOW}),
        (m.OrganizationCreate, {"slug": "Acme"}),
        (m.OrganizationCreate, {"slug": "-acme"}),
        (m.OrganizationCreate, {"settings": {"lead_temperature": {"warm_min": 80, "hot_min": 70}}}),
        (m.CampaignCreate, {"budget": -1}),
        (m.LeadNoteCreate, {"body": "x" * 100_001}),
        (m.LeadNoteCreate, {"body": ""}),
        (m.LeadScoringRuleCreate, {"points": 101}),
        (m.LeadScoringRuleCreate, {"operator": "like"}),
        (m.CommunicationCreate, {"channel": "pigeon"}),
        (m.IntegrationCreate, {"credentials_encrypted": b"x"}),
        (m.ActivityLogUpdate, {"action": "deleted"}),
    ],
)
def test_invalid_payload_is_a_validation_error(
    schema: type[SQLModel], payload: dict[str, Any]
) -> None:
    model_name = schema.__name__.removesuffix("Create").removesuffix("Update")
    base = VALID[model_name] if schema.__name__.endswith("Create") else {}
    with pytest.raises(ValidationError):
        schema.model_validate({**base, **payload})


def test_email_is_normalised_but_its_case_is_kept_for_the_unique_index() -> None:
    lead = m.LeadCreate.model_validate(VALID["Lead"])
    assert lead.email == "Grace@navy.example"
    assert lead.estimated_value == Decimal("1234.50")


def test_secrets_never_appear_in_repr_or_read_schemas() -> None:
    user = m.User(
        organization_id=ORG,
        email="a@b.example",
        full_name="A",
        password_hash="$argon2id$v=19$m=65536$SECRET-HASH",
        created_at=NOW,
        updated_at=NOW,
        version=1,
    )
    integration = m.Integration(
        organization_id=ORG,
        provider=m.IntegrationProvider.HUBSPOT,
        name="CRM",
        credentials_encrypted=b"gAAAAA-CIPHERTEXT",
        created_at=NOW,
        updated_at=NOW,
        version=1,
    )
    assert "SECRET-HASH" not in repr(user)
    assert "SECRET-HASH" not in str(user)
    assert "CIPHERTEXT" not in repr(integration)
    assert "CIPHERTEXT" not in str(integration)
    for read, row, secret in (
        (m.UserRead, user, "password_hash"),
        (m.IntegrationRead, integration, "credentials_encrypted"),
    ):
        assert secret not in read.model_fields
        assert secret not in read.model_validate(row).model_dump()
    assert "password" not in m.UserRead.model_fields
    assert "credentials" not in m.IntegrationRead.model_fields
    create = m.UserCreate.model_validate({**VALID["User"], "password": "correct horse"})
    assert "correct horse" not in repr(create)
    connect = m.IntegrationCreate.model_validate(VALID["Integration"])
    assert connect.credentials is not None
    assert "'k'" not in repr(connect)


@pytest.mark.parametrize("model", ENTITIES)
def test_read_schema_has_every_column_but_the_secrets(model: type[SQLModel]) -> None:
    read = schemas(model)[3]
    assert set(read.model_fields) == set(table_of(model).c.keys()) - SECRETS
    assert read.model_config.get("from_attributes") is True


@pytest.mark.parametrize("model", ENTITIES)
def test_create_and_update_schemas_forbid_unknown_fields(model: type[SQLModel]) -> None:
    _, create, update, _ = schemas(model)
    assert create.model_config.get("extra") == "forbid"
    assert update.model_config.get("extra") == "forbid"
    assert "organization_id" not in create.model_fields


def _annotation(model: type[BaseModel], name: str) -> Any:
    """The field's annotation as written (with its Annotated metadata)."""
    for klass in model.__mro__:
        annotations = inspect.get_annotations(klass)
        if name in annotations:
            return annotations[name]
    raise KeyError(name)


def _without_none(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return args[0] if len(args) == 1 else typing.Union[tuple(args)]  # noqa: UP007
    return hint


def _field_schema(model: type[BaseModel], name: str) -> Any:
    schema = dict(model.model_json_schema()["properties"][name])
    for key in ("title", "default", "description"):
        schema.pop(key, None)
    options = [option for option in schema.pop("anyOf", []) if option != {"type": "null"}]
    if len(options) == 1:
        schema.update(options[0])
    elif options:
        schema["anyOf"] = options
    return schema


@pytest.mark.parametrize("model", ENTITIES)
def test_update_fields_carry_the_same_constraints_as_create(model: type[SQLModel]) -> None:
    _, create, update, _ = schemas(model)
    for name, field in update.model_fields.items():
        assert name in create.model_fields, f"{update.__name__}.{name} is not in the Create"
        assert name not in IMMUTABLE
        assert field.default is None
        assert not field.is_required()
        written = _without_none(_annotation(update, name))
        assert written == _without_none(_annotation(create, name)), f"{update.__name__}.{name}"
        assert _field_schema(update, name) == _field_schema(create, name), name


def test_temperature_thresholds_default_and_per_organization() -> None:
    org = m.OrganizationCreate.model_validate(VALID["Organization"])
    thresholds = org.temperature_thresholds()
    assert [thresholds.classify(s) for s in (0, 29, 30, 69, 70, 100)] == [
        m.LeadTemperature.COLD,
        m.LeadTemperature.COLD,
        m.LeadTemperature.WARM,
        m.LeadTemperature.WARM,
        m.LeadTemperature.HOT,
        m.LeadTemperature.HOT,
    ]
    custom = m.Organization(
        name="A", slug="a", settings={"lead_temperature": {"warm_min": 10, "hot_min": 20}}
    )
    assert custom.temperature_thresholds().classify(15) is m.LeadTemperature.WARM


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
