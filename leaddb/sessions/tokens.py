"""Session tokens and the Redis keys they lead to: pure functions, no I/O.

A token is ``<user>.<secret>``: 22 URL-safe base64 characters of the user's UUID, a dot, and 43
characters of ``secrets.token_urlsafe(32)`` (256 bits). The user part names the hash tag of
every key of that user, so a token alone finds its key in one round trip, on one Redis Cluster
slot. Redis only ever sees the SHA-256 of the whole token, so the secret never reaches a key or
a value, and a token whose user part was edited hashes to a key that does not exist.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Final

SECRET_BYTES: Final = 32
"""Randomness of a token's secret part: 256 bits."""

_USER_CHARS: Final = 22  # base64 of 16 bytes, without padding
_SECRET_CHARS: Final = 43  # base64 of 32 bytes, without padding
TOKEN_LENGTH: Final = _USER_CHARS + 1 + _SECRET_CHARS
"""Every token leaddb issues has exactly this many characters."""

_SESSION_ID_BYTES: Final = 16
SESSION_ID_LENGTH: Final = 22
"""A public session id: 128 random bits, URL-safe base64."""

# Explicit ASCII classes: ``\w`` would admit non-ASCII letters. fullmatch, because ``$`` also
# matches before a trailing newline.
_TOKEN_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}")
_SESSION_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{22}")


@dataclass(frozen=True, slots=True)
class ParsedToken:
    """What a well-formed token says: whose it is, and the digest that names its key."""

    user_id: uuid.UUID
    digest: str


def new_token(user_id: uuid.UUID) -> str:
    """A fresh token for ``user_id``: the user part, a dot, and 256 random bits."""
    user_part = base64.urlsafe_b64encode(user_id.bytes).rstrip(b"=").decode("ascii")
    return f"{user_part}.{secrets.token_urlsafe(SECRET_BYTES)}"


def token_digest(token: str) -> str:
    """The SHA-256 (hex) of a token: the only form of it that is ever stored.

    A plain hash is enough because the input carries 256 random bits: there is no dictionary to
    try, so neither a salt nor a slow hash would add anything.
    """
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def parse_token(token: object) -> ParsedToken | None:
    """The user and digest of a well-formed token, or None for anything else.

    Never raises, whatever ``token`` is, and checks the length before anything else so that a
    megabyte of garbage costs no more than a wrong-length string.
    """
    if not isinstance(token, str) or len(token) != TOKEN_LENGTH:
        return None
    if not token.isascii() or _TOKEN_PATTERN.fullmatch(token) is None:
        return None
    user_part = token[:_USER_CHARS]
    try:
        raw = base64.urlsafe_b64decode(user_part + "==")
    except (binascii.Error, ValueError):
        return None
    # 22 characters carry 132 bits for 16 bytes: a token whose spare bits are set is not one we
    # issued, so it is refused here rather than looked up.
    if len(raw) != 16 or base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != user_part:
        return None
    return ParsedToken(uuid.UUID(bytes=raw), token_digest(token))


def new_session_id() -> str:
    """A public session id: stable for the session's life (rotation keeps it), not a secret."""
    return secrets.token_urlsafe(_SESSION_ID_BYTES)


def is_session_id(value: object) -> bool:
    """Whether ``value`` has the shape of a session id (so that garbage never reaches Redis)."""
    return (
        isinstance(value, str)
        and len(value) == SESSION_ID_LENGTH
        and value.isascii()
        and _SESSION_ID_PATTERN.fullmatch(value) is not None
    )


# Keys. Everything of one user shares the hash tag ``{u:<user id>}`` (one Cluster slot), so a
# Lua script may touch a session and its user's index together. The organization index has a tag
# of its own, ``{o:<organization id>}``, distinct from the tenant cache's ``{<organization id>}``.


def user_tag(user_id: uuid.UUID) -> str:
    """The prefix, hash tag included, of every session key of one user."""
    return f"leaddb:{{u:{user_id}}}"


def session_key_prefix(user_id: uuid.UUID) -> str:
    """A session's key is this prefix followed by its token digest."""
    return f"{user_tag(user_id)}:session:"


def session_key(user_id: uuid.UUID, digest: str) -> str:
    """The hash holding one session."""
    return session_key_prefix(user_id) + digest


def user_index_key(user_id: uuid.UUID) -> str:
    """The sorted set of a user's session digests, in creation order (scores: µs, increasing)."""
    return f"{user_tag(user_id)}:sessions"


def organization_index_key(organization_id: uuid.UUID) -> str:
    """The sorted set of users with sessions in an organization, scored by a deadline (ms)."""
    return f"leaddb:{{o:{organization_id}}}:session-users"
