"""The Create / Update / Read schemas of every entity: validation, secrets, and agreement with
the tables, checked without a database."""

import ast
import importlib
import pathlib
import typing
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import SQLModel

import leaddb.models as m
from leaddb.errors import InvalidValueError
from leaddb.models.base import is_secret, table_of
from leaddb.repositories.guard import check_values
from leaddb.sql import statements

ORG = uuid.uuid4()
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
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
        "field": "custom_fields.company_size",
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


@pytest.mark.parametrize("model", ENTITIES)
def test_not_null_columns_never_receive_none_from_a_create_payload(model: type[SQLModel]) -> None:
    table = table_of(model)
    create = schemas(model)[1]
    for name, field in create.model_fields.items():
        if name in table.c and not table.c[name].nullable and not field.is_required():
            assert field.get_default(call_default_factory=True) is not None, name


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


def _update_schemas() -> list[type[SQLModel]]:
    return [schemas(model)[2] for model in m.TABLE_MODELS]


@pytest.mark.parametrize("model", ENTITIES)
def test_update_fields_carry_the_same_constraints_as_create(model: type[SQLModel]) -> None:
    _, create, update, _ = schemas(model)
    for name, field in update.model_fields.items():
        assert name in create.model_fields, f"{update.__name__}.{name} is not in the Create"
        assert name not in IMMUTABLE
        assert field.default is None
        assert not field.is_required()
        same = create.model_fields[name]
        assert field.annotation == same.annotation, f"{update.__name__}.{name}"
        # The same constraints and validators, plus at most the refusal of an explicit null.
        extra = [item for item in field.metadata if item not in same.metadata]
        assert [item for item in same.metadata if item not in field.metadata] == [], name
        assert len(extra) <= 1, name
        assert _field_schema(update, name) == _field_schema(create, name), name


@pytest.mark.parametrize("model", ENTITIES)
def test_explicit_null_in_an_update_is_refused_exactly_for_not_null_columns(
    model: type[SQLModel],
) -> None:
    table = table_of(model)
    update = schemas(model)[2]
    for name in update.model_fields:
        if name not in table.c:
            continue  # password, credentials: turned into a column by the repository
        if table.c[name].nullable:
            assert update.model_validate({name: None}).model_dump(exclude_unset=True) == {
                name: None
            }
        else:
            with pytest.raises(ValidationError) as caught:
                update.model_validate({name: None})
            (error,) = caught.value.errors()
            assert error["loc"] == (name,)
            assert "cannot be null" in error["msg"]
    # Omitted fields are left alone, whatever their column.
    assert update.model_validate({}).model_dump(exclude_unset=True) == {}


def test_lead_update_refuses_null_for_its_not_null_columns() -> None:
    for name in ("tags", "custom_fields", "score", "email", "source", "status", "temperature"):
        with pytest.raises(ValidationError, match=name):
            m.LeadUpdate.model_validate({name: None})


def _declared_fields() -> dict[tuple[str, str], set[str]]:
    """(module, class) -> the fields its class statement writes, for every class of
    leaddb.models (ClassVars left out)."""
    declared: dict[tuple[str, str], set[str]] = {}
    package = pathlib.Path(m.__file__).parent
    for path in sorted(package.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                declared[(f"leaddb.models.{path.stem}", node.name)] = {
                    item.target.id
                    for item in node.body
                    if isinstance(item, ast.AnnAssign)
                    and isinstance(item.target, ast.Name)
                    and "ClassVar" not in ast.unparse(item.annotation)
                }
    return declared


def test_no_schema_field_is_declared_twice() -> None:
    """Along the classes every table and schema is made of, each field is written once: the
    Update schemas take theirs from the Base (patch_of), the Read schemas from the table
    mixins (as_read), the Create and Update schemas share password / credentials mixins."""
    declared = _declared_fields()
    classes = [
        value
        for module in {module for module, _ in declared}
        for value in vars(importlib.import_module(module)).values()
        if isinstance(value, type) and issubclass(value, BaseModel)
    ]
    assert len(classes) > 60
    for klass in classes:
        # A class made by patch_of or as_read shares its statement with the class it extends.
        statements = {
            (base.__module__, base.__name__)
            for base in klass.__mro__
            if (base.__module__, base.__name__) in declared
        }
        seen: dict[str, tuple[str, str]] = {}
        for statement in sorted(statements):
            for name in declared[statement]:
                assert name not in seen, f"{klass.__name__}.{name}: {seen.get(name)}, {statement}"
                seen[name] = statement
    assert not _declared_fields()[("leaddb.models.lead", "LeadUpdate")]
    assert len(m.LeadUpdate.model_fields) == len(m.LeadBase.model_fields) == 17


@pytest.mark.parametrize("model", ENTITIES)
def test_read_schemas_require_what_the_database_always_fills(model: type[SQLModel]) -> None:
    table = table_of(model)
    read = schemas(model)[3]
    filled = IMMUTABLE | {"enrolled_at", "assigned_at"}
    for name, field in read.model_fields.items():
        if name in filled:
            assert field.is_required() is not table.c[name].nullable, f"{read.__name__}.{name}"
            assert field.default is None or field.is_required()


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


# Every JSONB column of every table, with the Create / Update schemas that write it.
JSON_FIELDS = [
    pytest.param(schema, column.name, id=f"{schema.__name__}.{column.name}")
    for model in m.TABLE_MODELS
    for column in table_of(model).columns
    if isinstance(column.type, JSONB)
    for schema in schemas(model)[1:3]
    if column.name in schema.model_fields
]
NON_FINITE = [float("nan"), float("inf"), float("-inf")]


def test_json_fields_are_found() -> None:
    found = {param.id for param in JSON_FIELDS}
    assert {"LeadCreate.custom_fields", "LeadUpdate.custom_fields"} <= found
    assert {"WorkflowCreate.definition", "LeadScoringRuleUpdate.value"} <= found
    assert len(found) >= 20


@pytest.mark.parametrize(("schema", "field"), JSON_FIELDS)
@pytest.mark.parametrize("number", NON_FINITE, ids=["nan", "inf", "-inf"])
def test_non_finite_numbers_anywhere_in_json_are_a_validation_error(
    schema: type[SQLModel], field: str, number: float
) -> None:
    model_name = schema.__name__.removesuffix("Create").removesuffix("Update")
    base = VALID[model_name] if schema.__name__.endswith("Create") else {}
    nested = {"fine": [1, 2.5, None], "deep": {"list": [0, {"x": number}]}}
    for value in ({"x": number}, nested, number, [number]):
        with pytest.raises(ValidationError) as caught:
            schema.model_validate({**base, field: value})
        assert [error["loc"][0] for error in caught.value.errors()] == [field], value
    # Finite numbers are still fine (a scoring rule's value is one number: "gte" 500).
    finite = 2.5e3 if field == "value" else nested | {"deep": {"x": 1e300}}
    schema.model_validate({**base, field: finite})


def test_guard_refuses_non_finite_json_of_unvalidated_instances() -> None:
    for value in (float("nan"), {"a": [1, {"b": float("-inf")}]}, [float("inf")]):
        with pytest.raises(InvalidValueError) as caught:
            check_values("lead", {"custom_fields": value}, max_json_bytes=10**6, max_json_depth=9)
        assert caught.value.field == "custom_fields"
    check_values("lead", {"custom_fields": {"a": 1.5}}, max_json_bytes=10**6, max_json_depth=9)


def test_secret_columns_are_marked_in_the_models() -> None:
    marked = {
        column.name
        for model in m.TABLE_MODELS
        for column in table_of(model).columns
        if is_secret(column)
    }
    assert marked == SECRETS
    # The audit images, the cache and the bulk paths leave out the same columns.
    assert marked == statements.SECRET_COLUMNS
