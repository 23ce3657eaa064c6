"""The service's request bodies: leaddb's ``LeadCreate`` / ``LeadUpdate``, with the four fields
whose JSON Schema would otherwise promise more than leaddb accepts.

leaddb checks a phone number's digits, a LinkedIn URL's scheme and host, an amount's places and
an email's domain in validators that a JSON Schema cannot see, so a client (or a fuzzer) reading
the OpenAPI would send ``"phone": ""`` or ``"linkedin_url": ""`` in good faith and get a 422.
Here each of them is declared as a pattern that says exactly what is accepted, and the body is
validated again by leaddb's own schema before it reaches the repository (``to_create`` /
``to_update``).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Final

from pydantic import BeforeValidator, EmailStr, StringConstraints, WithJsonSchema
from pydantic.json_schema import SkipJsonSchema

from leaddb.models import LeadCreate, LeadUpdate

PHONE_PATTERN: Final = r"^\+?[ ().\-]*(?:[0-9][ ().\-]*){6,}$"
"""leaddb's phone rule as one pattern: an optional ``+``, digits, spaces and ``().-``, at least
six digits (with at most 32 characters in all)."""

URL_PATTERN: Final = (
    r"^https?://[A-Za-z][A-Za-z0-9-]{0,62}(?:\.[A-Za-z][A-Za-z0-9-]{0,62})*"
    r"(?:/[A-Za-z0-9._~%/-]*)?$"
)
"""An http(s) URL with a host name (labels starting with a letter, so none reads as an IPv4
number) and an optional path: a subset of what leaddb's URL check accepts."""

MONEY_PATTERN: Final = r"^[0-9]{1,12}(?:\.[0-9]{1,2})?$"
"""An amount as a decimal string, at most 12 digits before the point and 2 after (leaddb stores
``numeric(14, 2)``); a string, because a JSON number would round 0.1 on the way."""

CURSOR_PATTERN: Final = r"^[A-Za-z0-9_-]+$"
"""A page cursor's alphabet (URL-safe base64, unpadded). Only a ``next_cursor`` the service
made is accepted: it is signed, and no pattern can say that."""


def _any_case(word: str) -> str:
    return "".join(f"[{letter.lower()}{letter.upper()}]" for letter in word)


_SPECIAL_USE: Final = "|".join(
    _any_case(name) for name in ("arpa", "invalid", "local", "localhost", "onion", "test")
)
EMAIL_SCHEMA: Final = {
    "type": "string",
    "format": "email",
    "maxLength": 254,
    # email-validator refuses the special-use domains (RFC 6761 and the like), in any case, and
    # so does leaddb; the pattern says so (JSON Schema patterns are ECMA 262: lookahead works,
    # inline flags do not).
    "pattern": rf"^[^@]+@(?:[^@.]+\.)*(?!(?:{_SPECIAL_USE})$)[^@.]+$",
}

_MONEY: Final = re.compile(MONEY_PATTERN)


def _money_text(value: object) -> object:
    if not isinstance(value, str) or _MONEY.match(value) is None:
        raise ValueError('an amount is a decimal string such as "1200.50"')
    return value


Email = Annotated[EmailStr, WithJsonSchema(EMAIL_SCHEMA)]
Phone = Annotated[str, StringConstraints(max_length=32, pattern=PHONE_PATTERN)]
HttpURL = Annotated[str, StringConstraints(max_length=2048, pattern=URL_PATTERN)]
Money = Annotated[
    Decimal,
    BeforeValidator(_money_text),
    WithJsonSchema({"type": "string", "pattern": MONEY_PATTERN}),
]


class LeadIn(LeadCreate):
    """A new lead, as the API accepts it."""

    email: Email
    phone: Phone | None = None
    linkedin_url: HttpURL | None = None
    estimated_value: Money | None = None

    def to_create(self) -> LeadCreate:
        """The same lead, validated by leaddb's own schema."""
        return LeadCreate.model_validate(self.model_dump(exclude_unset=True))


class LeadPatch(LeadUpdate):
    """A partial update of a lead, as the API accepts it; omitted fields stay as they are."""

    # A lead's email cannot be null (only omitted): the schema offers no null for it.
    email: Email | SkipJsonSchema[None] = None
    phone: Phone | None = None
    linkedin_url: HttpURL | None = None
    estimated_value: Money | None = None

    def to_update(self) -> LeadUpdate:
        """The same update, validated by leaddb's own schema."""
        return LeadUpdate.model_validate(self.model_dump(exclude_unset=True))
