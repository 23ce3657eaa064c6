"""Building blocks shared by every leaddb table: metadata, ids, mixins, schema bases.

Conventions the entity modules follow (and the unit tests check):

* ``metadata`` (``SQLModel.metadata``) carries a naming convention, so every index and
  constraint has a deterministic name (``pk_leads``, ``fk_leads_owner_id_users``,
  ``ck_leads_score_range``, ``ix_leads_organization_id_owner_id``).
* Every table but ``organizations`` is tenant-scoped: :class:`TenantMixin` adds
  ``organization_id`` (FK to ``organizations.id``, ON DELETE CASCADE) and ``id``, and
  :func:`tenant_table_args` makes ``(organization_id, id)`` the primary key. References between
  tenant tables are composite foreign keys built by :func:`tenant_fk`.
* Ids are UUIDv7 (:func:`new_id`), time-ordered so inserts stay at the right edge of the index.
* Field helpers and the shared validated types are in :mod:`leaddb.models.fields`.
* Each table class names its entity for the audit trail and cache keys
  (``__entity_name__: ClassVar[str] = "lead"``); :func:`is_tenant_scoped`,
  :func:`is_soft_deletable` and :func:`is_versioned` read the other per-table facts from the
  columns (``organization_id``, ``deleted_at``, ``version``).

Database-filled fields. ``created_at``, ``updated_at``, ``version`` (and ``enrolled_at``,
``assigned_at``) are NOT NULL columns the database fills (``server_default``), typed
non-optional on the table classes so ``lead.created_at`` is a ``datetime``. Their Python default
is ``None``: the repositories build instances only from rows the database returns (``INSERT ...
RETURNING``), and an ORM flush omits ``None`` values so the server default applies. Do not read
these attributes from an instance you constructed yourself before it has been written.
"""

import types
import typing
import uuid
from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Final, Literal, TypeVar

import sqlalchemy as sa
from pydantic import BeforeValidator, create_model
from sqlalchemy.orm import declared_attr
from sqlalchemy.schema import SchemaItem
from sqlmodel import Field, Relationship, SQLModel

# SQLModel types model_config as its private SQLModelConfig (pydantic's ConfigDict plus its own
# keys), and mypy --strict refuses a plain ConfigDict there; no cost involved.
# tests/unit/test_library_internals.py fails if an upgrade moves or changes it.
from sqlmodel._compat import SQLModelConfig
from uuid_utils.compat import uuid7

from leaddb.models.fields import SENSITIVE_INFO_KEY, server_timestamp_field, timestamp_field

__all__ = [
    "NAMING_CONVENTION",
    "TENANT_COLUMN",
    "CreateSchema",
    "CreatedAtMixin",
    "CreatedAtRead",
    "EntityModel",
    "OnDelete",
    "ReadSchema",
    "SoftDeleteMixin",
    "SoftDeleteRead",
    "TenantMixin",
    "TenantRead",
    "TimestampsMixin",
    "TimestampsRead",
    "UpdateSchema",
    "VersionMixin",
    "VersionRead",
    "as_read",
    "fk_index",
    "is_secret",
    "is_soft_deletable",
    "is_tenant_scoped",
    "is_versioned",
    "metadata",
    "navigation",
    "new_id",
    "patch_of",
    "table_of",
    "tenant_fk",
    "tenant_table_args",
]

TENANT_COLUMN: Final = "organization_id"


# --- metadata and naming convention -------------------------------------------------------------


def _fk_columns(constraint: sa.Constraint, table: sa.Table) -> str:
    """Columns of a foreign key for its name, without the tenant column when others follow."""
    if not isinstance(constraint, sa.ForeignKeyConstraint):
        raise TypeError(f"fk_columns names foreign keys, not {constraint!r}")
    names = [column.name for column in constraint.columns]
    if len(names) > 1 and names[0] == TENANT_COLUMN:
        names = names[1:]
    return "_".join(names)


NAMING_CONVENTION: Final[Mapping[str, str | Callable[[sa.Constraint, sa.Table], str]]] = {
    "fk_columns": _fk_columns,
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(fk_columns)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata: Final = SQLModel.metadata
"""The metadata every leaddb table is declared on (SQLModel's), with the naming convention."""
metadata.naming_convention = NAMING_CONVENTION


def new_id() -> uuid.UUID:
    """A fresh UUIDv7 (time-ordered), the default of every ``id`` column."""
    return uuid7()


# --- mixins of the table classes ---------------------------------------------------------------


class EntityModel(SQLModel):
    """Base of every table class. ``__entity_name__`` names the entity in the audit trail
    (``activity_logs.entity_type``), in cache keys and in errors; bind repository type
    variables to this class to read it typed."""

    __entity_name__: ClassVar[str]

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        # For the ORM session beside the repositories (leaddb.uow.orm): server-filled columns
        # come back by RETURNING (an expired attribute would need I/O, which AsyncSession
        # refuses), and ``version`` is the optimistic lock of every flushed UPDATE / DELETE.
        # Mapper settings only: no column or constraint changes, so migrations are unaffected.
        args: dict[str, Any] = {"eager_defaults": True}
        table = cls.__dict__.get("__table__")
        if table is not None and "version" in table.c:
            args["version_id_col"] = table.c.version
        return args


class TenantMixin(EntityModel):
    """``organization_id`` + ``id``; the table's primary key comes from
    :func:`tenant_table_args`. List this mixin last among the bases so the two columns come
    first in the table."""

    # Its foreign key to organizations is in tenant_table_args, which two tables leave out.
    organization_id: uuid.UUID
    id: uuid.UUID = Field(default_factory=new_id)


class CreatedAtMixin(SQLModel):
    """``created_at``, stamped by the database (append-only rows carry only this)."""

    created_at: datetime = server_timestamp_field()


class TimestampsMixin(CreatedAtMixin):
    """``created_at`` and ``updated_at``; every SQLAlchemy UPDATE refreshes ``updated_at``."""

    updated_at: datetime = server_timestamp_field(on_update=True)


class VersionMixin(SQLModel):
    """Optimistic-locking counter: starts at 1 in the database and every SQLAlchemy UPDATE that
    does not set it explicitly increments it. Repositories compare it in their WHERE clause."""

    version: int = Field(
        default=None,
        nullable=False,
        sa_column_kwargs={
            "server_default": sa.text("1"),
            "onupdate": sa.literal_column("version") + 1,
        },
    )


class SoftDeleteMixin(SQLModel):
    """Soft delete: a non-NULL ``deleted_at`` hides the row from default queries."""

    deleted_at: datetime | None = timestamp_field()


def navigation() -> Any:
    """A relationship to navigate by (``selectinload`` / ``joinedload`` in ``uow.session``).

    ``lazy="raise"``: AsyncSession cannot load on attribute access, so a relationship that was
    not loaded eagerly raises at once instead of failing with ``MissingGreenlet``.
    ``viewonly``: rows are linked through their key columns (``lead_id``, ``owner_id``), which the
    tenant checks of the flush see; the relationships never write, so the ``organization_id``
    shared by every composite foreign key has one writer. The join conditions come from the
    composite foreign keys ``(organization_id, x_id)`` (:func:`tenant_fk`).
    """
    return Relationship(sa_relationship_kwargs={"lazy": "raise", "viewonly": True})


def tenant_table_args(*items: SchemaItem, organization_fk: bool = True) -> tuple[SchemaItem, ...]:
    """``__table_args__`` of a tenant table: primary key ``(organization_id, id)`` first, then
    ``organization_id``'s foreign key to organizations (ON DELETE CASCADE) unless
    ``organization_fk`` is false."""
    keys: list[SchemaItem] = [sa.PrimaryKeyConstraint(TENANT_COLUMN, "id")]
    if organization_fk:
        keys.append(
            sa.ForeignKeyConstraint([TENANT_COLUMN], ["organizations.id"], ondelete="CASCADE")
        )
    return (*keys, *items)


OnDelete = Literal["cascade", "set_null", "restrict"]


def tenant_fk(column: str, target_table: str, *, on_delete: OnDelete) -> sa.ForeignKeyConstraint:
    """Composite FK ``(organization_id, column) -> target_table(organization_id, id)``.

    ``set_null`` renders PostgreSQL 15's ``ON DELETE SET NULL (column)``, which clears only the
    reference and keeps ``organization_id``, so the column must be nullable.
    """
    ondelete = {
        "cascade": "CASCADE",
        "restrict": "RESTRICT",
        "set_null": f"SET NULL ({column})",
    }[on_delete]
    return sa.ForeignKeyConstraint(
        [TENANT_COLUMN, column],
        [f"{target_table}.{TENANT_COLUMN}", f"{target_table}.id"],
        ondelete=ondelete,
    )


def fk_index(column: str, *more: str) -> sa.Index:
    """The index that serves a composite FK: ``(organization_id, column, *more)``."""
    return sa.Index(None, TENANT_COLUMN, column, *more)


# --- schema bases -------------------------------------------------------------------------------


class CreateSchema(SQLModel):
    """Base of ``XCreate``: unknown fields (and so ``organization_id``) are a ValidationError."""

    model_config = SQLModelConfig(extra="forbid")


class UpdateSchema(SQLModel):
    """Base of ``XUpdate``: every field optional, unknown fields are a ValidationError.

    Repositories apply ``model_dump(exclude_unset=True)``, so an explicit ``None`` clears a
    nullable column while an omitted field is left alone; an explicit ``None`` for a column
    that cannot be NULL is a ValidationError naming the field. Build one with :func:`patch_of`.
    """

    model_config = SQLModelConfig(extra="forbid")

    if TYPE_CHECKING:
        # The fields come from patch_of at run time. leaddb's mypy plugin
        # (leaddb.models.mypy_plugin) types them precisely; without it they read as Any.
        def __getattr__(self, name: str) -> Any: ...


_UpdateT = TypeVar("_UpdateT", bound=UpdateSchema)


def _admits_none(annotation: object) -> bool:
    """Whether ``annotation`` accepts ``None`` (``X | None``, ``Optional``, ``JsonValue``)."""
    if annotation is None or annotation is type(None) or annotation is Any:
        return True
    aliased = getattr(annotation, "__value__", None)  # a type alias (TypeAliasType)
    if aliased is not None:
        return _admits_none(aliased)
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _admits_none(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_admits_none(arg) for arg in typing.get_args(annotation))
    return False


def _refuse_null(value: object) -> object:
    if value is None:
        raise ValueError("cannot be null (the column is NOT NULL): omit the field to keep it")
    return value


# Runs before the field's own validation, so a null gets this message rather than the type's.
_NOT_NULL: Final = BeforeValidator(_refuse_null)


def patch_of(
    base: type[SQLModel], *, exclude: Collection[str] = ()
) -> Callable[[type[_UpdateT]], type[_UpdateT]]:
    """Class decorator making the Update schema of ``base``: each field of ``base`` but
    ``exclude``, with the same type, constraints and validators, defaulting to ``None``.

    A field that admits ``None`` in ``base`` (a nullable column) may be set to ``None`` to clear
    it; for any other field an explicit ``None`` is a ValidationError (pydantic does not
    validate the default, so an omitted field stays ``None`` and unset). Fields the decorated
    class declares itself (a ``password`` to hash) and its validators are kept; a validator of
    a field that comes from ``base`` needs ``check_fields=False``.

    The fields are declared once, in ``base``: for mypy, leaddb's plugin reads this decorator
    (see :mod:`leaddb.models.mypy_plugin`).
    """
    unknown = set(exclude) - set(base.model_fields)
    if unknown:
        raise TypeError(f"{base.__name__} has no fields {sorted(unknown)} to exclude")

    def build(cls: type[_UpdateT]) -> type[_UpdateT]:
        fields: dict[str, Any] = {}
        for name, info in base.model_fields.items():
            if name in exclude or name in cls.model_fields:
                continue
            # The type as pydantic resolved it plus its constraints and validators (SQLModel's
            # column settings ride along in the metadata and mean nothing outside a table).
            metadata = list(info.metadata)
            if not _admits_none(info.annotation):
                metadata.append(_NOT_NULL)
            annotation = Annotated[(info.annotation, *metadata)] if metadata else info.annotation
            fields[name] = (annotation, None)
        built: type[_UpdateT] = create_model(
            cls.__name__, __base__=cls, __module__=cls.__module__, __doc__=cls.__doc__, **fields
        )
        built.__qualname__ = cls.__qualname__
        return built

    return build


class ReadSchema(SQLModel):
    """Base of ``XRead``: built from table rows (``from_attributes``)."""

    model_config = SQLModelConfig(from_attributes=True)


_ReadT = TypeVar("_ReadT", bound=SQLModel)


def as_read(cls: type[_ReadT]) -> type[_ReadT]:
    """Class decorator for a Read mixin that inherits a table mixin: each of its fields as it
    is read back, required, without the table's default (``id``'s factory, the ``None`` that
    lets the database stamp ``created_at``); a nullable one defaults to ``None``. The field
    stays declared once, on the table mixin, and typed as there."""
    fields: dict[str, Any] = {}
    for name, info in cls.model_fields.items():
        annotation = (
            Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        )
        fields[name] = (annotation, None if _admits_none(info.annotation) else ...)
    built: type[_ReadT] = create_model(
        cls.__name__, __base__=cls, __module__=cls.__module__, __doc__=cls.__doc__, **fields
    )
    built.__qualname__ = cls.__qualname__
    return built


@as_read
class TenantRead(TenantMixin):
    """``id`` and ``organization_id`` of a tenant row, as read back."""


@as_read
class CreatedAtRead(CreatedAtMixin):
    """``created_at`` as read back."""


@as_read
class TimestampsRead(TimestampsMixin):
    """``created_at`` and ``updated_at`` as read back."""


@as_read
class VersionRead(VersionMixin):
    """``version`` as read back."""


@as_read
class SoftDeleteRead(SoftDeleteMixin):
    """``deleted_at`` as read back (None for a live row)."""


# --- per-table facts the generic repository reads -----------------------------------------------


def table_of(model: type[SQLModel]) -> sa.Table:
    """The ``Table`` of a table class (typed; SQLModel does not declare ``__table__``)."""
    table = sa.inspect(model).local_table
    if not isinstance(table, sa.Table):
        raise TypeError(f"{model.__name__} is not a table class")
    return table


def is_secret(column: sa.ColumnElement[object]) -> bool:
    """True for a column the models mark as holding a secret (see :data:`SENSITIVE_INFO_KEY`)."""
    info = getattr(column, "info", None)
    return bool(info and info.get(SENSITIVE_INFO_KEY))


def is_tenant_scoped(model: type[SQLModel]) -> bool:
    """True when rows belong to one organization (the table has ``organization_id``)."""
    return TENANT_COLUMN in table_of(model).c


def is_soft_deletable(model: type[SQLModel]) -> bool:
    """True when deleting sets ``deleted_at`` instead of removing the row."""
    return "deleted_at" in table_of(model).c


def is_versioned(model: type[SQLModel]) -> bool:
    """True when updates must present the current ``version`` (optimistic locking)."""
    return "version" in table_of(model).c
