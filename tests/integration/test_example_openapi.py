"""Schemathesis against the example service's OpenAPI, through its ASGI app, on the real servers,
with a valid bearer token and every check: the OpenAPI says what the service does.

The app runs in schemathesis' own event loop (its ASGI transport starts the lifespan there), on
the same test database and Redis as the fixtures that make the caller.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.python import asgi

from leaddb import LeadDB, LeadDBSettings
from leaddb.models import LeadStatus

from .factories import make_lead, make_org, make_user

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the examples live beside the package, not inside it
    sys.path.insert(0, str(ROOT))

from examples.service.app import create_app  # noqa: E402
from examples.service.schemas import CURSOR_PATTERN  # noqa: E402

# The OpenAPI is the module's app's own, read without running it (no lifespan, no servers);
# schemathesis' lazy from_fixture() loader reads a pytest attribute that pytest 9 removed.
app = create_app()
schema = schemathesis.openapi.from_dict(app.openapi())
schema.app = app  # what from_asgi() would set, without running the app at import
# The token changes with every test: asked for on every case, not cached.
schema_auth = schema.auth(refresh_interval=None)

# Every check schemathesis 4.32 has (its `--checks all`), by name: one renamed or removed in an
# upgrade fails this module loudly rather than going unchecked.
CHECKS = [
    getattr(schemathesis.checks, name)
    for name in (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
        "positive_data_acceptance",
        "negative_data_rejection",
        "use_after_free",
        "ensure_resource_availability",
        "missing_required_header",
        "ignored_auth",
        "unsupported_method",
        "allow_header_conformance",
        "object_level_authorization",
    )
]


@pytest.fixture
def service(settings: LeadDBSettings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The module's app on this test's servers: its lifespan, started by the first request,
    reads the LEADDB_ environment as a deployed service would."""
    assert settings.database_url is not None
    assert settings.redis_url is not None
    monkeypatch.setenv("LEADDB_DATABASE_URL", settings.database_url.get_secret_value())
    monkeypatch.setenv("LEADDB_REDIS_URL", settings.redis_url.get_secret_value())
    monkeypatch.setenv("LEADDB_POOL_SIZE", str(settings.pool_size))
    yield
    # The transport keeps an app's lifespan running until the process ends: close its LeadDB
    # now, while the test database still exists.
    asgi.shutdown_lifespans()


CURSORS: dict[str | None, str] = {}
"""A real next_cursor of the caller's organization for each ``status`` filter (None: none)."""


TOKEN: dict[str, str] = {}
"""The caller's session token, for the auth provider below."""


@pytest.fixture
async def caller(db: LeadDB) -> None:
    """A caller (TOKEN) whose organization has two leads of each status, and in CURSORS a
    cursor for each listing."""
    org = await make_org(db)
    user = await make_user(db, org.id)
    for status in LeadStatus:
        for index in range(2):
            await make_lead(db, org.id, f"{status.value}{index}@example.com", status=status)
    CURSORS.clear()
    async with db.tenant(org.id) as uow:
        for status_filter in (None, *LeadStatus):
            page = await uow.leads.list(status=status_filter, limit=1)
            assert page.next_cursor is not None
            CURSORS[None if status_filter is None else status_filter.value] = page.next_cursor
    TOKEN["value"] = await db.sessions.create(user_id=user.id, organization_id=org.id)


@schema_auth
class BearerToken:
    """The caller's token on every request but those where schemathesis leaves it out on
    purpose (to see them refused): a header passed to call() would be sent on those too."""

    def get(self, case: Any, context: Any) -> str | None:
        # Asked at collection too (for the schema's explicit examples), before any caller.
        return TOKEN.get("value")

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """A cursor is signed: a well-formed one schemathesis makes up is still refused (422), as
    the OpenAPI's description of ``after`` says. A client only sends the next_cursor it was
    given: well-formed cursors become real ones for the case's filter; malformed ones stay, to
    be refused. (A global hook: schemathesis runs before_call hooks of no narrower scope.)"""
    # parametrize() works on copies of the schema; the raw OpenAPI document is shared.
    if case.operation.schema.raw_schema is not schema.raw_schema or not case.query:
        return
    after = case.query.get("after")
    if isinstance(after, str) and len(after) <= 2048 and re.match(CURSOR_PATTERN, after):
        status = case.query.get("status")
        cursor = CURSORS.get(status if isinstance(status, str) else None, CURSORS[None])
        case.query["after"] = cursor


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    # One service and one caller for all the inputs of an operation, on purpose: the requests
    # share a tenant as a client's would.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_the_service_does_what_its_openapi_says(case: Any, service: None, caller: None) -> None:
    case.call_and_validate(checks=CHECKS)
