"""``leaddb seed`` against the real servers: idempotent per slug, topped up, unique emails,
one audit row per lead, and an interrupted run that the next one completes."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from leaddb import LeadDB, LeadDBSettings
from leaddb.repositories.bulk import chunk_bounds
from leaddb.seed import register, seed_with_progress
from leaddb.seeding import load as seeding_load
from leaddb.seeding import seed
from leaddb.seeding.fake import check_sample, lead_batch

if TYPE_CHECKING:
    from conftest import TestServers


async def lead_counts(pg: asyncpg.Connection) -> dict[str, tuple[int, int]]:
    """Per organization slug: (leads, distinct lower-case emails)."""
    rows = await pg.fetch(
        "SELECT o.slug, count(l.id) AS leads, count(DISTINCT lower(l.email)) AS emails "
        "FROM organizations o LEFT JOIN leads l ON l.organization_id = o.id "
        "GROUP BY o.slug ORDER BY o.slug"
    )
    return {row["slug"]: (row["leads"], row["emails"]) for row in rows}


async def test_seeding_twice_adds_nothing_the_second_time(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    first = await seed(db, organizations=2, leads=500, batch_size=200, concurrency=2)
    assert first.leads_added == 1000
    assert [item.created for item in first.organizations] == [True, True]
    assert await lead_counts(pg) == {"seed-001": (500, 500), "seed-002": (500, 500)}

    second = await seed(db, organizations=2, leads=500, batch_size=200)
    assert second.leads_added == 0
    assert [item.created for item in second.organizations] == [False, False]
    assert [item.organization.id for item in second.organizations] == [
        item.organization.id for item in first.organizations
    ]
    assert await lead_counts(pg) == {"seed-001": (500, 500), "seed-002": (500, 500)}
    assert await pg.fetchval("SELECT count(*) FROM users") == 10


async def test_a_larger_count_tops_up_and_a_smaller_one_removes_nothing(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    await seed(db, organizations=1, leads=300, batch_size=250)
    topped = await seed(db, organizations=2, leads=700, batch_size=250, concurrency=3)
    assert topped.leads_added == 400 + 700
    assert [(item.leads_before, item.leads_after) for item in topped.organizations] == [
        (300, 700),
        (0, 700),
    ]
    shrunk = await seed(db, organizations=2, leads=100)
    assert shrunk.leads_added == 0
    assert await lead_counts(pg) == {"seed-001": (700, 700), "seed-002": (700, 700)}


async def test_emails_are_unique_per_organization_and_numbered_without_gaps(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    await seed(db, organizations=2, leads=450, batch_size=200, concurrency=3)
    rows = await pg.fetch("SELECT organization_id, email FROM leads")
    by_org: dict[Any, list[int]] = {}
    for row in rows:
        assert row["email"] == row["email"].lower()
        number = re.fullmatch(r"[a-z0-9]+\.[a-z0-9]+\.(\d+)@[a-z0-9]+\.[a-z]+", row["email"])
        assert number is not None, row["email"]
        by_org.setdefault(row["organization_id"], []).append(int(number.group(1)))
    assert len(by_org) == 2
    for numbers in by_org.values():
        assert sorted(numbers) == list(range(1, 451))


async def test_every_seeded_lead_has_one_audit_row(db: LeadDB, pg: asyncpg.Connection) -> None:
    await seed(db, organizations=1, leads=400, batch_size=200)
    audited = await pg.fetchval(
        "SELECT count(*) FROM activity_logs WHERE entity_type = 'lead' AND action = 'created'"
    )
    assert audited == 400


async def test_a_seed_leaves_fresh_planner_statistics(db: LeadDB, pg: asyncpg.Connection) -> None:
    await seed(db, organizations=1, leads=300, batch_size=300)
    # ANALYZE sets the catalog's row estimate at once (a never-analyzed table says -1).
    estimated = await pg.fetchval("SELECT reltuples FROM pg_class WHERE relname = 'leads'")
    assert estimated == await pg.fetchval("SELECT count(*) FROM leads")


async def test_leads_are_realistic_and_owned_by_the_organizations_users(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    result = await seed(db, organizations=1, leads=300, users_per_organization=4)
    users = {user.id for user in result.organizations[0].users}
    assert len(users) == 4
    rows = await pg.fetch("SELECT * FROM leads")
    owners = {row["owner_id"] for row in rows} - {None}
    assert owners
    assert owners <= users
    assert len({row["company"] for row in rows}) > 50
    assert len({row["status"] for row in rows}) == 7
    assert all(row["first_name"] and row["last_name"] for row in rows)


def test_generation_repeats_for_the_same_slug_and_batch() -> None:
    first = lead_batch("acme", 1000, 50, [])
    again = lead_batch("acme", 1000, 50, [])
    other = lead_batch("globex", 1000, 50, [])
    assert [lead.model_dump() for lead in first] == [lead.model_dump() for lead in again]
    assert [lead.email for lead in first] != [lead.email for lead in other]
    for lead in first:
        check_sample([lead])


async def test_an_interrupted_seed_leaves_a_prefix_the_next_run_completes(
    db: LeadDB, pg: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = lead_batch

    def failing(slug: str, start: int, count: int, *args: Any, **kwargs: Any) -> Any:
        if start == 600:
            raise RuntimeError("generator crashed")
        return real(slug, start, count, *args, **kwargs)

    monkeypatch.setattr(seeding_load, "lead_batch", failing)
    with pytest.raises(RuntimeError, match="generator crashed"):
        await seed(db, organizations=1, leads=1200, batch_size=200, concurrency=3)
    committed = await pg.fetchval("SELECT count(*) FROM leads")
    assert committed in (200, 400, 600)  # whole batches, in order, none after the failure

    monkeypatch.setattr(seeding_load, "lead_batch", real)
    resumed = await seed(db, organizations=1, leads=1200, batch_size=200)
    assert resumed.leads_added == 1200 - committed
    assert await lead_counts(pg) == {"seed-001": (1200, 1200)}


def test_seed_command_prints_progress_and_throughput(
    settings: LeadDBSettings, servers: TestServers
) -> None:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """The leaddb CLI's seed command alone."""

    register(app)
    assert settings.database_url is not None
    arguments = ["seed", "--organizations", "2", "--leads", "250", "--prefix", "cli"]
    arguments += ["--database-url", settings.database_url.get_secret_value()]
    arguments += ["--redis-url", servers.redis_url]
    first = CliRunner().invoke(app, arguments)
    assert first.exit_code == 0, first.output
    assert "cli-001" in first.output
    assert "cli-002" in first.output
    assert re.search(r"500 leads in [\d.]+s: [\d,]+ rows/s", first.output), first.output
    again = CliRunner().invoke(app, arguments)
    assert again.exit_code == 0, again.output
    assert "nothing to add" in again.output


def test_seed_command_refuses_a_bad_prefix(settings: LeadDBSettings) -> None:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """The leaddb CLI's seed command alone."""

    register(app)
    result = CliRunner().invoke(app, ["seed", "--prefix", "Not A Slug"])
    assert result.exit_code == 2
    assert "--prefix" in result.output


async def test_progress_advances_per_chunk_and_ends_on_the_summarys_rate(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    advanced: list[int] = []

    def progress(count: int) -> None:
        advanced.append(count)

    result = await seed(db, organizations=1, leads=5_000, batch_size=5_000, on_progress=progress)
    # One batch, one transaction: the bar moved with each chunk, not once at the commit.
    assert advanced == [stop - start for start, stop in chunk_bounds(5_000)]
    assert len(advanced) > 1
    assert sum(advanced) == result.leads_added == 5_000

    console = Console(record=True, width=120)
    shown = await seed_with_progress(db, console, organizations=2, leads=5_000, batch_size=2_500)
    output = console.export_text()
    assert shown.leads_added == 5_000  # seed-001 has its leads already
    assert f"5000/5000 {shown.rows_per_second:,.0f} rows/s" in output
