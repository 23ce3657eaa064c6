"""Seed data: organizations through leaddb, leads by COPY (asyncpg ``copy_records_to_table``).

One organization is large (70% of the leads, 80% of them ``new``) so that a status listing can go
~50,000 rows deep inside one tenant; the other nine share the rest evenly. Values are valid for
``LeadCreate`` (the first rows are checked against it), ids are UUIDv7, and the ``created_at`` of
each lead is spread over the past year.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
from uuid_utils.compat import uuid7

from leaddb import LeadDB
from leaddb.models import (
    LeadCreate,
    LeadSource,
    LeadStatus,
    LeadTemperature,
    OrganizationCreate,
)

ORGANIZATIONS = 10
BIG_SHARE = 0.7
BIG_NEW_SHARE = 0.8
DEEP_STATUS = LeadStatus.NEW

LEAD_COLUMNS = (
    "organization_id",
    "id",
    "email",
    "first_name",
    "last_name",
    "phone",
    "company",
    "job_title",
    "linkedin_url",
    "source",
    "status",
    "score",
    "temperature",
    "estimated_value",
    "expected_close_date",
    "last_engagement_at",
    "owner_id",
    "tags",
    "custom_fields",
    "created_at",
    "updated_at",
    "version",
    "deleted_at",
)
"""Every column of ``leads``, in table order."""

_FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim"]
_LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson"]
_COMPANIES = ["Initech", "Globex", "Umbrella", "Hooli", "Stark Industries", "Wayne Enterprises"]
_TITLES = ["CTO", "VP Sales", "Head of Growth", "Engineer", "Founder", "Procurement Lead"]
_TAGS = ["enterprise", "smb", "trial", "webinar", "partner", "priority", "emea", "amer"]
_OTHER_STATUSES = [status for status in LeadStatus if status is not DEEP_STATUS]


@dataclass
class Seeded:
    """What the run seeded and the inputs the operations draw from."""

    organizations: list[uuid.UUID]
    big: uuid.UUID
    leads: int
    big_live_ids: list[uuid.UUID]
    deep_status_rows: int
    seconds: float
    rows_per_second: float
    taken: int = 0

    def take_ids(self, count: int) -> list[uuid.UUID]:
        """Live leads of the big organization that no other write section touches (from the
        end of the list; reads draw on its beginning)."""
        available = len(self.big_live_ids) - self.taken
        count = min(count, available // 2)
        end = len(self.big_live_ids) - self.taken
        self.taken += count
        return self.big_live_ids[end - count : end]


async def create_organization(db: LeadDB, label: str) -> uuid.UUID:
    """A new organization, made through leaddb's platform unit of work."""
    slug = f"bench-{label}-{uuid.uuid4().hex[:10]}"
    async with db.platform() as uow:
        org = await uow.organizations.create(OrganizationCreate(name=f"Bench {label}", slug=slug))
        await uow.commit()
    return org.id


def lead_values(rng: random.Random, index: int, domain: str) -> dict[str, Any]:
    """The fields of one valid lead (``LeadCreate``'s names and types)."""
    first = rng.choice(_FIRST)
    last = rng.choice(_LAST)
    return {
        "email": f"{first.lower()}.{last.lower()}.{index}@{domain}.example.com",
        "first_name": first,
        "last_name": last,
        "phone": f"+1 555 {rng.randrange(1000, 9999)} {rng.randrange(100, 999)}",
        "company": rng.choice(_COMPANIES),
        "job_title": rng.choice(_TITLES),
        "linkedin_url": f"https://www.linkedin.com/in/{first.lower()}-{last.lower()}-{index}",
        "source": rng.choice(list(LeadSource)),
        "status": LeadStatus.NEW,
        "score": rng.randrange(0, 101),
        "temperature": rng.choice(list(LeadTemperature)),
        "estimated_value": Decimal(rng.randrange(1_000, 5_000_000)) / 100,
        "expected_close_date": date(2027, 1, 1) + timedelta(days=rng.randrange(0, 365)),
        "last_engagement_at": None,
        "owner_id": None,
        "tags": rng.sample(_TAGS, rng.randrange(0, 4)),
        "custom_fields": {"plan": rng.choice(["free", "pro", "team"]), "seats": rng.randrange(50)},
    }


def _record(
    rng: random.Random,
    organization: uuid.UUID,
    index: int,
    status: LeadStatus,
    now: datetime,
) -> tuple[Any, ...]:
    values = lead_values(rng, index, f"org{organization.hex[:8]}")
    created = now - timedelta(seconds=rng.randrange(1, 365 * 86_400))
    engaged = created + timedelta(hours=rng.randrange(1, 500)) if rng.random() < 0.6 else None
    deleted = created + timedelta(days=1) if rng.random() < 0.01 else None
    return (
        organization,
        uuid7(),
        values["email"],
        values["first_name"],
        values["last_name"],
        values["phone"],
        values["company"],
        values["job_title"],
        values["linkedin_url"],
        values["source"].value,
        status.value,
        values["score"],
        values["temperature"].value,
        values["estimated_value"],
        values["expected_close_date"],
        engaged,
        None,
        values["tags"],
        orjson.dumps(values["custom_fields"]).decode(),
        created,
        created,
        1,
        deleted,
    )


async def seed(db: LeadDB, dsn: str, leads: int, *, seed: int = 20261125) -> Seeded:
    """Create the organizations, COPY ``leads`` leads, ANALYZE; return what was made."""
    rng = random.Random(seed)  # noqa: S311 (test data)
    organizations = [await create_organization(db, f"org{n}") for n in range(ORGANIZATIONS)]
    big = organizations[0]
    big_count = int(leads * BIG_SHARE)
    rest = leads - big_count
    now = datetime.now(UTC)
    records: list[tuple[Any, ...]] = []
    for index in range(big_count):
        status = DEEP_STATUS if rng.random() < BIG_NEW_SHARE else rng.choice(_OTHER_STATUSES)
        records.append(_record(rng, big, index, status, now))
    for index in range(rest):
        organization = organizations[1 + index % (ORGANIZATIONS - 1)]
        records.append(_record(rng, organization, index, rng.choice(list(LeadStatus)), now))
    # The values are LeadCreate-valid: check a few rows through the schema itself.
    for record in records[:50]:
        row = dict(zip(LEAD_COLUMNS, record, strict=True))
        row["custom_fields"] = orjson.loads(row["custom_fields"])
        LeadCreate.model_validate({name: row[name] for name in LeadCreate.model_fields})
    connection = await asyncpg.connect(dsn)
    try:
        began = time.perf_counter()
        await connection.copy_records_to_table("leads", records=records, columns=LEAD_COLUMNS)
        seconds = time.perf_counter() - began
        await connection.execute("ANALYZE leads")
        await connection.execute("ANALYZE organizations")
        deep_rows = await connection.fetchval(
            "SELECT count(*) FROM leads WHERE organization_id = $1 AND status = $2 "
            "AND deleted_at IS NULL",
            big,
            DEEP_STATUS.value,
        )
    finally:
        await connection.close()
    live = [record[1] for record in records[:big_count] if record[-1] is None]
    rng.shuffle(live)
    return Seeded(
        organizations=organizations,
        big=big,
        leads=leads,
        big_live_ids=live,
        deep_status_rows=int(deep_rows),
        seconds=seconds,
        rows_per_second=leads / seconds if seconds else float("nan"),
    )
