"""``SessionStore``: user sessions in Redis (see the package docstring for the design)."""

from __future__ import annotations

import builtins
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Final

import redis.asyncio as aioredis
from pydantic import JsonValue, ValidationError
from redis.asyncio.cluster import RedisCluster

from leaddb import telemetry
from leaddb.connections.driver_errors import redis_errors
from leaddb.connections.redis_transport import RedisPyTransport, RedisTransport
from leaddb.errors import ConnectionFailedError, InvalidValueError, TenantViolationError
from leaddb.sessions import scripts
from leaddb.sessions.models import Session, SessionMetadata, StoredRecord, from_ms
from leaddb.sessions.tokens import (
    is_session_id,
    new_session_id,
    new_token,
    organization_index_key,
    parse_token,
    session_key,
    session_key_prefix,
    token_digest,
    user_index_key,
)
from leaddb.settings import LeadDBSettings

logger = logging.getLogger("leaddb.sessions")

MAX_RECORD_BYTES: Final = 64 * 1024
"""The most JSON a session's ``data`` and ``metadata`` may take: a session is not a blob store."""

# Nodes of a Redis Cluster keep their own clocks: an organization index entry outlives the
# sessions it points at by this much, so skew never hides a live session from
# revoke_organization.
_CLOCK_SKEW_MS: Final = 5 * 60 * 1000
_ORGANIZATION_BATCH: Final = 256


class SessionStore:
    """User sessions in Redis: opaque tokens, sliding and absolute expiry, revocation.

    One store per Redis client; it is what ``LeadDB.sessions`` exposes. Lifetimes and the
    per-user cap come from ``settings`` (``session_idle_ttl_seconds``,
    ``session_absolute_ttl_seconds``, ``session_max_per_user``) when the store is built; a
    session keeps the lifetimes it was created with.

    Malformed tokens are answered without Redis (None / False). A Redis failure raises
    ``ConnectionFailedError``, never a redis-py exception, and never reads as "no session".
    """

    def __init__(
        self,
        redis: RedisTransport | aioredis.Redis,
        settings: LeadDBSettings,
        *,
        is_active_member: Callable[[uuid.UUID, uuid.UUID], Awaitable[bool]] | None = None,
        repair: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        if isinstance(redis, RedisCluster):
            # Its reply callbacks are shared with every node it builds: the transport can make
            # them raw only on a client of its own (leaddb.connections.redis_transport).
            raise TypeError(
                "SessionStore takes a RedisCluster only inside a transport that owns it: "
                "RedisPyTransport(RedisCluster(...), owned=True), or LeadDB's own db.sessions"
            )
        # A redis-py client is used through the same transport as the cache's (raw replies).
        self._redis: RedisTransport = (
            RedisPyTransport(redis) if isinstance(redis, aioredis.Redis) else redis
        )
        # From LeadDB: whether a user is an active member of an active organization (asked of
        # PostgreSQL before a session starts), and the application of the durable list of
        # revocations (leaddb.pending), which runs before a session is served again after
        # Redis failed here: a revocation that Redis missed is never outlived.
        self._is_active_member = is_active_member
        self._repair = repair
        self._outage_seen = False
        self._idle_ms = settings.session_idle_ttl_seconds * 1000
        self._absolute_ms = settings.session_absolute_ttl_seconds * 1000
        self._cap = settings.session_max_per_user
        # Each runs EVALSHA, loading the script on the first NOSCRIPT reply.
        self._create = _Script(self._redis, scripts.CREATE)
        self._slide = _Script(self._redis, scripts.SLIDE)
        self._rotate = _Script(self._redis, scripts.ROTATE)
        self._revoke = _Script(self._redis, scripts.REVOKE)
        self._revoke_user = _Script(self._redis, scripts.REVOKE_USER)
        self._revoke_session_id = _Script(self._redis, scripts.REVOKE_SESSION_ID)
        self._list = _Script(self._redis, scripts.LIST)
        self._register_user = _Script(self._redis, scripts.REGISTER_USER)

    async def close(self) -> None:
        """Close the store's Redis transport."""
        await self._redis.close()

    async def create(
        self,
        *,
        user_id: uuid.UUID,
        organization_id: uuid.UUID,
        data: Mapping[str, JsonValue] | None = None,
        ttl: timedelta | float | None = None,
        metadata: SessionMetadata | None = None,
    ) -> str:
        """Start a session and return its token (URL-safe, 256 random bits; shown only once).

        ``ttl`` replaces the idle lifetime for this session (a timedelta or seconds); the
        absolute lifetime still applies. When the user already has ``session_max_per_user``
        live sessions, the oldest are revoked first. Raises pydantic's ``ValidationError`` for
        data that is not JSON (NaN and Infinity included), InvalidValueError for data larger
        than ``MAX_RECORD_BYTES`` or a ttl that is not positive, and TenantViolationError for a
        user who is not an active member of that active organization.
        """
        user = _as_uuid(user_id)
        organization = _as_uuid(organization_id)
        if self._is_active_member is not None and not await self._is_active_member(
            user, organization
        ):
            raise TenantViolationError(
                f"user {user} is not an active member of an active organization {organization}"
            )
        await self._repaired()
        record = StoredRecord(
            user_id=user,
            organization_id=organization,
            data=dict(data or {}),
            metadata=metadata or SessionMetadata(),
        )
        payload = record.model_dump_json()
        if len(payload.encode()) > MAX_RECORD_BYTES:
            raise InvalidValueError(
                f"session data is larger than {MAX_RECORD_BYTES} bytes as JSON", field="data"
            )
        idle_ms = self._idle_ms if ttl is None else _milliseconds(ttl)
        token = new_token(user)
        digest = token_digest(token)
        with self._errors("create a session"):
            # The organization index is written first: a crash between the two calls leaves a
            # user listed without a session (harmless), never a session its organization
            # cannot find.
            await self._register_user(
                keys=[organization_index_key(organization)],
                args=[str(user), self._absolute_ms + _CLOCK_SKEW_MS],
            )
            evicted = await self._create(
                keys=[session_key(user, digest), user_index_key(user)],
                args=[
                    digest,
                    new_session_id(),
                    payload,
                    str(organization),
                    idle_ms,
                    self._absolute_ms,
                    self._cap,
                    session_key_prefix(user),
                ],
            )
        if evicted:
            logger.info("user %s reached the session cap: %s oldest revoked", user, evicted)
        return token

    async def get(self, token: str | None) -> Session | None:
        """The live session of ``token``, its idle expiry pushed to now + idle; else None.

        Any malformed token (empty, short, huge, non-ASCII, not a string) is None without a
        Redis call. Raises ``ConnectionFailedError`` when Redis cannot answer.
        """
        if telemetry.on:
            return await telemetry.session_resolve(self._get(token))
        return await self._get(token)

    async def _get(self, token: str | None) -> Session | None:
        parsed = parse_token(token)
        if parsed is None:
            return None
        await self._repaired()
        with self._errors("read a session"):
            reply = await self._slide(
                keys=[session_key(parsed.user_id, parsed.digest), user_index_key(parsed.user_id)],
                args=[parsed.digest, "1"],
            )
        if not reply:
            return None
        session = _session(reply)
        if session is None or session.user_id != parsed.user_id:
            return None
        return session

    async def touch(self, token: str | None) -> bool:
        """Slide the session's idle expiry as ``get`` does, without reading it back.

        True if the session was live.
        """
        parsed = parse_token(token)
        if parsed is None:
            return False
        await self._repaired()
        with self._errors("touch a session"):
            reply = await self._slide(
                keys=[session_key(parsed.user_id, parsed.digest), user_index_key(parsed.user_id)],
                args=[parsed.digest, "0"],
            )
        return bool(reply)

    async def rotate(self, token: str | None) -> str | None:
        """A new token for the same session (id, data, created_at kept); the old one is dead.

        One atomic step, so no moment exists when both or neither token works. Call it when
        privileges change (login, step-up) against session fixation. None if the session is
        not live.
        """
        parsed = parse_token(token)
        if parsed is None:
            return None
        user = parsed.user_id
        fresh = new_token(user)
        fresh_digest = token_digest(fresh)
        await self._repaired()
        with self._errors("rotate a session"):
            rotated = await self._rotate(
                keys=[
                    session_key(user, parsed.digest),
                    session_key(user, fresh_digest),
                    user_index_key(user),
                ],
                args=[parsed.digest, fresh_digest],
            )
        return fresh if rotated else None

    async def revoke(self, token: str | None) -> bool:
        """End the session of ``token`` (log out). True if it was live."""
        parsed = parse_token(token)
        if parsed is None:
            return False
        with self._errors("revoke a session"):
            removed = await self._revoke(
                keys=[session_key(parsed.user_id, parsed.digest), user_index_key(parsed.user_id)],
                args=[parsed.digest],
            )
        return bool(removed)

    async def revoke_session(self, user_id: uuid.UUID, session_id: str) -> bool:
        """End one of a user's sessions by its public ``Session.id`` (a device list's button).

        True if it was live. Needs the user, so a session id alone revokes nothing of anyone
        else's.
        """
        if not is_session_id(session_id):
            return False
        user = _as_uuid(user_id)
        with self._errors("revoke a session"):
            removed = await self._revoke_session_id(
                keys=[user_index_key(user)], args=[session_key_prefix(user), session_id]
            )
        return bool(removed)

    async def revoke_all(self, user_id: uuid.UUID) -> int:
        """End every session of a user, on every device, at once; returns how many were live.

        Call it when a user is deactivated, or changes their password.
        """
        user = _as_uuid(user_id)
        with self._errors("revoke a user's sessions"):
            reply = await self._revoke_user(
                keys=[user_index_key(user)], args=[session_key_prefix(user), ""]
            )
        return _int(reply[0])

    async def revoke_organization(self, organization_id: uuid.UUID) -> int:
        """End every session in an organization; returns how many were live.

        Atomic per user, not for the organization as a whole: its users live in different
        Cluster slots, so they are revoked one script each (pipelined in batches). Deactivate
        the organization in PostgreSQL first, so that no login races the revocation.
        """
        organization = _as_uuid(organization_id)
        key = organization_index_key(organization)
        revoked = 0
        batch: builtins.list[uuid.UUID] = []
        with self._errors("revoke an organization's sessions"):
            # ZSCAN returns every member present for the whole scan, however large the set.
            cursor: object = b"0"
            while True:
                cursor, found = await self._redis.call(
                    "ZSCAN", key, cursor, "COUNT", _ORGANIZATION_BATCH
                )
                for member in found[0::2]:  # member, score, member, score, ...
                    user = _maybe_uuid(member)
                    if user is not None:
                        batch.append(user)
                    if len(batch) >= _ORGANIZATION_BATCH:
                        revoked += await self._revoke_users(batch, organization)
                        batch = []
                if _int(cursor) == 0:
                    break
            if batch:
                revoked += await self._revoke_users(batch, organization)
        return revoked

    async def list(self, user_id: uuid.UUID) -> builtins.list[Session]:
        """The user's live sessions, oldest first, without sliding their expiry.

        Index entries of sessions that expired on their own are removed on the way.
        """
        user = _as_uuid(user_id)
        with self._errors("list a user's sessions"):
            rows = await self._list(keys=[user_index_key(user)], args=[session_key_prefix(user)])
        sessions = [_session(row) for row in rows]
        return [session for session in sessions if session is not None]

    async def _repaired(self) -> None:
        """After this store saw Redis fail: apply every revocation still listed first."""
        if not self._outage_seen or self._repair is None:
            return
        if not await self._repair():
            raise ConnectionFailedError(
                "Redis came back, but the revocations it missed could not be applied yet"
            )
        self._outage_seen = False

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            with redis_errors(action):
                yield
        except ConnectionFailedError:
            self._outage_seen = True
            raise

    async def _revoke_users(self, users: Sequence[uuid.UUID], organization: uuid.UUID) -> int:
        replies = await self._redis.evalsha_many(
            scripts.REVOKE_USER,
            [
                ([user_index_key(user)], [session_key_prefix(user), str(organization)])
                for user in users
            ],
        )
        return sum(_int(reply[0]) for reply in replies)


class _Script:
    """A Lua script of the store, run by its SHA1 through the transport."""

    __slots__ = ("_redis", "_source")

    def __init__(self, redis: RedisTransport, source: str) -> None:
        self._redis = redis
        self._source = source

    async def __call__(self, *, keys: Sequence[str], args: Sequence[object]) -> Any:
        return await self._redis.evalsha(self._source, list(keys), list(args))


def _session(row: Sequence[object]) -> Session | None:
    """A Session from a script's reply: sid, rec, created, seen, exp, abs."""
    sid, rec, created, seen, expires, absolute = row
    try:
        record = StoredRecord.model_validate_json(_text(rec))
        return Session(
            id=_text(sid),
            user_id=record.user_id,
            organization_id=record.organization_id,
            created_at=from_ms(_int(created)),
            last_seen_at=from_ms(_int(seen)),
            expires_at=from_ms(_int(expires)),
            absolute_expires_at=from_ms(_int(absolute)),
            data=record.data,
            metadata=record.metadata,
        )
    except (ValidationError, ValueError, TypeError):
        # Something other than leaddb wrote this key. Failing closed (no session) is the safe
        # answer for an auth check; the log says which user's data to look at.
        logger.warning("unreadable session record for session id %r", sid)
        return None


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, str):
        return value
    raise TypeError(f"unexpected Redis reply {type(value).__name__}")


def _int(value: object) -> int:
    if isinstance(value, int):
        return value
    return int(_text(value))


def _milliseconds(ttl: timedelta | float) -> int:
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else float(ttl)
    if not seconds > 0:
        raise InvalidValueError(f"ttl must be positive, not {ttl!r}", field="ttl")
    return max(1, round(seconds * 1000))


def _as_uuid(value: uuid.UUID) -> uuid.UUID:
    # uuid_utils' UUIDv7 is not a uuid.UUID subclass; its canonical string is the same.
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _maybe_uuid(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(_text(value))
    except (ValueError, TypeError):
        return None
