"""A lean Redis client for the cache's few commands (MGET, EVALSHA, SET, pipelines of those).

Why not redis-py here: its per-command overhead (connection-pool checkout, command packing,
response callbacks) is 150-250 µs on these machines, more than the Redis round trip itself, so
a cache hit would cost about as much as reading PostgreSQL. This client keeps one connection per
``LeadDB``, lets any number of coroutines pipeline commands on it (replies arrive in order, so a
FIFO of futures matches them), parses replies with hiredis, and fails fast: a timeout or a lost
connection fails every command in flight and the next command reconnects. Errors are redis-py's
exception classes, so callers handle both clients alike. Sessions and everything else still use
redis-py.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import ssl
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


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

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
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
        self._scripts: dict[str, bytes] = {}

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
                try:
                    protocol = await asyncio.wait_for(self._connect(), self._timeout * 4)
                except (OSError, TimeoutError) as error:
                    raise RedisConnectionError(f"cannot connect to Redis: {error}") from error
                self._protocol = protocol
            return protocol

    async def _send(self, protocol: _Protocol, args: tuple[Any, ...]) -> Any:
        assert protocol.transport is not None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        protocol.waiting.append(future)
        protocol.transport.write(_encode(args))
        # A timer that fails the future, rather than asyncio.wait_for: that wraps every command
        # in a second future and callbacks, 5 µs more per command here.
        timer = loop.call_later(self._timeout, _expire, future)
        try:
            return await future
        except TimeoutError:
            # The reply may still come, out of step with the next command's: start afresh.
            protocol.transport.close()
            raise RedisTimeoutError(f"Redis did not answer within {self._timeout}s") from None
        finally:
            timer.cancel()

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

    async def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            with contextlib.suppress(Exception):
                protocol.transport.close()
