"""What ``uow.connection()`` hands out for raw SQL: the transaction's connection, for as long as
its unit of work lasts and not a moment longer.

A reference kept after the unit of work ended would otherwise reach whoever holds that pooled
connection next: it read another tenant's rows inside that tenant's transaction, and wrote a row
that the other tenant's commit then committed. So every call goes through a check of the unit of
work, and ends in UnitOfWorkClosedError once it has ended. Calls that change how the connection
itself behaves for later users (listeners, type codecs, closing it) are not passed on at all:
they would outlive the unit of work in the pool.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from leaddb.errors import UnitOfWorkClosedError

if TYPE_CHECKING:
    import asyncpg
    from asyncpg import Record

    Connection = asyncpg.Connection[Record]

# Methods that change the connection beyond one transaction (asyncpg's own names).
_REFUSED = frozenset(
    {
        "add_listener",
        "remove_listener",
        "add_log_listener",
        "remove_log_listener",
        "add_termination_listener",
        "remove_termination_listener",
        "set_type_codec",
        "reset_type_codec",
        "set_builtin_type_codec",
        "reload_schema_state",
        "reset",
        "close",
        "terminate",
    }
)

# What tells about the connection and reaches nothing of anyone's: usable after the end too.
_INSPECTION = frozenset({"is_closed", "is_in_transaction", "get_server_pid", "get_server_version"})


class RawConnection:
    """A stand-in for the transaction's asyncpg connection that works while ``is_open()``."""

    __slots__ = ("_connection", "_is_open", "_loggers")

    def __init__(self, connection: Connection, is_open: Callable[[], bool]) -> None:
        self._connection = connection
        self._is_open = is_open
        self._loggers: list[Callable[..., Any]] = []

    def add_query_logger(self, callback: Callable[..., Any]) -> None:
        """Log this unit of work's queries; the logger goes when the unit of work ends."""
        self._check("add_query_logger")
        self._connection.add_query_logger(callback)
        self._loggers.append(callback)

    def remove_query_logger(self, callback: Callable[..., Any]) -> None:
        self._check("remove_query_logger")
        self._connection.remove_query_logger(callback)
        self._loggers.remove(callback)

    def detach(self) -> None:
        """The unit of work ended: nothing added through this stays on the connection."""
        for callback in self._loggers:
            self._connection.remove_query_logger(callback)
        self._loggers.clear()

    def _check(self, name: str) -> None:
        if not self._is_open():
            raise UnitOfWorkClosedError(
                f"cannot use {name}() of a raw connection after its unit of work has ended"
            )

    def __getattr__(self, name: str) -> Any:
        if name in _REFUSED:
            raise UnitOfWorkClosedError(
                f"{name}() would outlive the unit of work on a pooled connection; "
                "open a connection of your own for it"
            )
        value = getattr(self._connection, name)
        if name in _INSPECTION:
            return value
        self._check(name)
        if not callable(value):
            return value
        check = self._check

        @functools.wraps(value)
        def checked(*args: Any, **kwargs: Any) -> Any:
            check(name)
            return value(*args, **kwargs)

        return checked

    def __repr__(self) -> str:
        state = "open" if self._is_open() else "ended"
        return f"<leaddb RawConnection ({state} unit of work)>"
