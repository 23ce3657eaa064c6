"""Session tokens and their keys: shape, parsing of hostile input, hash tags (no servers)."""

from __future__ import annotations

import base64
import uuid

from hypothesis import example, given
from hypothesis import strategies as st
from redis.crc import key_slot

from leaddb.sessions.tokens import (
    TOKEN_LENGTH,
    is_session_id,
    new_session_id,
    new_token,
    organization_index_key,
    parse_token,
    session_key,
    token_digest,
    user_index_key,
)


def test_a_new_token_parses_back_to_its_user() -> None:
    user = uuid.uuid4()
    token = new_token(user)
    parsed = parse_token(token)
    assert parsed is not None
    assert parsed.user_id == user
    assert parsed.digest == token_digest(token)
    assert len(token) == TOKEN_LENGTH


def test_the_secret_part_holds_256_random_bits() -> None:
    user = uuid.uuid4()
    secrets_seen = {new_token(user).split(".")[1] for _ in range(1000)}
    assert len(secrets_seen) == 1000
    for secret in list(secrets_seen)[:10]:
        assert len(base64.urlsafe_b64decode(secret + "=")) == 32


def test_the_digest_is_sha256_hex_and_hides_the_token() -> None:
    token = new_token(uuid.uuid4())
    digest = token_digest(token)
    assert len(digest) == 64
    assert int(digest, 16) >= 0
    assert token.split(".")[1] not in digest


@given(user=st.uuids())
def test_every_user_id_round_trips(user: uuid.UUID) -> None:
    parsed = parse_token(new_token(user))
    assert parsed is not None
    assert parsed.user_id == user


@given(
    value=st.one_of(
        st.text(),
        st.text(alphabet="AB_-.z09", min_size=TOKEN_LENGTH, max_size=TOKEN_LENGTH),
        st.binary(),
        st.none(),
        st.integers(),
        st.binary().map(lambda raw: raw.decode("latin-1")),
    )
)
@example(value="x" * 1_000_000)
@example(value="é" * TOKEN_LENGTH)
@example(value="A" * 22 + "." + "B" * 43 + "\n")
def test_parsing_never_raises(value: object) -> None:
    parsed = parse_token(value)
    if parsed is not None:
        assert isinstance(value, str)
        assert len(value) == TOKEN_LENGTH


def test_a_user_part_with_spare_bits_set_is_refused() -> None:
    token = new_token(uuid.UUID(int=0))
    assert token.startswith("A" * 22)
    assert parse_token(token) is not None
    assert parse_token("A" * 21 + "B" + token[22:]) is None


def test_session_ids() -> None:
    assert is_session_id(new_session_id())
    assert not is_session_id("")
    assert not is_session_id(None)
    assert not is_session_id("é" * 22)
    assert not is_session_id(new_session_id() + "\n")


def test_a_users_keys_share_one_slot_and_carry_no_secret() -> None:
    user, org = uuid.uuid4(), uuid.uuid4()
    token = new_token(user)
    parsed = parse_token(token)
    assert parsed is not None
    key = session_key(user, parsed.digest)
    index = user_index_key(user)
    assert key_slot(key.encode()) == key_slot(index.encode()) == key_slot(f"{{u:{user}}}".encode())
    assert token.split(".")[1] not in key
    assert organization_index_key(org) == f"leaddb:{{o:{org}}}:session-users"
