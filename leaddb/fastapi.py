"""FastAPI glue (extra ``leaddb[fastapi]``): what every service on leaddb would otherwise copy.

* ``lifespan(settings)`` connects one ``LeadDB`` for the process (``app.state.leaddb``) and
  closes it at shutdown.
* ``Tenant`` (``Annotated[TenantUnitOfWork, ...]``) resolves the bearer session token with
  ``db.sessions.get`` and opens ``db.tenant(organization, actor=user)``: 401 (with
  ``WWW-Authenticate: Bearer``) without a live session or when its user is deactivated or gone;
  the unit of work is committed when the endpoint returns and rolled back when it raises. It
  runs with FastAPI's ``scope="function"``, so the commit happens before the response is sent:
  a commit that fails answers an error, never a 2xx for work that was lost.
* ``install(app)`` maps leaddb's errors (and request validation) to 404 / 409 / 422 / 503
  answers with an RFC 9457 ``application/problem+json`` body, puts the ``Problem`` schema in the
  OpenAPI, and makes the app parse JSON bodies strictly (no NaN, Infinity, 1e400 or lone
  surrogate gets past the parser, so no error echoes a value it cannot encode).
* ``problem_responses(401, 404, ...)`` declares those answers on a route, for ``responses=``.

Redis down: only the routes that resolve a session answer 503; the others do not touch Redis.
"""

from __future__ import annotations

import http
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any, Final, TypeAlias

import orjson

try:
    import fastapi  # noqa: F401  (only to say what is missing, below)
except ImportError as missing:  # pragma: no cover - the dev extra installs it
    raise ImportError("leaddb.fastapi needs FastAPI: pip install 'leaddb[fastapi]'") from missing
from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import Column
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.schema import ColumnCollectionConstraint
from sqlalchemy.sql.visitors import iterate
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from leaddb.db import LeadDB
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
    StatementTimeoutError,
    TenantViolationError,
)
from leaddb.models import metadata
from leaddb.sessions import Session
from leaddb.settings import LeadDBSettings
from leaddb.uow import TenantUnitOfWork

__all__ = [
    "ERROR_STATUS",
    "PROBLEM_MEDIA_TYPE",
    "CurrentSession",
    "Database",
    "Problem",
    "ProblemIssue",
    "ProblemResponse",
    "StrictJSONRoute",
    "Tenant",
    "bearer",
    "get_leaddb",
    "install",
    "lifespan",
    "problem_responses",
    "resolve_session",
    "tenant_unit_of_work",
]

logger = logging.getLogger("leaddb.fastapi")

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
_UNPROCESSABLE: Final = 422  # Starlette renamed its constant for it; the number stays.
_UNAVAILABLE_DETAIL: Final = "the database or the session store is unavailable; retry shortly"

ERROR_STATUS: Final[tuple[tuple[type[Exception], int], ...]] = (
    (NotFoundError, 404),
    (StaleVersionError, 409),
    (ConflictError, 409),
    (ValidationError, _UNPROCESSABLE),
    (InvalidFilterError, _UNPROCESSABLE),
    (InvalidCursorError, _UNPROCESSABLE),
    (InvalidValueError, _UNPROCESSABLE),
    (ConstraintViolationError, _UNPROCESSABLE),
    (TenantViolationError, _UNPROCESSABLE),
    (ConnectionFailedError, 503),
    (PoolTimeoutError, 503),
    (RetryableError, 503),
    (StatementTimeoutError, 503),
)
"""leaddb's errors (and pydantic's) as HTTP statuses; Starlette picks the most specific class.
Any other error stays a 500: it is a bug to fix, not an answer to give."""


# -- the problem body (RFC 9457) -----------------------------------------------------------


class ProblemIssue(BaseModel):
    """One reason a request was refused: where (``loc``), why (``msg``) and pydantic's ``type``."""

    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem: ``type`` is ``about:blank``, so ``title`` is the status's phrase.

    Extension members: ``error`` (the leaddb error class), ``field`` (the field at fault),
    ``expected_version`` / ``current_version`` (a stale update) and ``errors`` (every reason a
    request failed validation). The input itself is never echoed.
    """

    model_config = ConfigDict(title="Problem")

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    error: str | None = None
    field: str | None = None
    expected_version: int | None = None
    current_version: int | None = None
    errors: list[ProblemIssue] | None = None


class ProblemResponse(Response):
    """A ``Problem`` as ``application/problem+json``."""

    media_type = PROBLEM_MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        if isinstance(content, Problem):
            return content.model_dump_json(exclude_none=True).encode()
        return orjson.dumps(content)


def problem(status: int, detail: str, request: Request | None = None, **extra: Any) -> Problem:
    """A problem of this status; ``detail`` and every string made safe to encode."""
    return Problem(
        title=_phrase(status),
        status=status,
        detail=_readable(detail),
        instance=None if request is None else _readable(request.url.path),
        **extra,
    )


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _readable(text: str) -> str:
    # A lone surrogate cannot be encoded as UTF-8: spelled out as \udXXX it can, and stays
    # readable.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route (or router) answering these statuses with a ``Problem``."""
    reference = {"$ref": "#/components/schemas/Problem"}
    return {
        status: {
            "description": _phrase(status),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": reference}},
        }
        for status in statuses
    }


# -- the lifespan and the dependencies --------------------------------------------------------


def lifespan(
    settings: LeadDBSettings | None = None,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """A FastAPI lifespan connecting ``LeadDB`` (``settings`` default to the LEADDB_
    environment) into ``app.state.leaddb`` at start-up and closing it at shutdown."""

    @asynccontextmanager
    async def connected(app: FastAPI) -> AsyncIterator[None]:
        db = await LeadDB.connect(settings)
        app.state.leaddb = db
        try:
            yield
        finally:
            del app.state.leaddb
            await db.close()

    return connected


async def get_leaddb(request: Request) -> LeadDB:
    """The process's ``LeadDB``, as ``lifespan`` stored it.

    A coroutine although it awaits nothing: FastAPI runs a plain function dependency in a
    worker thread, a thread hop on every request."""
    db = getattr(request.app.state, "leaddb", None)
    if not isinstance(db, LeadDB):
        raise RuntimeError("LeadDB is not connected: is the app running under leaddb's lifespan?")
    return db


Database: TypeAlias = Annotated[LeadDB, Depends(get_leaddb)]
"""The process's ``LeadDB`` as a dependency, for routes that need no session."""

bearer: Final = HTTPBearer(
    auto_error=False, description="A session token, from db.sessions.create(...)"
)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


async def resolve_session(
    db: Database,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Session:
    """The caller's live session: 401 without one, 503 (ConnectionFailedError) when Redis
    cannot say."""
    if credentials is None:
        raise _unauthorized("a bearer session token is required")
    session = await db.sessions.get(credentials.credentials)
    if session is None:
        raise _unauthorized("the session token is unknown, expired or revoked")
    return session


CurrentSession: TypeAlias = Annotated[Session, Depends(resolve_session)]


async def tenant_unit_of_work(
    db: Database, session: CurrentSession
) -> AsyncIterator[TenantUnitOfWork]:
    """A unit of work of the caller's organization acting as the caller, committed when the
    endpoint returns, rolled back when it raises.

    A session outlives nothing in PostgreSQL: its user, read in the same unit of work, must
    still exist and be active (deactivating through the repository revokes the sessions too,
    but an update in raw SQL does not), else 401.
    """
    async with db.tenant(session.organization_id, actor=session.user_id) as uow:
        user = await uow.users.get(session.user_id)
        if user is None or not user.is_active:
            raise _unauthorized("the session's user is deactivated or deleted")
        yield uow
        if not uow.closed:
            await uow.commit()


Tenant: TypeAlias = Annotated[
    TenantUnitOfWork,
    # "function": the exit (the commit) runs before the response is sent, so a failed commit
    # is answered as the error it is.
    Depends(tenant_unit_of_work, scope="function"),
]


# -- strict JSON bodies --------------------------------------------------------------------


class _StrictJSONRequest(Request):
    async def json(self) -> Any:
        # orjson refuses NaN, Infinity, numbers beyond a double (1e400) and lone surrogates,
        # none of which is JSON a client means; its JSONDecodeError is json's, which FastAPI
        # turns into a 422 naming the position.
        if not hasattr(self, "_strict_json"):
            self._strict_json = orjson.loads(await self.body())
        return self._strict_json


class StrictJSONRoute(APIRoute):
    """An ``APIRoute`` whose JSON bodies are parsed strictly (see ``_StrictJSONRequest``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(_StrictJSONRequest(request.scope, request.receive))

        return strict


# -- the error handlers -------------------------------------------------------------------


def install(app: FastAPI) -> None:
    """Problem answers for leaddb's errors, request validation and HTTP errors; the ``Problem``
    schema in the OpenAPI; strict JSON parsing for the routes added to ``app`` from now on.

    An ``APIRouter`` keeps its own route class: give it ``route_class=StrictJSONRoute``.
    """
    app.router.route_class = StrictJSONRoute
    for error_class, status in ERROR_STATUS:
        app.add_exception_handler(error_class, _leaddb_error_handler(status))
    app.add_exception_handler(RequestValidationError, _request_validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)
    _add_problem_schema(app)


ErrorHandler: TypeAlias = Callable[[Request, Exception], Awaitable[Response]]


def _leaddb_error_handler(status: int) -> ErrorHandler:
    async def handle(request: Request, error: Exception) -> Response:
        if status == 503:
            # The cause names hosts and ports: for the logs, not for the client.
            logger.warning("answering 503 to %s %s: %s", request.method, request.url.path, error)
            body = problem(503, _UNAVAILABLE_DETAIL, request, error=type(error).__name__)
            return ProblemResponse(body, status_code=503, headers={"Retry-After": "1"})
        return ProblemResponse(error_problem(error, status, request), status_code=status)

    return handle


async def _request_validation_handler(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    body = problem(
        _UNPROCESSABLE,
        "the request is not valid: see errors",
        request,
        errors=_issues(error.errors()),
    )
    return ProblemResponse(body, status_code=_UNPROCESSABLE)


async def _http_error_handler(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    body = problem(error.status_code, str(error.detail), request)
    headers = dict(error.headers or {})
    if error.status_code == 405:
        # Starlette names the methods of the first route on the path only; FastAPI makes one
        # route per method, so GET and POST /leads would answer "Allow: GET" alone.
        headers["Allow"] = ", ".join(sorted(_allowed_methods(request)))
    return ProblemResponse(body, status_code=error.status_code, headers=headers)


def _allowed_methods(request: Request) -> set[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return methods


def error_problem(error: Exception, status: int, request: Request | None = None) -> Problem:
    """The problem body of one of leaddb's (or pydantic's) errors."""
    if isinstance(error, ValidationError):
        issues = error.errors(include_url=False, include_context=False, include_input=False)
        return problem(
            status, "the request is not valid: see errors", request, errors=_issues(issues)
        )
    extra: dict[str, Any] = {"error": type(error).__name__}
    if isinstance(error, ConflictError):
        extra["field"] = conflict_field(error)
    if isinstance(error, InvalidValueError):
        extra["field"] = error.field
    if isinstance(error, StaleVersionError):
        extra["expected_version"] = error.expected
        extra["current_version"] = error.actual
    return problem(status, str(error), request, **extra)


def _issues(errors: Iterable[Any]) -> list[ProblemIssue]:
    """pydantic's (or FastAPI's) error dicts without their input, every string encodable."""
    issues = []
    for item in errors:
        message = str(item.get("msg", ""))
        context = item.get("ctx")
        if item.get("type") == "json_invalid" and isinstance(context, dict) and "error" in context:
            message = f"{message}: {context['error']}"  # what is wrong with the JSON, and where
        location = [
            part if isinstance(part, int) else _readable(str(part)) for part in item.get("loc", ())
        ]
        issues.append(
            ProblemIssue(loc=location, msg=_readable(message), type=str(item.get("type", "")))
        )
    return issues


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


# -- the OpenAPI ----------------------------------------------------------------------------


def _add_problem_schema(app: FastAPI) -> None:
    """Add the ``Problem`` schemas to the app's OpenAPI (``problem_responses`` refers to them by
    name), and declare FastAPI's own 422 answers as the problems this module makes of them."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        if "Problem" in schemas:
            return schema
        problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(problem_schema.pop("$defs", {}))
        schemas["Problem"] = problem_schema
        if schemas.get("JsonValue") == {}:  # pydantic's JsonValue: any JSON at all
            schemas["JsonValue"] = _JSON_VALUE
        _text_without_nul(schemas)
        declared = problem_responses(_UNPROCESSABLE)[_UNPROCESSABLE]
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                if not isinstance(operation, dict):
                    continue
                answers = operation.get("responses", {})
                if _is_fastapi_validation_error(answers.get(str(_UNPROCESSABLE))):
                    answers[str(_UNPROCESSABLE)] = declared
                for parameter in operation.get("parameters", ()):
                    _drop_null(parameter.get("schema"))
                    _text_without_nul(parameter.get("schema"))
        if "HTTPValidationError" not in str(schema.get("paths")):
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
        return schema

    # FastAPI's documented way to extend its OpenAPI is to replace this method on the app.
    app.openapi = openapi  # type: ignore[method-assign]


_NO_NUL: Final = "^[^\\u0000]*$"
_JSON_VALUE: Final = {
    "anyOf": [
        {"type": "null"},
        {"type": "boolean"},
        {"type": "number"},
        {"type": "string"},
        {"type": "array", "items": {"$ref": "#/components/schemas/JsonValue"}},
        {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/JsonValue"}},
    ]
}


def _text_without_nul(schema: object) -> None:
    """Say that no text holds a NUL: PostgreSQL's text and jsonb cannot store one, so leaddb
    refuses it (InvalidValueError, 422). Strings that already have a pattern, a format or a
    fixed set of values are left as they are; so are object keys' own rules."""
    if isinstance(schema, list):
        for item in schema:
            _text_without_nul(item)
        return
    if not isinstance(schema, dict):
        return
    constrained = {"pattern", "format", "enum", "const"} & schema.keys()
    if schema.get("type") == "string" and not constrained:
        schema["pattern"] = _NO_NUL
    if schema.get("type") == "object" and schema.get("additionalProperties", True) is not False:
        schema.setdefault("propertyNames", {"pattern": _NO_NUL})
    for key, value in schema.items():
        if key != "propertyNames":
            _text_without_nul(value)


def _drop_null(schema: object) -> None:
    """An optional parameter is one that is left out: HTTP has no null query or header value,
    yet FastAPI declares ``X | None`` as ``anyOf: [X, null]`` and a client then sends "null"."""
    if not isinstance(schema, dict) or not isinstance(schema.get("anyOf"), list):
        return
    alternatives = [choice for choice in schema["anyOf"] if choice != {"type": "null"}]
    if len(alternatives) == len(schema["anyOf"]):
        return
    del schema["anyOf"]
    if len(alternatives) == 1 and isinstance(alternatives[0], dict):
        schema.update({**alternatives[0], **schema})
    else:
        schema["anyOf"] = alternatives


def _is_fastapi_validation_error(answer: object) -> bool:
    return isinstance(answer, dict) and "#/components/schemas/HTTPValidationError" in str(answer)
