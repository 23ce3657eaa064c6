"""A small lead service on leaddb: its routes, and leaddb's FastAPI glue for everything else.

``leaddb.fastapi`` connects ``LeadDB`` for the process (``lifespan``), turns the bearer token
into a unit of work of the caller's organization, committed when a route returns (``Tenant``),
and answers leaddb's errors as RFC 9457 problems (``install``). Every query a route makes is
confined to the caller's organization, so another tenant's lead is 404.

Run it: ``leaddb migrate``, then ``uvicorn examples.service.app:app`` (LEADDB_DATABASE_URL /
LEADDB_REDIS_URL set, or the embedded servers); README.md says how to get a token.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Final

from fastapi import FastAPI, Header, Query, Response, status
from pydantic import BaseModel

from leaddb import LeadDBSettings
from leaddb.errors import NotFoundError
from leaddb.fastapi import Database, Tenant, install, lifespan, problem_responses
from leaddb.models import Lead, LeadRead, LeadStatus

from .schemas import CURSOR_PATTERN, LeadIn, LeadPatch

# At most 9 digits: every such number fits the version column (a PostgreSQL integer).
ETAG_PATTERN: Final = r'^(?:W/)?"?(\d{1,9})"?$'
MAX_VERSION: Final = 2**31 - 1  # the version column is a PostgreSQL integer
_ETAG: Final = re.compile(ETAG_PATTERN)


class LeadPage(BaseModel):
    """One page of leads; pass ``next_cursor`` back as ``after`` for the next one."""

    items: list[LeadRead]
    next_cursor: str | None


class Health(BaseModel):
    """The service answers and PostgreSQL does."""

    status: str


def read(lead: Lead, response: Response) -> LeadRead:
    """The response body of a lead; its version goes out as the ETag, for ``If-Match``."""
    response.headers["ETag"] = f'"{lead.version}"'
    return LeadRead.model_validate(lead)


def create_app(settings: LeadDBSettings | None = None) -> FastAPI:
    """The service; ``settings`` default to the LEADDB_ environment."""
    app = FastAPI(title="leads", version="1.0.0", lifespan=lifespan(settings))
    install(app)

    @app.get("/health", responses=problem_responses(503))
    async def health(db: Database) -> Health:
        """No session needed: answers while Redis is down, 503 while PostgreSQL is."""
        async with db.platform() as uow:
            await uow.fetchval("SELECT 1")
        return Health(status="ok")

    @app.post(
        "/leads",
        status_code=status.HTTP_201_CREATED,
        responses=problem_responses(401, 409, 422, 503),
    )
    async def create_lead(payload: LeadIn, uow: Tenant, response: Response) -> LeadRead:
        lead = await uow.leads.create(payload.to_create())
        response.headers["Location"] = f"/leads/{lead.id}"
        return read(lead, response)

    @app.get("/leads/{lead_id}", responses=problem_responses(401, 404, 422, 503))
    async def get_lead(lead_id: uuid.UUID, uow: Tenant, response: Response) -> LeadRead:
        lead = await uow.leads.get(lead_id)
        if lead is None:
            raise NotFoundError("lead", lead_id)
        return read(lead, response)

    @app.get("/leads", responses=problem_responses(401, 422, 503))
    async def list_leads(
        uow: Tenant,
        status_filter: Annotated[LeadStatus | None, Query(alias="status")] = None,
        after: Annotated[
            str | None,
            Query(
                min_length=1,
                max_length=2048,
                pattern=CURSOR_PATTERN,
                description="The next_cursor of the page before, unchanged (it is signed: "
                "any other value is 422)",
            ),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> LeadPage:
        page = await uow.leads.list(status=status_filter, after=after, limit=limit)
        return LeadPage(
            items=[LeadRead.model_validate(lead) for lead in page.items],
            next_cursor=page.next_cursor,
        )

    @app.patch("/leads/{lead_id}", responses=problem_responses(401, 404, 409, 422, 503))
    async def update_lead(
        lead_id: uuid.UUID,
        patch: LeadPatch,
        uow: Tenant,
        response: Response,
        if_match: Annotated[
            str | None,
            Header(pattern=ETAG_PATTERN, description='The ETag of the version you read: "3"'),
        ] = None,
        expected: Annotated[
            int | None, Query(alias="expected_version", ge=1, le=MAX_VERSION)
        ] = None,
    ) -> LeadRead:
        version = expected
        if if_match is not None:
            found = _ETAG.match(if_match)
            version = int(found.group(1)) if found else None
        lead = await uow.leads.update(lead_id, patch.to_update(), expected_version=version)
        return read(lead, response)

    return app


app = create_app()
"""The ASGI app, for ``uvicorn examples.service.app:app``."""
