"""The floor for ``leaddb seed``'s rows/s: the seed's own generator, COPYed straight into leads.

Run it against the database a seed just filled, so both meet the same table size and indexes::

    python -m bench.seed_floor --database-url postgresql://postgres@127.0.0.1:5432/seeded

It makes a fresh organization (directly, as the URL's role: a superuser or the tables' owner,
which row-level security does not stop) and COPYs ``--leads`` generated leads into it twice:
once generating each batch of 10,000 before COPYing it, and once generating the next batch in a
thread while the current one is COPYed, as the seed overlaps its batches. No audit rows are
written, and nothing is checked: this is what the data alone costs.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import time
import uuid
from typing import Any

import asyncpg
import orjson

from leaddb.seeding.fake import lead_batch
from leaddb.settings import asyncpg_dsn

BATCH = 10_000


def _records(organization: uuid.UUID, slug: str, start: int, count: int) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for payload in lead_batch(slug, start, count, []):
        values = [v.value if isinstance(v, enum.Enum) else v for v in payload.__dict__.values()]
        rows.append((organization, uuid.uuid4(), *values))
    return rows


async def _organization(connection: asyncpg.Connection, label: str) -> tuple[uuid.UUID, str]:
    slug = f"floor-{label}-{uuid.uuid4().hex[:8]}"
    organization: uuid.UUID = await connection.fetchval(
        "INSERT INTO organizations (id, name, slug) VALUES (gen_random_uuid(), $1, $1) "
        "RETURNING id",
        slug,
    )
    return organization, slug


async def measure(url: str, leads: int) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await connection.set_type_codec(
            "jsonb",
            schema="pg_catalog",
            encoder=lambda value: b"\x01" + orjson.dumps(value),
            decoder=lambda data: data,
            format="binary",
        )
        sample = lead_batch("floor", 0, 1, [])[0]
        columns = ["organization_id", "id", *sample.__dict__]
        organization, slug = await _organization(connection, "sequential")
        generating = copying = 0.0
        for start in range(0, leads, BATCH):
            began = time.perf_counter()
            records = _records(organization, slug, start, min(BATCH, leads - start))
            generated = time.perf_counter()
            await connection.copy_records_to_table("leads", records=records, columns=columns)
            generating += generated - began
            copying += time.perf_counter() - generated
        print(
            f"generate, then COPY: {leads / (generating + copying):,.0f} rows/s; "
            f"COPY alone {leads / copying:,.0f} rows/s"
        )
        organization, slug = await _organization(connection, "overlapped")
        began = time.perf_counter()
        upcoming = asyncio.ensure_future(
            asyncio.to_thread(_records, organization, slug, 0, min(BATCH, leads))
        )
        for start in range(0, leads, BATCH):
            records = await upcoming
            following = start + BATCH
            if following < leads:
                upcoming = asyncio.ensure_future(
                    asyncio.to_thread(
                        _records, organization, slug, following, min(BATCH, leads - following)
                    )
                )
            await connection.copy_records_to_table("leads", records=records, columns=columns)
        print(
            "COPY with the next batch generated meanwhile (as the seed overlaps its batches): "
            f"{leads / (time.perf_counter() - began):,.0f} rows/s"
        )
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True, help="a seeded leaddb database")
    parser.add_argument("--leads", type=int, default=100_000, help="leads per measurement")
    args = parser.parse_args()
    asyncio.run(measure(args.database_url, args.leads))


if __name__ == "__main__":
    main()
