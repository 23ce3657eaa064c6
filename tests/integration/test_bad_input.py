"""Hostile input, generated: every Create and Update schema, every lead filter and forged
cursors. Each attempt must end in pydantic's ValidationError or a leaddb error, never a raw
asyncpg / SQLAlchemy / Python exception, and a failed write must leave no row behind."""

from __future__ import annotations

import enum
import inspect
import types
import typing
import uuid
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

import leaddb.models as models
from leaddb import LeadDB
from leaddb.errors import InvalidValueError, LeadDBError
from leaddb.repositories.filters import Eq, Filter, In, Range

NASTY_TEXT = st.one_of(
    st.text(min_size=0, max_size=40),
    st.text(min_size=300, max_size=2000),
    st.sampled_from(["\x00", "a\x00b", "\ud800", "x\udfffy", "'); DROP TABLE leads; --", " "]),
)
NASTY_NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([Decimal("NaN"), Decimal("Infinity"), Decimal("-1"), Decimal("1e30")]),
)
NASTY_TIMES = st.one_of(
    st.datetimes(),  # naive
    st.datetimes(timezones=st.just(UTC)),
    st.sampled_from([datetime.max, datetime.min, date.max, date.min]),
)


def _deep(depth: int) -> object:
    value: object = "leaf"
    for _ in range(depth):
        value = {"k": value}
    return value


NASTY_JSON = st.one_of(
    st.sampled_from(
        [_deep(40), _deep(300), {"big": "x" * 400_000}, {"nul": "\x00"}, {"s": "\ud800"}]
    ),
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.text(max_size=5)
        | st.sampled_from([float("nan"), float("inf"), float("-inf"), 1.5]),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
        max_leaves=10,
    ),
)
NASTY = st.one_of(
    NASTY_TEXT, NASTY_NUMBERS, NASTY_TIMES, NASTY_JSON, st.none(), st.uuids(), st.booleans()
)

# schema -> (unit-of-work attribute, builder of a valid payload from the references)
Refs = dict[str, uuid.UUID]
WRITABLE: dict[str, tuple[str, Callable[[Refs], dict[str, Any]]]] = {
    "Lead": ("leads", lambda r: {"email": f"{uuid.uuid4().hex[:10]}@example.com"}),
    "User": (
        "users",
        lambda r: {"email": f"{uuid.uuid4().hex[:10]}@example.com", "full_name": "U"},
    ),
    "Campaign": ("campaigns", lambda r: {"name": "C"}),
    "CampaignLead": (
        "campaign_leads",
        lambda r: {"campaign_id": r["campaign"], "lead_id": r["lead"]},
    ),
    "Communication": (
        "communications",
        lambda r: {"lead_id": r["lead"], "channel": "email", "direction": "outbound"},
    ),
    "Integration": ("integrations", lambda r: {"provider": "slack", "name": "I"}),
    "LeadAssignment": ("assignments", lambda r: {"lead_id": r["lead"], "user_id": r["user"]}),
    "LeadNote": ("notes", lambda r: {"lead_id": r["lead"], "body": "b"}),
    "LeadScoringRule": (
        "scoring_rules",
        lambda r: {
            "name": "R",
            "field": "company",
            "operator": "exists",
            "value": True,
            "points": 5,
        },
    ),
    "Workflow": ("workflows", lambda r: {"name": "W", "n8n_workflow_id": "n8n-1"}),
    "WorkflowExecution": ("workflow_executions", lambda r: {"workflow_id": r["workflow"]}),
}


def _check(error: BaseException) -> None:
    assert isinstance(error, ValidationError | LeadDBError), (
        f"{type(error).__module__}.{type(error).__name__}: {error}"
    )


@pytest.fixture
async def world(db: LeadDB) -> tuple[uuid.UUID, Refs]:
    async with db.platform() as uow:
        organization = await uow.organizations.create(
            models.OrganizationCreate(name="Hostile", slug="hostile")
        )
        await uow.commit()
    async with db.tenant(organization.id) as uow:
        lead = await uow.leads.create(models.LeadCreate(email="base@example.com"))
        user = await uow.users.create(models.UserCreate(email="u@example.com", full_name="U"))
        campaign = await uow.campaigns.create(models.CampaignCreate(name="C"))
        workflow = await uow.workflows.create(
            models.WorkflowCreate(name="W", n8n_workflow_id="n8n-0")
        )
        await uow.commit()
    refs = {"lead": lead.id, "user": user.id, "campaign": campaign.id, "workflow": workflow.id}
    return organization.id, refs


async def _row_count(pg: asyncpg.Connection) -> int:
    tables = ["leads", "users", "campaigns", "campaign_leads", "communications", "integrations"]
    tables += ["lead_assignments", "lead_notes", "lead_scoring_rules", "workflows"]
    tables += ["workflow_executions", "activity_logs"]
    total = 0
    for table in tables:
        total += int(await pg.fetchval(f"SELECT count(*) FROM {table}"))
    return total


HOSTILE = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize("entity", sorted(WRITABLE))
@HOSTILE
@given(data=st.data(), value=NASTY)
async def test_hostile_payloads_end_in_typed_errors_and_leave_nothing(
    entity: str,
    db: LeadDB,
    pg: asyncpg.Connection,
    world: tuple[uuid.UUID, Refs],
    data: st.DataObject,
    value: object,
) -> None:
    organization, refs = world
    attribute, valid = WRITABLE[entity]
    create_schema: type[BaseModel] = getattr(models, f"{entity}Create")
    update_schema: type[BaseModel] = getattr(models, f"{entity}Update")
    # Everything is drawn before any I/O: a draw made only when the create succeeded depended
    # on the database (an enrolment or an active assignment already made by an earlier example
    # turns the create into a conflict), and Hypothesis refuses such a strategy as flaky
    # (FlakyStrategyDefinition) when it replays an example and the draws differ.
    field = data.draw(st.sampled_from(sorted(create_schema.model_fields)))
    patch_field = (
        data.draw(st.sampled_from(sorted(update_schema.model_fields)))
        if update_schema.model_fields
        else None
    )
    before = await _row_count(pg)
    created: Any = None
    try:
        async with db.tenant(organization) as uow:
            created = await getattr(uow, attribute).create(
                create_schema(**{**valid(refs), field: value})
            )
            await uow.commit()
    except Exception as error:
        _check(error)
        assert await _row_count(pg) == before, "a failed create left rows behind"
        created = None
    if created is None:
        return
    if patch_field is not None:
        before = await _row_count(pg)
        try:
            async with db.tenant(organization) as uow:
                patch = update_schema(**{patch_field: value})
                await getattr(uow, attribute).update(created.id, patch)
                # Left without commit on purpose: a change that passed must still roll back.
        except Exception as error:
            _check(error)
        assert await _row_count(pg) == before
    # Each example starts from the same world: the row it made would turn the next example's
    # create into a conflict (one enrolment per lead and campaign, one active assignment).
    async with db.tenant(organization) as uow:
        await getattr(uow, attribute).delete(created.id)
        await uow.commit()


LEAD_FIELDS = [*sorted(models.Lead.model_fields), "nope", "organization_id; --", ""]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    field=st.sampled_from(LEAD_FIELDS),
    value=NASTY,
    kind=st.sampled_from(["eq", "in", "range", "keyword", "cursor", "limit", "search"]),
)
async def test_hostile_lead_filters_and_cursors_end_in_typed_errors(
    db: LeadDB, world: tuple[uuid.UUID, Refs], field: str, value: Any, kind: str
) -> None:
    organization, _ = world
    try:
        async with db.tenant(organization) as uow:
            if kind == "eq":
                await uow.leads.list(Eq(field, value))
            elif kind == "in":
                await uow.leads.list(In(field, [value, value]))
            elif kind == "range":
                await uow.leads.list(Range(gte=value).on(field))
            elif kind == "keyword":
                await uow.leads.list(status=value, owner_id=value)
            elif kind == "cursor":
                await uow.leads.list(after=str(value))
            elif kind == "limit":
                await uow.leads.list(limit=value)
            else:
                await uow.leads.list(search=value)
    except Exception as error:
        _check(error)


NON_FINITE = [float("nan"), float("inf"), float("-inf")]


@pytest.mark.parametrize("number", NON_FINITE, ids=["nan", "inf", "-inf"])
async def test_non_finite_json_numbers_are_refused_never_stored_as_null(
    db: LeadDB, pg: asyncpg.Connection, world: tuple[uuid.UUID, Refs], number: float
) -> None:
    organization, refs = world
    nested: dict[str, Any] = {"ok": 1, "deep": [0, {"bad": number}]}
    with pytest.raises(ValidationError):
        models.LeadCreate(email="nan@example.com", custom_fields=nested)
    with pytest.raises(ValidationError):
        models.WorkflowUpdate(definition=nested)
    before = await _row_count(pg)
    # Past the schemas: model_construct skips validation as a table instance does; the
    # repository still refuses before anything is sent.
    attempts: list[Callable[[Any], Any]] = [
        lambda uow: uow.leads.create(
            models.LeadCreate.model_construct(email="nan@example.com", custom_fields=nested)
        ),
        lambda uow: uow.leads.update(
            refs["lead"], models.LeadUpdate.model_construct(custom_fields=nested)
        ),
        lambda uow: uow.leads.update_many(
            [refs["lead"]], models.LeadUpdate.model_construct(custom_fields=nested)
        ),
        lambda uow: uow.workflows.update(
            refs["workflow"], models.WorkflowUpdate.model_construct(definition=nested)
        ),
        lambda uow: uow.campaigns.update(
            refs["campaign"], models.CampaignUpdate.model_construct(settings={"x": number})
        ),
        lambda uow: uow.scoring_rules.create(
            models.LeadScoringRuleCreate.model_construct(
                name="R", field="score", operator="gte", value=number, points=5
            )
        ),
    ]
    for attempt in attempts:
        async with db.tenant(organization) as uow:
            with pytest.raises(InvalidValueError) as caught:
                await attempt(uow)
            assert caught.value.field in {"custom_fields", "definition", "settings", "value"}
            await uow.commit()
    assert await _row_count(pg) == before
    stored = await pg.fetchval("SELECT custom_fields FROM leads WHERE id = $1", refs["lead"])
    assert stored in ("{}", {})


TENANT_REPOSITORIES = [
    "leads",
    "users",
    "campaigns",
    "campaign_leads",
    "communications",
    "workflows",
    "workflow_executions",
    "integrations",
    "scoring_rules",
    "score_history",
    "notes",
    "assignments",
    "activity",
    "views",
]


def _public_methods(repository: object) -> list[str]:
    return sorted(
        name
        for name, member in inspect.getmembers(type(repository))
        if not name.startswith("_") and inspect.iscoroutinefunction(member)
    )


ORDER_NAMES = st.lists(
    st.sampled_from(
        ["id", "created_at", "last_engagement_at", "custom_fields", "tags", "password_hash", "nope"]
    )
    | NASTY_TEXT,
    max_size=3,
)


def _eq(field: str, value: Any) -> Filter:
    return Eq(field, value)


def _in(field: str, value: Any) -> Filter:
    return In(field, [value, value])


def _at_least(field: str, value: Any) -> Filter:
    return Range(gte=value).on(field)


NASTY_FILTERS = st.builds(
    lambda kind, field, value: kind(field, value),
    st.sampled_from([_eq, _in, _at_least]),
    st.sampled_from([*LEAD_FIELDS, "password_hash", "credentials_encrypted"]),
    NASTY,
)


def _of_type(hint: Any, refs: Refs, schemas: tuple[Any, Any]) -> st.SearchStrategy[Any]:
    """Hostile values of the parameter's declared type: what a type-checked service may still
    pass on from its own callers (a huge int, a lone surrogate, a naive datetime, an id of
    nothing, a column that cannot be ordered by)."""
    ids = st.sampled_from(sorted(refs.values())) | st.uuids()
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(_of_type(arg, refs, schemas) for arg in typing.get_args(hint)))
    if hint is type(None):
        return st.none()
    if hint is bool:
        return st.booleans()
    if hint is int:
        return st.integers(min_value=-(2**70), max_value=2**70)
    if hint is str:
        return NASTY_TEXT
    if hint is uuid.UUID:
        return ids
    if hint is datetime:
        return st.datetimes() | st.datetimes(timezones=st.just(UTC))
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return st.sampled_from(list(hint))
    if hint is Filter:
        return NASTY_FILTERS
    if isinstance(hint, TypeVar):
        create, update = schemas
        return st.sampled_from([create, update] if hint.__name__ == "UpdateT" else [create])
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        payloads = {
            f"{entity}Create": valid for entity, (_, valid) in (WRITABLE | APPEND_ONLY).items()
        }
        if hint.__name__ in payloads:
            return st.just(hint(**payloads[hint.__name__](refs)))
        if hint.__name__.endswith("Update"):
            return st.just(hint())
        # A row as a repository returned it (leads.owners takes a page of leads): its owner
        # may be anyone, or no one that exists.
        return st.builds(
            lambda owner: hint.model_construct(id=uuid.uuid4(), owner_id=owner), ids | st.none()
        )
    if origin in (list, tuple, Sequence, Collection):
        (item,) = typing.get_args(hint)[:1]
        if item is str:
            return ORDER_NAMES
        return st.lists(_of_type(item, refs, schemas), max_size=4)
    if origin is Range:
        (bound,) = typing.get_args(hint)
        value = _of_type(bound, refs, schemas)
        return st.builds(Range, gte=st.none() | value, lt=st.none() | value)
    if origin is dict:
        return NASTY_JSON.filter(lambda value: isinstance(value, dict))
    return NASTY


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    data=st.data(),
    repository=st.sampled_from([*TENANT_REPOSITORIES, "platform.organizations", "platform.users"]),
)
async def test_every_public_repository_method_raises_only_typed_errors(
    db: LeadDB, world: tuple[uuid.UUID, Refs], data: st.DataObject, repository: str
) -> None:
    """Each public method of each tenant repository (and of the platform's), called with
    hostile values of its parameters' declared types: it returns, or raises pydantic's
    ValidationError or a leaddb error, never a ValueError, TypeError, KeyError or a driver's
    exception."""
    organization, refs = world
    refs = {**refs, "organization": organization}
    platform, _, attribute = repository.rpartition(".")
    schemas = _valid_schemas(attribute, refs)
    unit = db.platform() if platform else db.tenant(organization)
    async with unit as uow:
        target = getattr(uow, attribute)
        name = data.draw(st.sampled_from(_public_methods(target)), label="method")
        method = getattr(target, name)
        hints = typing.get_type_hints(method)
        args: list[object] = []
        kwargs: dict[str, object] = {}
        for parameter in inspect.signature(method).parameters.values():
            values = _of_type(hints.get(parameter.name, object), refs, schemas)
            if parameter.kind is parameter.VAR_POSITIONAL:
                args.extend(data.draw(st.lists(values, max_size=2), label="*args"))
            elif parameter.kind is parameter.VAR_KEYWORD:
                continue
            elif parameter.default is parameter.empty and parameter.kind != parameter.KEYWORD_ONLY:
                args.append(data.draw(values, label=parameter.name))
            elif data.draw(st.booleans(), label=f"give {parameter.name}"):
                kwargs[parameter.name] = data.draw(values, label=parameter.name)
        try:
            await method(*args, **kwargs)
        except Exception as error:
            _check(error)
        # Left without commit: whatever passed rolls back.


APPEND_ONLY: dict[str, tuple[str, Callable[[Refs], dict[str, Any]]]] = {
    "LeadScoreHistory": (
        "score_history",
        lambda r: {
            "lead_id": r["lead"],
            "old_score": 0,
            "new_score": 5,
            "old_temperature": "cold",
            "new_temperature": "cold",
        },
    ),
    "ActivityLog": (
        "activity",
        lambda r: {"entity_type": "lead", "entity_id": r["lead"], "action": "updated"},
    ),
}

CREATE_PAYLOADS = {
    f"{entity}Create": valid for entity, (_, valid) in (WRITABLE | APPEND_ONLY).items()
} | {"OrganizationCreate": lambda r: {"name": "O", "slug": f"o-{uuid.uuid4().hex[:8]}"}}


def _valid_schemas(repository: str, refs: Refs) -> tuple[Any, Any]:
    if repository == "organizations":
        slug = f"o-{uuid.uuid4().hex[:8]}"
        return models.OrganizationCreate(name="O", slug=slug), models.OrganizationUpdate()
    for entity, (attribute, valid) in {**WRITABLE, **APPEND_ONLY}.items():
        if attribute == repository:
            create = getattr(models, f"{entity}Create")(**valid(refs))
            return create, getattr(models, f"{entity}Update")()
    return models.LeadCreate(email="views@example.com"), models.LeadUpdate()
