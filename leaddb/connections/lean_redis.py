"""A lean Redis client for the few commands the cache and the sessions send (MGET, EVALSHA, SET,
ZSCAN, pipelines of those).

Why not redis-py here: its per-command overhead (connection-pool checkout, command packing,
response callbacks) is 150-250 µs on these machines, more than the Redis round trip itself, so
a cache hit would cost about as much as reading PostgreSQL. This client keeps one connection (a
``LeadDB`` has one for the cache and one for the sessions), lets any number of coroutines
pipeline commands on it (replies arrive in order, so a FIFO of futures matches them), parses
replies with hiredis, and fails fast.

Failure, command by command: a command whose reply does not come within the timeout fails
alone. Its reply, when it comes, is read and dropped in its turn (replies arrive in order), so
the commands sent after it keep their own deadlines and are answered normally; one slow reply
(a large value, a slow script) no longer fails every command in flight. Only when the socket
has stayed silent for ``STALLED_AFTER`` timeouts while commands waited is the connection taken
for dead and closed (failing what is in flight). A lost connection fails every command in
flight; the next command dials again, at once the first time and after a growing wait
(``leaddb.connections.retry.REDIS_REDIAL``) while dialing keeps failing, so a dead Redis is not
dialed on every call. Errors are redis-py's exception classes, so callers handle both clients
alike (leaddb.connections.redis_transport).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import ssl
import time
from collections.abc import Generator, Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from leaddb.connections.retry import REDIS_REDIAL

STALLED_AFTER = 4
"""Timeouts of silence, with commands waiting, after which the connection is taken for dead."""


def _encode(args: tuple[Any, ...]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        else:
            data = str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None
        self.heard_at = time.monotonic()
        """When the socket last brought data, or when commands began waiting on a quiet one."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.heard_at = time.monotonic()
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if not self.waiting:
                continue
            future = self.waiting.popleft()
            if future.done():
                continue
            if isinstance(reply, hiredis.ReplyError):
                message = str(reply)
                error = NoScriptError if message.startswith("NOSCRIPT") else ResponseError
                future.set_exception(error(message))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or RedisConnectionError("connection closed by Redis")
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(RedisConnectionError(f"Redis connection lost: {self.lost}"))


class PendingReply:
    """The reply of a command ``LeanRedis.send_now`` sent: awaited (once), or abandoned."""

    __slots__ = ("_client", "_future", "_protocol", "_timer")

    def __init__(
        self,
        client: LeanRedis,
        protocol: _Protocol,
        future: asyncio.Future[Any],
        timer: asyncio.TimerHandle,
    ) -> None:
        self._client = client
        self._protocol = protocol
        self._future = future
        self._timer = timer

    def __await__(self) -> Generator[Any, None, Any]:
        return self._client._reply(self._protocol, self._future, self._timer).__await__()

    def abandon(self) -> None:
        """Never to be awaited: its reply is dropped in its turn, and no timeout is left set."""
        self._timer.cancel()
        self._future.cancel()


class LeanRedis:
    """Pipelined commands on one connection, from a ``redis://``, ``rediss://`` or ``unix://``
    URL (with password and database number as redis-py reads them)."""

    def __init__(self, url: str, *, timeout: float) -> None:
        parsed = urlparse(url)
        query = parse_qs(parsed.query)
        self._unix_path = parsed.path if parsed.scheme == "unix" else None
        self._host = parsed.hostname or "localhost"
        self._port = parsed.port or 6379
        self._ssl = ssl.create_default_context() if parsed.scheme == "rediss" else None
        self._username = unquote(parsed.username) if parsed.username else None
        self._password = unquote(parsed.password) if parsed.password else None
        if "password" in query:
            self._password = query["password"][0]
        database = query.get("db", [None])[0]
        if database is None and parsed.scheme != "unix" and parsed.path.strip("/"):
            database = parsed.path.strip("/")
        self._database = int(database) if database else 0
        self._timeout = timeout
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None
        self._dial_failures = 0
        self._dial_after = 0.0

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        if self._unix_path is not None:
            _, protocol = await loop.create_unix_connection(_Protocol, self._unix_path)
        else:
            _, protocol = await loop.create_connection(
                _Protocol, self._host, self._port, ssl=self._ssl
            )
        if self._password is not None:
            credentials = (self._username, self._password) if self._username else (self._password,)
            await self._send(protocol, ("AUTH", *credentials))
        if self._database:
            await self._send(protocol, ("SELECT", self._database))
        return protocol

    async def _ready(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and protocol.lost is None:
            return protocol
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            protocol = self._protocol
            if protocol is None or protocol.lost is not None:
                if time.monotonic() < self._dial_after:
                    raise RedisConnectionError(
                        "cannot connect to Redis: the last attempts failed; next one in "
                        f"{self._dial_after - time.monotonic():.2f}s"
                    )
                try:
                    protocol = await asyncio.wait_for(self._connect(), self._timeout * 4)
                except (OSError, TimeoutError) as error:
                    self._dial_failures += 1
                    self._dial_after = time.monotonic() + REDIS_REDIAL.delay(self._dial_failures)
                    raise RedisConnectionError(f"cannot connect to Redis: {error}") from error
                self._dial_failures = 0
                self._dial_after = 0.0
                self._protocol = protocol
            return protocol

    def _dispatch(
        self, protocol: _Protocol, args: tuple[Any, ...]
    ) -> tuple[asyncio.Future[Any], asyncio.TimerHandle]:
        assert protocol.transport is not None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not protocol.waiting:
            # A quiet connection owes nothing: its silence is counted from now.
            protocol.heard_at = time.monotonic()
        protocol.waiting.append(future)
        protocol.transport.write(_encode(args))
        # A timer that fails the future, rather than asyncio.wait_for: that wraps every command
        # in a second future and callbacks, 5 µs more per command here.
        return future, loop.call_later(self._timeout, _expire, future)

    async def _reply(
        self, protocol: _Protocol, future: asyncio.Future[Any], timer: asyncio.TimerHandle
    ) -> Any:
        try:
            return await future
        except TimeoutError:
            # The future stays in the queue, done: its reply, when it comes, is dropped in its
            # turn and the replies after it still meet their own commands. A socket silent for
            # long, though, is taken for dead (no reply would ever come).
            if time.monotonic() - protocol.heard_at >= self._timeout * STALLED_AFTER:
                assert protocol.transport is not None
                protocol.transport.close()
            raise RedisTimeoutError(f"Redis did not answer within {self._timeout}s") from None
        finally:
            timer.cancel()

    async def _send(self, protocol: _Protocol, args: tuple[Any, ...]) -> Any:
        future, timer = self._dispatch(protocol, args)
        return await self._reply(protocol, future, timer)

    def send_now(self, *args: Any) -> PendingReply | None:
        """Send one command at once, without awaiting anything, when connected (None when not:
        then ``call``); its reply is awaited later, so the caller can do other I/O meanwhile."""
        protocol = self._protocol
        if protocol is None or protocol.lost is not None:
            return None
        future, timer = self._dispatch(protocol, args)
        return PendingReply(self, protocol, future, timer)

    async def call(self, *args: Any) -> Any:
        """Send one command and return its reply (bytes, int, list, None)."""
        protocol = self._protocol
        if protocol is None or protocol.lost is not None:
            # Only then one more coroutine: a cache hit awaits as few as it can.
            protocol = await self._ready()
        return await self._send(protocol, args)

    async def evalsha(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run a Lua script by its SHA1, loading it on the first NOSCRIPT."""
        sha = hashlib.sha1(script.encode()).hexdigest()  # noqa: S324 (Redis names scripts so)
        try:
            return await self.call("EVALSHA", sha, len(keys), *keys, *args)
        except NoScriptError:
            await self.call("SCRIPT", "LOAD", script)
            return await self.call("EVALSHA", sha, len(keys), *keys, *args)

    async def evalsha_many(
        self, script: str, calls: Sequence[tuple[list[str], list[Any]]]
    ) -> list[Any]:
        """Run a script once per (keys, args); sent together, so pipelined on the connection."""
        return list(
            await asyncio.gather(*(self.evalsha(script, keys, args) for keys, args in calls))
        )

    async def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            with contextlib.suppress(Exception):
                protocol.transport.close()
