"""A small lead service on leaddb, written the way a service would write it.

* The lifespan connects ``LeadDB`` once for the process and closes it at shutdown.
* ``tenant_uow`` resolves the bearer token into a session (``db.sessions.get``) and opens a
  unit of work scoped to the session's organization, with the user recorded as the actor; every
  query the endpoints make is confined to that organization, so another tenant's lead is 404.
* leaddb's schemas are the request and response models (``LeadCreate``, ``LeadUpdate``,
  ``LeadRead``), and its errors map to HTTP statuses in one place (``ERROR_STATUS``).

Run it: ``uvicorn examples.service.app:app`` (LEADDB_DATABASE_URL / LEADDB_REDIS_URL set, or the
embedded servers).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Annotated, Final, TypeAlias

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError
from sqlalchemy import Column
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.schema import ColumnCollectionConstraint
from sqlalchemy.sql.visitors import iterate

from leaddb import LeadDB, LeadDBSettings
from leaddb.errors import (
    ConflictError,
    ConnectionFailedError,
    ConstraintViolationError,
    InvalidCursorError,
    InvalidFilterError,
    InvalidValueError,
    NotFoundError,
    PoolTimeoutError,
    RetryableError,
    StaleVersionError,
)
from leaddb.models import Lead, LeadCreate, LeadRead, LeadStatus, LeadUpdate, metadata
from leaddb.uow import TenantUnitOfWork

UNPROCESSABLE: Final = 422  # Starlette renamed its constant for it; the number stays.

ERROR_STATUS: Final[tuple[tuple[type[Exception], int], ...]] = (
    (NotFoundError, status.HTTP_404_NOT_FOUND),
    (StaleVersionError, status.HTTP_409_CONFLICT),
    (ConflictError, status.HTTP_409_CONFLICT),
    (ValidationError, UNPROCESSABLE),
    (InvalidFilterError, UNPROCESSABLE),
    (InvalidCursorError, UNPROCESSABLE),
    (InvalidValueError, UNPROCESSABLE),
    (ConstraintViolationError, UNPROCESSABLE),
    (ConnectionFailedError, status.HTTP_503_SERVICE_UNAVAILABLE),
    (PoolTimeoutError, status.HTTP_503_SERVICE_UNAVAILABLE),
    (RetryableError, status.HTTP_503_SERVICE_UNAVAILABLE),
)
"""leaddb's errors (and pydantic's) as HTTP statuses; the most specific class wins."""

ErrorHandler: TypeAlias = Callable[[Request, Exception], Awaitable[JSONResponse]]

_ETAG: Final = re.compile(r'^(?:W/)?"?(\d{1,18})"?$')

bearer = HTTPBearer(auto_error=False, description="A session token from db.sessions.create")


class LeadPage(BaseModel):
    """One page of leads; pass ``next_cursor`` back as ``after`` for the next one."""

    items: list[LeadRead]
    next_cursor: str | None


def get_db(request: Request) -> LeadDB:
    """The process's ``LeadDB``, as the lifespan stored it."""
    db = request.app.state.db
    if not isinstance(db, LeadDB):
        raise RuntimeError("LeadDB is not connected: is the app running under its lifespan?")
    return db


async def tenant_uow(
    db: Annotated[LeadDB, Depends(get_db)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> AsyncIterator[TenantUnitOfWork]:
    """A unit of work of the caller's organization, acting as the caller (401 without a live
    session). Leaving it without ``commit()`` rolls back."""
    session = await db.sessions.get(credentials.credentials if credentials else None)
    if session is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing, expired or revoked session token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    async with db.tenant(session.organization_id, actor=session.user_id) as uow:
        yield uow


Tenant = Annotated[TenantUnitOfWork, Depends(tenant_uow)]


def read(lead: Lead, response: Response) -> LeadRead:
    """The response body of a lead; its version goes out as the ETag, for ``If-Match``."""
    response.headers["ETag"] = f'"{lead.version}"'
    return LeadRead.model_validate(lead)


def expected_version(if_match: str | None, query: int | None) -> int | None:
    """The version a PATCH expects, from ``If-Match: "3"`` or ``?expected_version=3``."""
    if if_match is None:
        return query
    found = _ETAG.match(if_match.strip())
    if found is None:
        raise HTTPException(
            UNPROCESSABLE,
            detail='If-Match must be a version ETag such as "3"',
        )
    return int(found.group(1))


def create_app(settings: LeadDBSettings | None = None) -> FastAPI:
    """The service; ``settings`` default to the LEADDB_ environment."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = await LeadDB.connect(settings)
        app.state.db = db
        try:
            yield
        finally:
            await db.close()

    app = FastAPI(title="leads", lifespan=lifespan)
    for error_class, code in ERROR_STATUS:
        app.add_exception_handler(error_class, _error_handler(code))

    @app.post("/leads", status_code=status.HTTP_201_CREATED)
    async def create_lead(payload: LeadCreate, uow: Tenant, response: Response) -> LeadRead:
        lead = await uow.leads.create(payload)
        await uow.commit()
        response.headers["Location"] = f"/leads/{lead.id}"
        return read(lead, response)

    @app.get("/leads/{lead_id}")
    async def get_lead(lead_id: uuid.UUID, uow: Tenant, response: Response) -> LeadRead:
        lead = await uow.leads.get(lead_id)
        if lead is None:
            raise NotFoundError("lead", lead_id)
        return read(lead, response)

    @app.get("/leads")
    async def list_leads(
        uow: Tenant,
        status_filter: Annotated[LeadStatus | None, Query(alias="status")] = None,
        after: Annotated[str | None, Query(max_length=2048)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> LeadPage:
        page = await uow.leads.list(status=status_filter, after=after, limit=limit)
        return LeadPage(
            items=[LeadRead.model_validate(lead) for lead in page.items],
            next_cursor=page.next_cursor,
        )

    @app.patch("/leads/{lead_id}")
    async def update_lead(
        lead_id: uuid.UUID,
        patch: LeadUpdate,
        uow: Tenant,
        response: Response,
        if_match: Annotated[str | None, Header()] = None,
        expected: Annotated[int | None, Query(alias="expected_version", ge=1)] = None,
    ) -> LeadRead:
        lead = await uow.leads.update(
            lead_id, patch, expected_version=expected_version(if_match, expected)
        )
        await uow.commit()
        return read(lead, response)

    return app


def _error_handler(code: int) -> ErrorHandler:
    async def handle(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse(error_body(error), status_code=code)

    return handle


def conflict_field(error: ConflictError) -> str | None:
    """The field(s) a conflict is about, e.g. ``email``.

    Under row-level security PostgreSQL leaves the key out of a unique violation's message, so
    ``error.field`` may be None while ``error.constraint`` names the index: the models' metadata
    then says which columns it covers.
    """
    if error.field is not None or error.constraint is None:
        return error.field
    for table in metadata.tables.values():
        for index in table.indexes:
            if index.name == error.constraint:
                return _columns(index.expressions)
        for constraint in table.constraints:
            if constraint.name == error.constraint and isinstance(
                constraint, ColumnCollectionConstraint
            ):
                return _columns(constraint.columns)
    return None


def _columns(expressions: Iterable[object]) -> str | None:
    names: list[str] = []
    for expression in expressions:
        for element in iterate(expression) if isinstance(expression, ClauseElement) else ():
            if isinstance(element, Column) and element.name not in ("organization_id", *names):
                names.append(element.name)
    return ", ".join(names) or None


def error_body(error: Exception) -> dict[str, object]:
    """The JSON body of an error: its message, and what a client can act on."""
    if isinstance(error, ValidationError):
        return {
            "detail": error.errors(include_url=False, include_context=False, include_input=False)
        }
    body: dict[str, object] = {"detail": str(error), "error": type(error).__name__}
    field = conflict_field(error) if isinstance(error, ConflictError) else None
    if isinstance(error, InvalidValueError):
        field = error.field
    if field is not None:
        body["field"] = field
    if isinstance(error, StaleVersionError):
        body["expected_version"] = error.expected
        body["current_version"] = error.actual
    return body


app = create_app()
"""The ASGI app, for ``uvicorn examples.service.app:app``."""
