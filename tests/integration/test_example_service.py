"""The FastAPI example service (examples/service/app.py) over HTTP, against the real servers:
sessions in Redis, leads in PostgreSQL, leaddb's errors as HTTP statuses.

Written as a service's own tests would be: on leaddb's pytest plugin (``leaddb.testing``: the
``leaddb``, ``leaddb_settings`` and ``leaddb_factories`` fixtures), not on this suite's helpers."""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from leaddb import LeadDB, LeadDBSettings
from leaddb.testing import Factories

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the examples live beside the package, not inside it
    sys.path.insert(0, str(ROOT))

from examples.service.app import create_app  # noqa: E402
from examples.service.token import token_for  # noqa: E402


@dataclass
class Caller:
    """An HTTP client and the organization its session token belongs to."""

    client: httpx.AsyncClient
    organization_id: uuid.UUID
    headers: dict[str, str]


@pytest.fixture
async def client(leaddb_settings: LeadDBSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(leaddb_settings)
    # httpx's ASGITransport sends no lifespan events: run the app's lifespan around the client.
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://leads.test") as http:
            yield http


async def caller(factories: Factories, client: httpx.AsyncClient) -> Caller:
    made = await factories.organization(users=1, leads=0)
    token = await factories.db.sessions.create(
        user_id=made.users[0].id, organization_id=made.organization.id
    )
    return Caller(client, made.organization.id, {"Authorization": f"Bearer {token}"})


@pytest.fixture
async def alice(leaddb_factories: Factories, client: httpx.AsyncClient) -> Caller:
    return await caller(leaddb_factories, client)


@pytest.fixture
async def bob(leaddb_factories: Factories, client: httpx.AsyncClient) -> Caller:
    return await caller(leaddb_factories, client)


async def test_create_then_get_returns_the_lead_with_its_version(alice: Caller) -> None:
    created = await alice.client.post(
        "/leads",
        json={"email": "Ada@Example.com", "first_name": "Ada", "status": "qualified"},
        headers=alice.headers,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["organization_id"] == str(alice.organization_id)
    assert body["version"] == 1
    assert created.headers["Location"] == f"/leads/{body['id']}"
    assert created.headers["ETag"] == '"1"'

    fetched = await alice.client.get(f"/leads/{body['id']}", headers=alice.headers)
    assert fetched.status_code == 200
    assert fetched.json()["first_name"] == "Ada"
    assert "password_hash" not in fetched.text


async def test_list_pages_by_status_with_a_cursor(
    leaddb: LeadDB, leaddb_factories: Factories, alice: Caller
) -> None:
    for index in range(5):
        await leaddb_factories.lead(
            alice.organization_id, email=f"q{index}@example.com", status="qualified"
        )
    await leaddb_factories.lead(alice.organization_id, email="new@example.com")

    first = await alice.client.get(
        "/leads", params={"status": "qualified", "limit": 3}, headers=alice.headers
    )
    assert first.status_code == 200, first.text
    page = first.json()
    assert len(page["items"]) == 3
    assert page["next_cursor"]
    second = await alice.client.get(
        "/leads",
        params={"status": "qualified", "limit": 3, "after": page["next_cursor"]},
        headers=alice.headers,
    )
    rest = second.json()
    assert len(rest["items"]) == 2
    assert rest["next_cursor"] is None
    emails = {item["email"] for item in page["items"] + rest["items"]}
    assert emails == {f"q{index}@example.com" for index in range(5)}


async def test_update_with_if_match_bumps_the_version(
    leaddb: LeadDB, leaddb_factories: Factories, alice: Caller
) -> None:
    lead = await leaddb_factories.lead(alice.organization_id)
    updated = await alice.client.patch(
        f"/leads/{lead.id}",
        json={"status": "contacted", "score": 40},
        headers={**alice.headers, "If-Match": '"1"'},
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["status"] == "contacted"
    assert updated.json()["version"] == 2
    assert updated.headers["ETag"] == '"2"'


async def test_stale_update_is_409_with_both_versions(
    leaddb: LeadDB, leaddb_factories: Factories, alice: Caller
) -> None:
    lead = await leaddb_factories.lead(alice.organization_id)
    fresh = await alice.client.patch(
        f"/leads/{lead.id}",
        json={"score": 10},
        params={"expected_version": 1},
        headers=alice.headers,
    )
    assert fresh.status_code == 200
    stale = await alice.client.patch(
        f"/leads/{lead.id}",
        json={"score": 20},
        params={"expected_version": 1},
        headers=alice.headers,
    )
    assert stale.status_code == 409
    assert stale.json()["error"] == "StaleVersionError"
    assert stale.json()["expected_version"] == 1
    assert stale.json()["current_version"] == 2


async def test_duplicate_email_is_409_naming_the_field(
    leaddb: LeadDB, leaddb_factories: Factories, alice: Caller
) -> None:
    await leaddb_factories.lead(alice.organization_id, email="taken@example.com")
    duplicate = await alice.client.post(
        "/leads", json={"email": "TAKEN@example.com"}, headers=alice.headers
    )
    assert duplicate.status_code == 409
    assert duplicate.json()["error"] == "ConflictError"
    assert "email" in duplicate.json()["field"]


@pytest.mark.parametrize(
    "payload",
    [
        {"email": "not an email"},
        {"email": "a@example.com", "score": 101},
        {"email": "a@example.com", "organization_id": str(uuid.uuid4())},
        {"first_name": "no email"},
    ],
    ids=["bad-email", "score-out-of-range", "names-a-tenant", "missing-email"],
)
async def test_bad_payload_is_422(alice: Caller, payload: dict[str, object]) -> None:
    response = await alice.client.post("/leads", json=payload, headers=alice.headers)
    assert response.status_code == 422, response.text


async def test_bad_cursor_and_bad_if_match_are_422(
    leaddb: LeadDB, leaddb_factories: Factories, alice: Caller
) -> None:
    lead = await leaddb_factories.lead(alice.organization_id)
    cursor = await alice.client.get("/leads", params={"after": "forged"}, headers=alice.headers)
    assert cursor.status_code == 422
    assert cursor.json()["error"] == "InvalidCursorError"
    etag = await alice.client.patch(
        f"/leads/{lead.id}", json={"score": 1}, headers={**alice.headers, "If-Match": "*x"}
    )
    assert etag.status_code == 422


async def test_requests_without_a_live_session_are_401(
    leaddb: LeadDB, leaddb_factories: Factories, alice: Caller
) -> None:
    lead = await leaddb_factories.lead(alice.organization_id)
    anonymous = await alice.client.get(f"/leads/{lead.id}")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == "Bearer"
    forged = await alice.client.get(
        f"/leads/{lead.id}", headers={"Authorization": "Bearer not-a-token"}
    )
    assert forged.status_code == 401
    token = alice.headers["Authorization"].removeprefix("Bearer ")
    await leaddb.sessions.revoke(token)
    revoked = await alice.client.get(f"/leads/{lead.id}", headers=alice.headers)
    assert revoked.status_code == 401


async def test_other_tenants_lead_is_404_to_read_and_to_update(
    leaddb: LeadDB, leaddb_factories: Factories, alice: Caller, bob: Caller
) -> None:
    lead = await leaddb_factories.lead(alice.organization_id)
    read = await bob.client.get(f"/leads/{lead.id}", headers=bob.headers)
    assert read.status_code == 404
    assert read.json()["error"] == "NotFoundError"
    update = await bob.client.patch(
        f"/leads/{lead.id}", json={"first_name": "Mallory"}, headers=bob.headers
    )
    assert update.status_code == 404
    listed = await bob.client.get("/leads", headers=bob.headers)
    assert listed.json()["items"] == []
    still = await alice.client.get(f"/leads/{lead.id}", headers=alice.headers)
    assert still.json()["first_name"] != "Mallory"


async def test_unknown_lead_is_404(alice: Caller) -> None:
    missing = await alice.client.get(f"/leads/{uuid.uuid4()}", headers=alice.headers)
    assert missing.status_code == 404


async def test_the_readmes_token_script_opens_a_session_the_service_accepts(
    leaddb: LeadDB, client: httpx.AsyncClient
) -> None:
    first = await token_for(leaddb, "acme", "dev@example.com")
    again = await token_for(leaddb, "acme", "dev@example.com")  # the same user, a second session
    for token in (first, again):
        listed = await client.get("/leads", headers={"Authorization": f"Bearer {token}"})
        assert listed.status_code == 200, listed.text
    one = await leaddb.sessions.get(first)
    other = await leaddb.sessions.get(again)
    assert one is not None
    assert other is not None
    assert (one.user_id, one.organization_id) == (other.user_id, other.organization_id)


@pytest.mark.parametrize(
    ("field", "value"),
    [("phone", ""), ("phone", "((((((("), ("linkedin_url", ""), ("linkedin_url", "ftp://a.b")],
)
async def test_values_the_openapi_refuses_are_422_naming_the_field(
    alice: Caller, field: str, value: str
) -> None:
    document = (await alice.client.get("/openapi.json")).json()
    declared = document["components"]["schemas"]["LeadIn"]["properties"][field]["anyOf"][0]
    assert re.search(declared["pattern"], value) is None  # the OpenAPI says it is refused
    response = await alice.client.post(
        "/leads", json={"email": "a@example.com", field: value}, headers=alice.headers
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [issue["loc"] for issue in response.json()["errors"]] == [["body", field]]


async def test_values_the_openapi_allows_are_stored(alice: Caller) -> None:
    created = await alice.client.post(
        "/leads",
        json={
            "email": "b@example.com",
            "phone": "+1 (555) 010-0200",
            "linkedin_url": "https://www.linkedin.com/in/ada",
            "estimated_value": "1200.50",
        },
        headers=alice.headers,
    )
    assert created.status_code == 201, created.text
    assert created.json()["estimated_value"] == "1200.50"
    assert created.json()["linkedin_url"] == "https://www.linkedin.com/in/ada"


async def test_every_lead_route_declares_its_problem_answers(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    expected = {
        ("post", "/leads"): {"401", "409", "422", "503"},
        ("get", "/leads"): {"401", "422", "503"},
        ("get", "/leads/{lead_id}"): {"401", "404", "422", "503"},
        ("patch", "/leads/{lead_id}"): {"401", "404", "409", "422", "503"},
    }
    for (method, path), statuses in expected.items():
        answers = document["paths"][path][method]["responses"]
        assert {code for code in answers if code >= "400"} == statuses
        for code in statuses:
            assert answers[code]["content"] == problem, (method, path, code)
    assert document["paths"]["/leads"]["get"]["security"] == [{"HTTPBearer": []}]
