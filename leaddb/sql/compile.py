"""Compiling SQLAlchemy Core statements once and running them on asyncpg directly.

Every statement leaddb's repositories send is written with SQLAlchemy Core and comes through
here: reads with filters and keyset pages through ``compile_cached`` (their shape is found from
the statement), the repository's statements by key and its writes through ``compile_positional``
(built once per shape and kept by the repository, so a call never builds one). SQLAlchemy's
execution layer (greenlet bridge, result processing, ORM identity map) costs more than the query
itself for a primary-key lookup. leaddb compiles each statement shape once to PostgreSQL text with
``$n`` placeholders and sends it with asyncpg, whose per-connection prepared-statement cache makes
the second execution a bind-and-execute.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, literal
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.exc import ArgumentError, CompileError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.elements import BindParameter

from leaddb.errors import InvalidFilterError

_DIALECT = asyncpg_dialect(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class CompiledSQL:
    """Statement text and the order of its named parameters."""

    text: str
    names: tuple[str, ...]
    defaults: Mapping[str, Any]

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        """Positional arguments for asyncpg, from named parameters and the statement's literals."""
        defaults = self.defaults
        return [params[name] if name in params else defaults[name] for name in self.names]


def compile_sql(statement: ClauseElement) -> CompiledSQL:
    """Compile ``statement`` for asyncpg. Bind values written into it become its defaults."""
    compiled = statement.compile(dialect=_DIALECT, compile_kwargs={"render_postcompile": True})
    # positiontup is set by compilers of positional paramstyles such as numeric_dollar.
    names = tuple(getattr(compiled, "positiontup", None) or ())
    return CompiledSQL(text=str(compiled), names=names, defaults=dict(compiled.params))


_CACHE_LIMIT = 4096
_compiled_by_shape: dict[object, tuple[CompiledSQL, Any]] = {}


def compile_cached(statement: ClauseElement) -> tuple[CompiledSQL, list[Any]]:
    """Like ``_compile_cached``, with SQLAlchemy's refusals of a caller's values as
    InvalidFilterError."""
    try:
        return _compile_cached(statement)
    except (ArgumentError, CompileError, TypeError, ValueError) as error:
        raise InvalidFilterError(f"the filter cannot be turned into SQL: {error}") from None


def _compile_cached(statement: ClauseElement) -> tuple[CompiledSQL, list[Any]]:
    """Compile ``statement`` once per shape and bind this call's values.

    Two statements that differ only in their bound values (the filters of two ``list`` calls)
    share SQLAlchemy's cache key; compiling costs more than running a short query, so each shape
    is compiled once and later calls only pull their values out of the key.
    """
    # SQLAlchemy's private _generate_cache_key (what its own compiled cache uses; no public
    # API gives it): a 50-row page's statement compiled from its key costs 3.6 us here against
    # 170 us compiled afresh. tests/unit/test_library_internals.py fails if it changes.
    cache_key = statement._generate_cache_key()
    if cache_key is None:
        compiled = compile_sql(statement)
        return compiled, compiled.args({})
    entry = _compiled_by_shape.get(cache_key.key)
    if entry is None:
        # Compiling with the cache key lets later calls map their own values onto this text.
        compiled_statement = statement.compile(dialect=_DIALECT, cache_key=cache_key)
        text = str(compiled_statement)
        if "POSTCOMPILE" in text:
            # A shape whose SQL depends on its values (an expanding IN): compile every time.
            compiled = compile_sql(statement)
            return compiled, compiled.args({})
        names = tuple(getattr(compiled_statement, "positiontup", None) or ())
        entry = (CompiledSQL(text=text, names=names, defaults={}), compiled_statement)
        if len(_compiled_by_shape) >= _CACHE_LIMIT:
            _compiled_by_shape.clear()
        _compiled_by_shape[cache_key.key] = entry
    compiled_sql, compiled_statement = entry
    params: dict[str, Any] = dict(
        compiled_statement.construct_params(extracted_parameters=cache_key.bindparams) or {}
    )
    return compiled_sql, [params[name] for name in compiled_sql.names]


def param(name: str, type_: Any = None) -> BindParameter[Any]:
    """A parameter of a statement built once per shape, its value given at each call.

    The value ``None`` only makes it optional at compile time (``render_postcompile`` asks a
    value of every required parameter); callers always pass their own.
    """
    return bindparam(name, None, type_=type_)


def inline(value: str | int) -> BindParameter[Any]:
    """A constant written into the statement's text (a JSON key, an entity name), not sent as
    a parameter: ``literal_execute`` literals are rendered when the statement is compiled."""
    return literal(value, literal_execute=True)


@dataclass(frozen=True, slots=True)
class Positional:
    """Statement text compiled once, and where each of its ``$n`` takes its value from among
    the arguments its caller passes, in the caller's own order."""

    text: str
    order: tuple[int, ...] | None
    """Index into the caller's arguments of each ``$n``; None when they are the same order."""

    def args(self, values: Sequence[Any]) -> Sequence[Any]:
        order = self.order
        return values if order is None else [values[index] for index in order]


def compile_positional(statement: ClauseElement, parameters: Sequence[str]) -> Positional:
    """Compile ``statement`` once for asyncpg, its parameters taken in the order ``parameters``
    names them (the order the caller passes its values in).

    Every parameter must be named, and every name used: a constant bound into the statement
    by mistake would otherwise become a parameter no caller passes.
    """
    compiled = compile_sql(statement)
    position = {name: index for index, name in enumerate(parameters)}
    unknown = [name for name in compiled.names if name not in position]
    unused = [name for name in parameters if name not in compiled.names]
    if unknown or unused:
        raise ValueError(f"statement parameters {compiled.names} do not match {parameters}")
    order = tuple(position[name] for name in compiled.names)
    identity = order == tuple(range(len(parameters)))
    return Positional(text=compiled.text, order=None if identity else order)
