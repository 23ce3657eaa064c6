"""Compiling SQLAlchemy Core statements once and running them on asyncpg directly.

SQLAlchemy builds every statement (so no caller string is ever spliced into SQL), but its
execution layer (greenlet bridge, result processing, ORM identity map) costs more than the query
itself for a primary-key lookup. leaddb compiles each statement shape once to PostgreSQL text with
``$n`` placeholders and sends it with asyncpg, whose per-connection prepared-statement cache makes
the second execution a bind-and-execute.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.sql import ClauseElement

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
