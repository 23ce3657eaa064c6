"""Realistic, repeatable fake data for ``leaddb seed`` and ``leaddb demo``.

Faker draws the vocabularies once (names, companies, job titles, sentences) from a fixed seed; a
``random.Random`` seeded from the organization's slug and the batch's first index combines them.
Calling Faker for every field of every row would cost ~100 us a lead, more than writing it.

Every value is valid by construction (vocabulary entries are checked against the schemas'
limits when the vocabulary is built), so lead payloads are made with ``model_construct`` and one
payload per batch is validated in full as a tripwire (``check_sample``).
"""

from __future__ import annotations

import itertools
import random
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Final

from leaddb.models import (
    DEFAULT_TEMPERATURE_THRESHOLDS,
    LeadCreate,
    LeadSource,
    LeadStatus,
    OrganizationCreate,
    SubscriptionTier,
    UserCreate,
    UserRole,
)

FAKER_SEED: Final = 20_241_125
NAME_LIMIT: Final = 100
TEXT_LIMIT: Final = 200

TAGS: Final = (
    "enterprise",
    "smb",
    "inbound",
    "webinar",
    "trial",
    "partner",
    "priority",
    "renewal",
    "expansion",
    "competitor",
)
INDUSTRIES: Final = (
    "software",
    "manufacturing",
    "healthcare",
    "finance",
    "retail",
    "logistics",
    "education",
    "energy",
)
EMPLOYEES: Final = (5, 20, 50, 200, 1_000, 5_000)
TIMEZONES: Final = ("UTC", "Europe/Paris", "Europe/London", "America/New_York", "Asia/Tokyo")
_TLDS: Final = ("com", "io", "co", "net", "org")
_COUNTRY_CODES: Final = ("+1", "+44", "+49", "+33", "+61", "+31")

_STATUSES: Final = tuple(LeadStatus)
_STATUS_WEIGHTS: Final = (35, 22, 15, 9, 5, 8, 6)
_STATUS_BASE_SCORE: Final = {
    LeadStatus.NEW: 5,
    LeadStatus.CONTACTED: 15,
    LeadStatus.QUALIFIED: 35,
    LeadStatus.PROPOSAL: 50,
    LeadStatus.NEGOTIATION: 60,
    LeadStatus.WON: 70,
    LeadStatus.LOST: 10,
}
_SOURCES: Final = tuple(LeadSource)
_SOURCE_WEIGHTS: Final = (30, 12, 15, 14, 8, 12, 6, 3)
_USER_ROLES: Final = (UserRole.OWNER, UserRole.ADMIN, UserRole.MANAGER)
_TIERS: Final = (SubscriptionTier.STARTER, SubscriptionTier.PRO, SubscriptionTier.ENTERPRISE)
_TAG_SETS: Final = tuple(tuple(itertools.combinations(TAGS, size)) for size in range(4))
_TAG_SIZES: Final = (0, 0, 0, 1, 1, 1, 1, 2, 2, 3)
"""How many tags a lead has: mostly none or one, rarely three."""
_NOT_EMAIL: Final = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Company:
    """A company name and the email domain its people use."""

    name: str
    domain: str


@dataclass(frozen=True)
class Vocabulary:
    """Everything the generators pick from, drawn once from Faker."""

    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    people_first: tuple[tuple[str, str], ...]
    """First names with their email spelling."""
    people_last: tuple[tuple[str, str], ...]
    """Last names with their email spelling."""
    companies: tuple[Company, ...]
    job_titles: tuple[str, ...]
    countries: tuple[str, ...]
    sentences: tuple[str, ...]


def email_part(text: str, fallback: str = "x") -> str:
    """``text`` reduced to lowercase ASCII letters and digits (an email local part or label)."""
    return _NOT_EMAIL.sub("", text.lower())[:40] or fallback


def _fits(value: str, limit: int) -> bool:
    return 0 < len(value) <= limit


@lru_cache(maxsize=1)
def vocabulary() -> Vocabulary:
    """The vocabulary, the same on every call and in every process (Faker's seed is fixed)."""
    from faker import Faker  # only when data is generated: `leaddb --help` stays quick

    faker = Faker("en_US")
    faker.seed_instance(FAKER_SEED)
    companies: dict[str, Company] = {}
    for _ in range(600):
        name = faker.company()
        if _fits(name, TEXT_LIMIT):
            domain = f"{email_part(name, 'company')}.{faker.random_element(_TLDS)}"
            companies.setdefault(name, Company(name, domain))
    first_names = _distinct(
        name for name in (faker.first_name() for _ in range(1_500)) if _fits(name, NAME_LIMIT)
    )
    last_names = _distinct(
        name for name in (faker.last_name() for _ in range(1_500)) if _fits(name, NAME_LIMIT)
    )
    return Vocabulary(
        first_names=first_names,
        last_names=last_names,
        people_first=tuple((name, email_part(name)) for name in first_names),
        people_last=tuple((name, email_part(name)) for name in last_names),
        companies=tuple(companies.values()),
        job_titles=_distinct(
            title for title in (faker.job() for _ in range(800)) if _fits(title, TEXT_LIMIT)
        ),
        countries=_distinct(faker.country() for _ in range(120)),
        sentences=_distinct(faker.sentence(nb_words=14) for _ in range(400)),
    )


def _distinct(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(value for value in values if value))


def day_anchor() -> datetime:
    """Midnight UTC today: generated moments are relative to it, so a run repeats within a day
    and the data still looks recent on any day."""
    now = datetime.now(UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC)


@lru_cache(maxsize=8)
def _companies(prefix: str) -> tuple[Company, ...]:
    """The companies in the order a prefix's organizations take them: each prefix shuffles
    them with its own seed, so the demo's organizations and ``leaddb seed``'s have different
    names, and no two organizations of one prefix share one (up to the vocabulary's size)."""
    companies = list(vocabulary().companies)
    _rng(f"companies/{prefix}").shuffle(companies)
    return tuple(companies)


def organization_payload(prefix: str, index: int) -> OrganizationCreate:
    """The ``index``-th organization of a seed: slug ``<prefix>-<index + 1, 3 digits>``."""
    rng = _rng(f"organization/{prefix}/{index}")
    companies = _companies(prefix)
    company = companies[index % len(companies)]
    slug = f"{prefix}-{index + 1:03d}"
    return OrganizationCreate(
        name=company.name,
        slug=slug,
        subscription_tier=rng.choice(_TIERS),
        billing_email=f"billing@{company.domain}",
        settings={"lead_temperature": {"warm_min": 30, "hot_min": 70}, "seeded_by": "leaddb"},
    )


def organization_domain(organization_name: str) -> str:
    """The email domain of an organization's own users."""
    return f"{email_part(organization_name, 'team')}.com"


def user_payloads(slug: str, domain: str, count: int) -> list[UserCreate]:
    """The first ``count`` users of an organization: an owner, an admin, a manager, then
    agents. The list for ``n`` is a prefix of the list for ``n + 1``, so topping up is stable."""
    vocab = vocabulary()
    rng = _rng(f"users/{slug}")
    users: list[UserCreate] = []
    seen: set[str] = set()
    for index in range(count):
        first, last = rng.choice(vocab.first_names), rng.choice(vocab.last_names)
        local = f"{email_part(first)}.{email_part(last)}"
        if local in seen:
            local = f"{local}{index + 1}"
        seen.add(local)
        users.append(
            UserCreate(
                email=f"{local}@{domain}",
                full_name=f"{first} {last}",
                role=_USER_ROLES[index] if index < len(_USER_ROLES) else UserRole.AGENT,
                timezone=rng.choice(TIMEZONES),
            )
        )
    return users


def lead_batch(
    slug: str,
    start: int,
    count: int,
    owners: Sequence[uuid.UUID],
    *,
    anchor: datetime | None = None,
) -> list[LeadCreate]:
    """Leads number ``start + 1`` to ``start + count`` of an organization.

    Emails are ``first.last.<number>@company-domain``: the number makes them unique within the
    organization whatever the names drawn. Written for speed (one ``random()`` per choice, email
    parts prepared with the vocabulary): at a million leads, every microsecond is a second.
    """
    vocab = vocabulary()
    firsts, lasts, companies = vocab.people_first, vocab.people_last, vocab.companies
    titles, countries = vocab.job_titles, vocab.countries
    rng = _rng(f"leads/{slug}/{start}")
    draw = rng.random
    moment = anchor or day_anchor()
    today = moment.date()
    classify = DEFAULT_TEMPERATURE_THRESHOLDS.classify
    statuses = rng.choices(_STATUSES, weights=_STATUS_WEIGHTS, k=count)
    sources = rng.choices(_SOURCES, weights=_SOURCE_WEIGHTS, k=count)
    owner_list = list(owners)
    leads: list[LeadCreate] = []
    for offset in range(count):
        number = start + offset + 1
        status = statuses[offset]
        first, first_part = firsts[int(draw() * len(firsts))]
        last, last_part = lasts[int(draw() * len(lasts))]
        company = companies[int(draw() * len(companies))]
        score = min(100, _STATUS_BASE_SCORE[status] + int(draw() * 36))
        engaged = None
        if status is not LeadStatus.NEW or draw() < 0.3:
            engaged = moment - timedelta(minutes=10 + int(draw() * 172_800))
        phone = None
        if draw() < 0.7:
            digits = f"{int(draw() * 10**10):010d}"
            code = _COUNTRY_CODES[int(draw() * len(_COUNTRY_CODES))]
            phone = f"{code} {digits[:3]} {digits[3:6]} {digits[6:]}"
        leads.append(
            LeadCreate.model_construct(
                email=f"{first_part}.{last_part}.{number}@{company.domain}",
                first_name=first,
                last_name=last,
                phone=phone,
                company=company.name,
                job_title=titles[int(draw() * len(titles))] if draw() < 0.85 else None,
                linkedin_url=(
                    f"https://www.linkedin.com/in/{first_part}-{last_part}-{number}"
                    if draw() < 0.4
                    else None
                ),
                source=sources[offset],
                status=status,
                score=score,
                temperature=classify(score),
                estimated_value=(
                    Decimal(500_00 + 50_00 * int(draw() * 4_990)).scaleb(-2)
                    if draw() < 0.75
                    else None
                ),
                expected_close_date=_close_date(draw(), status, today),
                last_engagement_at=engaged,
                owner_id=(
                    owner_list[int(draw() * len(owner_list))]
                    if owner_list and draw() < 0.8
                    else None
                ),
                tags=list(_pick(_TAG_SETS[_TAG_SIZES[int(draw() * 10)]], draw())),
                custom_fields={
                    "industry": INDUSTRIES[int(draw() * len(INDUSTRIES))],
                    "employees": EMPLOYEES[int(draw() * len(EMPLOYEES))],
                    "country": countries[int(draw() * len(countries))],
                },
            )
        )
    return leads


def check_sample(leads: Sequence[LeadCreate]) -> None:
    """Validate one payload in full; ValueError (pydantic's) if generation drifted from the
    schema (a Faker upgrade with longer words, say)."""
    if leads:
        LeadCreate.model_validate(leads[len(leads) // 2].model_dump())


def _rng(key: str) -> random.Random:
    # Fake data that must repeat run after run: a seeded generator, not a secure one.
    return random.Random(key)  # noqa: S311


def _pick(values: Sequence[tuple[str, ...]], fraction: float) -> tuple[str, ...]:
    return values[int(fraction * len(values))]


def _close_date(fraction: float, status: LeadStatus, today: date) -> date | None:
    if status in (LeadStatus.QUALIFIED, LeadStatus.PROPOSAL, LeadStatus.NEGOTIATION):
        return today + timedelta(days=7 + int(fraction * 114))
    if status in (LeadStatus.WON, LeadStatus.LOST):
        return today - timedelta(days=1 + int(fraction * 90))
    return None
