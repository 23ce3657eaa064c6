"""Field helpers and shared validated types: each constraint of a column is declared once.

A field's SQLAlchemy settings (``sa_type``, ``sa_column_kwargs``) are given in exactly one
``sqlmodel.Field`` per field: either in the ``Annotated`` alias (text lengths, money, required
enums) or at the field site (defaulted enums, JSONB, server defaults), never both, because SQLModel
reads only the first ``Field`` it finds. Validation-only aliases use ``pydantic.Field`` or
``annotated_types``. The Base and the Update schema of an entity use the same aliases, so the
Update carries exactly the Base's constraints (a unit test checks it).
"""

import math
import re
import zoneinfo
from decimal import Decimal
from enum import Enum, StrEnum
from functools import cache
from typing import Annotated, Any, Final, TypeVar

import sqlalchemy as sa
from annotated_types import Interval
from pydantic import AfterValidator, EmailStr, HttpUrl, JsonValue, StringConstraints, TypeAdapter
from pydantic import Field as PydanticField
from pydantic_core import PydanticUndefined, PydanticUndefinedType
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

__all__ = [
    "BODY_MAX_LENGTH",
    "MAX_TAGS",
    "MONEY_DIGITS",
    "MONEY_PLACES",
    "SCORE_MAX",
    "SCORE_MIN",
    "SENSITIVE_INFO_KEY",
    "TAG_MAX_LENGTH",
    "Email",
    "HttpUrlStr",
    "Json",
    "JsonObject",
    "Money",
    "Name",
    "OptionalEmail",
    "OptionalHttpUrl",
    "OptionalMoney",
    "OptionalName",
    "Score",
    "Tags",
    "Timezone",
    "char_length_check",
    "db_default",
    "enum_field",
    "enum_type",
    "json_field",
    "long_text_field",
    "non_finite_path",
    "secret_field",
    "server_timestamp_field",
    "text_field",
    "timestamp_field",
]


SENSITIVE_INFO_KEY: Final = "leaddb_secret"
"""Key of ``Column.info`` marking a column that holds a secret (a password hash, encrypted
credentials): never in a Read schema, a repr, a log line, the cache, a cursor, a filter or an
ordering (:func:`leaddb.models.base.is_secret`)."""


def secret_field(max_length: int | None = None) -> Any:
    """A nullable column holding a secret, out of ``repr`` and marked
    :data:`SENSITIVE_INFO_KEY`: ``VARCHAR(max_length)``, or ``BYTEA`` without a length."""
    return Field(
        default=None,
        max_length=max_length,
        repr=False,
        sa_type=sa.LargeBinary if max_length is None else sa.String(max_length),
        sa_column_kwargs={"info": {SENSITIVE_INFO_KEY: True}},
    )


def text_field(
    max_length: int,
    *,
    min_length: int | None = None,
    pattern: str | None = None,
    default: Any = PydanticUndefined,
    repr: bool = True,
) -> Any:
    """A bounded text field: ``max_length`` in the schema and ``VARCHAR(max_length)`` in the DB."""
    return Field(
        default,
        min_length=min_length,
        max_length=max_length,
        repr=repr,
        sa_type=sa.String(max_length),
        schema_extra={"pattern": pattern} if pattern is not None else None,
    )


def long_text_field(max_length: int, *, min_length: int | None = None) -> Any:
    """A long body: ``TEXT`` in the DB; pair it with :func:`char_length_check` on the table."""
    return Field(min_length=min_length, max_length=max_length, sa_type=sa.Text)


def char_length_check(column: str, max_length: int) -> sa.CheckConstraint:
    """The database side of :func:`long_text_field`: ``ck_<table>_<column>_length``."""
    return sa.CheckConstraint(f"char_length({column}) <= {max_length}", name=f"{column}_length")


def _enum_values(enum_cls: type[Enum]) -> list[str]:
    return [str(member.value) for member in enum_cls]


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@cache
def enum_type(enum_cls: type[StrEnum]) -> sa.Enum:
    """The one PostgreSQL enum type of a ``StrEnum``: named ``snake_case(ClassName)``, holding
    the members' lowercase values (not their names)."""
    return sa.Enum(
        enum_cls,
        name=_snake_case(enum_cls.__name__),
        values_callable=_enum_values,
        validate_strings=True,
    )


def enum_field(
    enum_cls: type[StrEnum], *, default: StrEnum | PydanticUndefinedType | None = PydanticUndefined
) -> Any:
    """An enum column of :func:`enum_type`.

    Without ``default`` the field is required and NOT NULL: use it inside ``Annotated`` (so
    mypy sees a required field), e.g. ``Annotated[Channel, enum_field(Channel)]``. A member
    ``default`` is also the server default; ``None`` makes the column nullable.
    """
    if isinstance(default, StrEnum):
        return Field(
            default=default,
            sa_type=enum_type(enum_cls),
            sa_column_kwargs={"server_default": default.value},
        )
    if default is None:
        return Field(default=None, sa_type=enum_type(enum_cls))
    return Field(sa_type=enum_type(enum_cls))


def db_default(value: bool | int) -> Any:
    """A NOT NULL boolean or integer column whose default also lives in the database."""
    server_default: sa.ColumnElement[bool] | sa.TextClause
    if isinstance(value, bool):
        server_default = sa.true() if value else sa.false()
    else:
        server_default = sa.text(str(value))
    return Field(default=value, sa_column_kwargs={"server_default": server_default})


def json_field() -> Any:
    """A NOT NULL ``JSONB`` object column defaulting to ``{}`` on both sides."""
    return Field(
        default_factory=dict,
        sa_type=JSONB,
        sa_column_kwargs={"server_default": sa.text("'{}'::jsonb")},
    )


def timestamp_field() -> Any:
    """A nullable ``timestamptz`` column."""
    return Field(default=None, sa_type=sa.DateTime(timezone=True))


def server_timestamp_field(*, on_update: bool = False) -> Any:
    """A NOT NULL ``timestamptz`` the database stamps with ``now()``.

    Typed non-optional with a Python default of ``None``: see :mod:`leaddb.models.base`.
    ``on_update`` also sets it on every SQLAlchemy UPDATE that does not set it explicitly.
    """
    column_kwargs: dict[str, Any] = {"server_default": sa.func.now()}
    if on_update:
        column_kwargs["onupdate"] = sa.func.now()
    return Field(
        default=None,
        nullable=False,
        sa_type=sa.DateTime(timezone=True),
        sa_column_kwargs=column_kwargs,
    )


# --- shared validated types (used by the Base and the Update schemas alike) ---------------------

SCORE_MIN: Final = 0
SCORE_MAX: Final = 100
MONEY_DIGITS: Final = 14
MONEY_PLACES: Final = 2
BODY_MAX_LENGTH: Final = 100_000
TAG_MAX_LENGTH: Final = 64
"""The longest tag of a lead, in characters (its column is ``varchar(64)[]``); a scoring rule on
the tags takes no longer one."""
MAX_TAGS: Final = 50


_JsonT = TypeVar("_JsonT")


def non_finite_path(value: object, path: str = "") -> str | None:
    """Where ``value`` holds NaN or an infinity (``"a.b[2]"``; ``""`` for the value itself), or
    None when it holds neither. JSON has no such numbers: orjson would write them as ``null``
    and PostgreSQL refuses the ``NaN`` that the standard library writes."""
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    if isinstance(value, dict):
        for key, item in value.items():
            found = non_finite_path(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = non_finite_path(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _finite_json(value: _JsonT) -> _JsonT:
    path = non_finite_path(value)
    if path is not None:
        where = f" at {path}" if path else ""
        raise ValueError(f"JSON numbers must be finite: NaN or Infinity{where}")
    return value


Json = Annotated[JsonValue, AfterValidator(_finite_json)]
"""Any JSON value (``null`` included) without NaN or Infinity, as stored in a ``JSONB`` column."""

JsonObject = Annotated[dict[str, JsonValue], AfterValidator(_finite_json)]
"""A JSON object as stored in a ``JSONB`` column: no NaN or Infinity anywhere inside."""

Name = Annotated[str, text_field(200, min_length=1)]
OptionalName = Annotated[str | None, text_field(200)]

Email = Annotated[EmailStr, text_field(254)]
OptionalEmail = Annotated[EmailStr | None, text_field(254)]

Score = Annotated[int, Interval(ge=SCORE_MIN, le=SCORE_MAX)]
"""A lead score, 0..100 (``ck_leads_score_range`` in the database)."""

Tag = Annotated[str, StringConstraints(min_length=1, max_length=TAG_MAX_LENGTH)]
Tags = Annotated[list[Tag], PydanticField(max_length=MAX_TAGS)]
"""A lead's tags: up to :data:`MAX_TAGS`, each of 1 to :data:`TAG_MAX_LENGTH` characters."""

Money = Annotated[
    Decimal, PydanticField(ge=0, max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES)
]
"""A non-negative amount that fits ``numeric(14, 2)``."""
OptionalMoney = Annotated[Money | None, Field(sa_type=sa.Numeric(MONEY_DIGITS, MONEY_PLACES))]

_http_url: Final = TypeAdapter(HttpUrl)


def _check_http_url(value: str) -> str:
    """Accept absolute http(s) URLs; keep the caller's spelling (no normalisation)."""
    _http_url.validate_python(value)
    return value


HttpUrlStr = Annotated[str, AfterValidator(_check_http_url)]
OptionalHttpUrl = Annotated[HttpUrlStr | None, text_field(2048)]


def _check_timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA time zone: {value!r}") from exc
    return value


Timezone = Annotated[str, AfterValidator(_check_timezone), text_field(64, min_length=1)]
"""An IANA time zone name such as ``Europe/Paris``, checked against the zoneinfo database."""
