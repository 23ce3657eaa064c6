"""``leaddb demo`` against the test servers: it completes, prints every section, proves tenant
isolation, and runs again on the same data without adding anything."""

from __future__ import annotations

import re

import asyncpg
from rich.console import Console

from leaddb import LeadDBSettings
from leaddb.demo import run_demo

SECTIONS = (
    "leaddb demo: servers",
    "demo data (totals per organization)",
    "tenant-scoped reads and writes",
    "leads.get(id)",
    "leads.list(status=qualified, limit=25) + next page",
    "StaleVersionError",
    "leads.search(",
    "rescoring:",
    "campaign enrollment and funnel",
    "pipeline view:",
    "campaign performance view:",
    "n8n workflows:",
    "cache warm-up:",
    "warm cache: Redis hit",
    "user session:",
    "tenant isolation:",
    "leaddb demo finished in",
)


async def test_demo_completes_prints_every_section_and_isolates_tenants(
    settings: LeadDBSettings, pg: asyncpg.Connection
) -> None:
    console = Console(record=True, width=120)
    report = await run_demo(settings, console)
    output = console.export_text()

    for section in SECTIONS:
        assert section in output, section
    assert report.cross_tenant_checked
    assert report.cross_tenant_read is None
    assert report.leads_added == 5000
    assert report.activity_rows_added > 5000
    assert report.rescore is not None
    assert report.rescore.scored >= 1250
    cold, warm = report.cache[1], report.cache[2]
    assert (cold.misses, warm.hits) == (len(cold.samples), len(warm.samples))
    assert await pg.fetchval("SELECT count(*) FROM organizations") == 4
    assert await pg.fetchval("SELECT count(*) FROM leads") == 5001  # and the demo's own lead
    for table in ("campaign_leads", "communications", "lead_notes", "workflow_executions"):
        assert await pg.fetchval(f"SELECT count(*) FROM {table}") > 0, table
    assert await pg.fetchval("SELECT count(*) FROM lead_scoring_rules") == 36


async def test_demo_runs_again_on_the_same_data_without_adding_any(
    settings: LeadDBSettings, pg: asyncpg.Connection
) -> None:
    await run_demo(settings, Console(record=True, width=120), leads_per_organization=200)
    counts = await _row_counts(pg)

    console = Console(record=True, width=120)
    again = await run_demo(settings, console, leads_per_organization=200)
    assert again.leads_added == 0
    assert again.activity_rows_added == 0
    assert again.cross_tenant_read is None
    assert "this run added 0 leads and 0 other rows" in console.export_text()
    after = await _row_counts(pg)
    for table in ("organizations", "users", "leads", "lead_scoring_rules", "campaigns"):
        assert after[table] == counts[table], table


async def _row_counts(pg: asyncpg.Connection) -> dict[str, int]:
    tables = ("organizations", "users", "leads", "lead_scoring_rules", "campaigns")
    return {table: await pg.fetchval(f"SELECT count(*) FROM {table}") for table in tables}


# What the demo shortens on purpose: a session token and ids, to their first characters.
_ABBREVIATED = re.compile(r"(token [\w-]+…|[0-9a-f]{8}…)")


async def test_demo_reads_whole_at_80_columns(settings: LeadDBSettings) -> None:
    # 80 columns: what rich uses outside a terminal (a pipe, CI, nox's output).
    console = Console(record=True, width=80)
    await run_demo(settings, console, leads_per_organization=200)
    output = console.export_text()
    lines = output.splitlines()
    assert max(len(line) for line in lines) <= 80
    for line in lines:
        cut = line.count("…") - len(_ABBREVIATED.findall(line))
        assert cut == 0, f"cut at 80 columns: {line}"
    for measure in ("enrolled", "contacted", "responded", "converted", "conversion rate"):
        assert measure in output
    assert "%2F" not in output  # the embedded server's socket directory, not percent-encoded
