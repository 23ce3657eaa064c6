"""leaddb.fastapi through httpx (ASGI transport) against the real servers: sessions resolved in
Redis, units of work committed or rolled back with the request, errors as problem+json."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from conftest import asyncpg_dsn, run_settings
from fastapi import FastAPI, status

from leaddb import LeadDB, LeadDBSettings
from leaddb.errors import NotFoundError
from leaddb.fastapi import (
    PROBLEM_MEDIA_TYPE,
    CurrentSession,
    Database,
    Problem,
    Tenant,
    install,
    lifespan,
)
from leaddb.models import LeadCreate, LeadRead, User, UserUpdate

from .factories import make_org, make_user


def glue_app(settings: LeadDBSettings, database_url: str) -> FastAPI:
    """A service of a few routes on the glue, each there to prove one of its promises."""
    app = FastAPI(lifespan=lifespan(settings))
    install(app)

    @app.get("/ping")
    async def ping(db: Database) -> dict[str, str]:
        async with db.platform() as uow:
            await uow.fetchval("SELECT 1")
        return {"status": "ok"}

    @app.get("/me")
    async def me(session: CurrentSession) -> dict[str, str]:
        return {"user_id": str(session.user_id)}

    @app.post("/leads", status_code=status.HTTP_201_CREATED)
    async def create(payload: LeadCreate, uow: Tenant, then: str = "return") -> LeadRead:
        lead = await uow.leads.create(payload)
        if then == "raise":
            raise NotFoundError("lead", uuid.uuid4())
        if then == "lose-connection":
            # The transaction's server process ends before the commit, as in a failover.
            pid = await uow.fetchval("SELECT pg_backend_pid()")
            admin = await asyncpg.connect(asyncpg_dsn(database_url))
            try:
                await admin.execute("SELECT pg_terminate_backend($1)", pid)
            finally:
                await admin.close()
        return LeadRead.model_validate(lead)

    @app.get("/leads/{lead_id}")
    async def read(lead_id: uuid.UUID, uow: Tenant) -> LeadRead:
        lead = await uow.leads.get(lead_id)
        if lead is None:
            raise NotFoundError("lead", lead_id)
        return LeadRead.model_validate(lead)

    @app.get("/leads")
    async def page(uow: Tenant, after: str | None = None) -> list[LeadRead]:
        found = await uow.leads.list(after=after)
        return [LeadRead.model_validate(lead) for lead in found.items]

    return app


async def client_of(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    # httpx's ASGITransport sends no lifespan events: run the app's lifespan around the client.
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://glue.test") as http:
            yield http


@pytest.fixture
async def client(settings: LeadDBSettings, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async for http in client_of(glue_app(settings, database_url)):
        yield http


async def login(db: LeadDB) -> tuple[uuid.UUID, User, dict[str, str]]:
    org = await make_org(db)
    user = await make_user(db, org.id)
    token = await db.sessions.create(user_id=user.id, organization_id=org.id)
    return org.id, user, {"Authorization": f"Bearer {token}"}


def problem_of(response: httpx.Response, status_code: int) -> Problem:
    assert response.status_code == status_code, response.text
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body = Problem.model_validate_json(response.content)
    assert body.status == status_code
    assert body.type == "about:blank"
    return body


async def lead_count(db: LeadDB, org_id: uuid.UUID) -> int:
    async with db.tenant(org_id) as uow:
        return len((await uow.leads.list()).items)


async def test_no_or_unknown_token_is_401_asking_for_a_bearer(
    db: LeadDB, client: httpx.AsyncClient
) -> None:
    anonymous = await client.get("/me")
    assert problem_of(anonymous, 401).title == "Unauthorized"
    assert anonymous.headers["WWW-Authenticate"] == "Bearer"
    basic = await client.get("/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert problem_of(basic, 401).detail == "a bearer session token is required"
    unknown = await client.get("/leads", headers={"Authorization": "Bearer not-a-token"})
    assert problem_of(unknown, 401).detail == "the session token is unknown, expired or revoked"
    assert unknown.headers["WWW-Authenticate"] == "Bearer"


async def test_token_of_a_user_deactivated_without_revoking_it_is_401(
    db: LeadDB, client: httpx.AsyncClient
) -> None:
    org_id, user, headers = await login(db)
    assert (await client.get("/leads", headers=headers)).status_code == 200
    # In SQL, which does not revoke the user's sessions as the repository does: the token
    # still opens a session, and only the glue's look at the user refuses it.
    async with db.tenant(org_id) as uow:
        await uow.execute("UPDATE users SET is_active = false WHERE id = $1", user.id)
        uow.record_write("user", [user.id])  # what SQL changed, for the cache
        await uow.commit()
    token = headers["Authorization"].removeprefix("Bearer ")
    assert await db.sessions.get(token) is not None
    refused = await client.get("/leads", headers=headers)
    assert problem_of(refused, 401).detail == "the session's user is deactivated or deleted"
    assert refused.headers["WWW-Authenticate"] == "Bearer"


async def test_token_of_a_user_deactivated_through_the_repository_is_401(
    db: LeadDB, client: httpx.AsyncClient
) -> None:
    org_id, user, headers = await login(db)
    async with db.tenant(org_id) as uow:
        await uow.users.update(user.id, UserUpdate(is_active=False))
        await uow.commit()
    problem_of(await client.get("/leads", headers=headers), 401)


async def test_a_route_that_returns_commits_and_one_that_raises_rolls_back(
    db: LeadDB, client: httpx.AsyncClient
) -> None:
    org_id, _, headers = await login(db)
    created = await client.post("/leads", json={"email": "kept@example.com"}, headers=headers)
    assert created.status_code == 201, created.text
    assert (await client.get(f"/leads/{created.json()['id']}", headers=headers)).status_code == 200
    failed = await client.post(
        "/leads", json={"email": "lost@example.com"}, params={"then": "raise"}, headers=headers
    )
    assert problem_of(failed, 404).error == "NotFoundError"
    async with db.tenant(org_id) as uow:
        emails = {lead.email for lead in (await uow.leads.list()).items}
    assert emails == {"kept@example.com"}


async def test_a_commit_that_fails_is_answered_as_the_failure_not_201(
    db: LeadDB, client: httpx.AsyncClient
) -> None:
    org_id, _, headers = await login(db)
    response = await client.post(
        "/leads",
        json={"email": "doomed@example.com"},
        params={"then": "lose-connection"},
        headers=headers,
    )
    body = problem_of(response, 503)
    assert body.error == "ConnectionFailedError"
    assert response.headers["Retry-After"] == "1"
    assert await lead_count(db, org_id) == 0


async def test_redis_down_is_503_only_where_a_session_is_resolved(
    db: LeadDB, database_url: str
) -> None:
    _, _, headers = await login(db)
    with socket.socket() as probe:  # a port nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    settings = run_settings(database_url, f"redis://127.0.0.1:{dead_port}/0")
    async for http in client_of(glue_app(settings, database_url)):
        assert (await http.get("/ping")).json() == {"status": "ok"}
        assert (await http.get("/openapi.json")).status_code == 200
        for path in ("/me", "/leads"):
            down = await http.get(path, headers=headers)
            body = problem_of(down, 503)
            assert body.error == "ConnectionFailedError"
            assert str(dead_port) not in down.text  # hosts and ports go to the log only
            assert down.headers["Retry-After"] == "1"


async def test_leaddb_errors_are_problems_with_what_a_client_can_act_on(
    db: LeadDB, client: httpx.AsyncClient
) -> None:
    _, _, headers = await login(db)
    missing_id = uuid.uuid4()
    missing = problem_of(await client.get(f"/leads/{missing_id}", headers=headers), 404)
    assert missing.title == "Not Found"
    assert missing.detail == f"lead {missing_id} not found"
    assert missing.instance == f"/leads/{missing_id}"
    assert missing.error == "NotFoundError"

    await client.post("/leads", json={"email": "taken@example.com"}, headers=headers)
    clash = await client.post("/leads", json={"email": "TAKEN@example.com"}, headers=headers)
    conflict = problem_of(clash, 409)
    assert conflict.error == "ConflictError"
    assert conflict.field is not None
    assert "email" in conflict.field

    cursor = problem_of(await client.get("/leads?after=forged", headers=headers), 422)
    assert cursor.error == "InvalidCursorError"
    assert cursor.errors is None

    invalid = await client.post(
        "/leads", json={"email": "not an email", "score": 101}, headers=headers
    )
    validation = problem_of(invalid, 422)
    assert validation.errors is not None
    assert {tuple(issue.loc) for issue in validation.errors} == {
        ("body", "email"),
        ("body", "score"),
    }
    assert "not an email" not in invalid.text  # the input is never echoed


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"email": "a@example.com", "score": NaN}', "unexpected character"),
        (b'{"email": "a@example.com", "score": Infinity}', "unexpected character"),
        (b'{"email": "a@example.com", "score": -Infinity}', "no digit after sign"),
        (b'{"email": "a@example.com", "score": 1e400}', "infinity"),
        (b'{"email": "a@example.com", "first_name": "\\ud800"}', "surrogate"),
        (b'{"email": "a@example.com", "\\udfff": 1}', "surrogate"),
    ],
    ids=["NaN", "Infinity", "-Infinity", "1e400", "lone-surrogate", "surrogate-key"],
)
async def test_json_no_client_means_is_422_saying_why(
    db: LeadDB, client: httpx.AsyncClient, body: bytes, reason: str
) -> None:
    org_id, _, headers = await login(db)
    response = await client.post(
        "/leads", content=body, headers={**headers, "Content-Type": "application/json"}
    )
    problem = problem_of(response, 422)
    assert problem.errors is not None
    assert len(problem.errors) == 1
    assert problem.errors[0].type == "json_invalid"
    assert problem.errors[0].msg.startswith("JSON decode error: ")
    assert reason in problem.errors[0].msg
    assert await lead_count(db, org_id) == 0


async def test_the_openapi_declares_the_problem_schema_for_fastapis_422(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    problem_schema = document["components"]["schemas"]["Problem"]
    assert set(problem_schema["required"]) == {"title", "status", "detail"}
    declared = document["paths"]["/leads"]["post"]["responses"]["422"]["content"]
    assert declared == {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    assert "HTTPValidationError" not in document["components"]["schemas"]
    after = next(
        parameter
        for parameter in document["paths"]["/leads"]["get"]["parameters"]
        if parameter["name"] == "after"
    )
    # Optional, so left out when absent: never a "null" a client would send.
    assert after["schema"]["type"] == "string"
    assert "anyOf" not in after["schema"]


async def test_405_names_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    response = await client.request("DELETE", "/leads")
    assert problem_of(response, 405).title == "Method Not Allowed"
    assert response.headers["Allow"] == "GET, POST"
