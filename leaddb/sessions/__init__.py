"""User sessions in Redis: ``SessionStore``, exposed as ``LeadDB.sessions``.

Tokens. A token is ``<user part>.<secret>``: the user's UUID in 22 URL-safe base64 characters,
then ``secrets.token_urlsafe(32)`` (256 bits). Redis stores only the SHA-256 of the whole token,
as the last part of the session's key, so no key or value holds a token and a dump of Redis
yields none. The user part is there for routing, not secrecy: it lets ``get(token)`` compute the
session's key, with the user's hash tag, from the token alone. The alternative, a
``leaddb:{t:<hash>}`` pointer to the session, lives in another Cluster slot than the session, so
``get`` would take two round trips (or a cross-slot script, which Cluster refuses) and a crash
could leave the pointer and the session disagreeing. The price is that a token reveals its
user's id to whoever holds it; the session it opens says as much.

Keys (``U`` a user id, ``O`` an organization id, ``D`` a token digest)::

    leaddb:{u:U}:session:D          hash: one session (public id, JSON record, times in ms)
    leaddb:{u:U}:sessions           sorted set: the user's digests, in creation order
    leaddb:{o:O}:session-users      sorted set: users with sessions in O, scored by deadline

A session and its user's index share the tag ``{u:U}``, hence a slot, so every change to them is
one Lua script (atomic, one round trip, valid on Redis Cluster): a session ``revoke_all`` cannot
find never exists. Each key expires on its own: a session at ``min(last seen + idle, created +
absolute)``, an index when the last session it can hold ends. Round trips: ``get``, ``touch``,
``rotate``, ``revoke``, ``revoke_session``, ``revoke_all`` and ``list`` one each (none for a
malformed token); ``create`` two (the organization index, then the session);
``revoke_organization`` one scan and one pipeline per 256 users.

Organizations. Their users hash to many slots, so ``revoke_organization`` revokes user by user:
atomic per user, not for the organization as a whole.

Failure. Redis errors raise ``leaddb.errors.ConnectionFailedError``, ``get`` included: an auth
layer must tell "Redis is down" (answer 503) from "not logged in" (answer 401), and a silent None
would log every user out, or worse, teach callers to treat errors as absence.
"""

from leaddb.sessions.models import Session, SessionMetadata
from leaddb.sessions.store import MAX_RECORD_BYTES, SessionStore

__all__ = ["MAX_RECORD_BYTES", "Session", "SessionMetadata", "SessionStore"]
