"""``leaddb demo``: what a service does with leaddb, end to end, on real servers.

Connects (embedded servers unless URLs are configured), migrates, seeds four organizations with
users, leads, scoring rules, n8n workflows and runs, campaigns, communications and notes (only
what is missing, so it runs again on the same data), then does what a service does and prints
each step as a table: reads and writes in a tenant, a rescoring run, a campaign enrollment and
its funnel, the reporting views, the cache's latency, a user session and tenant isolation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from urllib.parse import unquote

from rich.console import Console
from rich.table import Table

from leaddb.db import LeadDB
from leaddb.demo.data import ActivityCounts, populate
from leaddb.demo.probes import Latency, cache_warmup, isolation, session
from leaddb.demo.tour import RescoreOutcome, Tenant, enroll, reads_and_writes, rescore, views
from leaddb.models import Lead
from leaddb.seed import progress_bar, seed_with_progress
from leaddb.settings import LeadDBSettings

__all__ = ["DemoReport", "run_demo"]

ORGANIZATIONS = 4
LEADS_PER_ORGANIZATION = 1_250
USERS_PER_ORGANIZATION = 5


@dataclass
class DemoReport:
    """What the demo did, for callers (and tests) that want more than the printed tables."""

    seconds: float = 0.0
    leads_added: int = 0
    activity_rows_added: int = 0
    rescore: RescoreOutcome | None = None
    cache: list[Latency] = field(default_factory=list)
    cross_tenant_read: Lead | None = None
    cross_tenant_checked: bool = False


async def run_demo(
    settings: LeadDBSettings,
    console: Console,
    *,
    organizations: int = ORGANIZATIONS,
    leads_per_organization: int = LEADS_PER_ORGANIZATION,
) -> DemoReport:
    """Run the whole demo against ``settings``' servers, printing to ``console``."""
    if organizations < 2:
        raise ValueError("the demo needs two organizations to show tenant isolation")
    started = time.perf_counter()
    report = DemoReport()
    async with await LeadDB.connect(settings) as db:
        servers = _servers_table(db)
        servers.add_row("schema revision", str(await db.migrate()))
        console.print(servers)

        console.rule("seeding (only what is missing)")
        seeded = await seed_with_progress(
            db,
            console,
            organizations=organizations,
            leads=leads_per_organization,
            prefix="demo",
            users_per_organization=USERS_PER_ORGANIZATION,
            batch_size=leads_per_organization,
        )
        report.leads_added = seeded.leads_added
        tenants = [Tenant(item.organization, item.users) for item in seeded.organizations]
        written: list[ActivityCounts] = []
        with progress_bar(console, rate=False) as progress:
            task = progress.add_task("rules, workflows, campaigns", total=len(tenants))
            for tenant in tenants:
                written.append(await populate(db, tenant.organization, tenant.users))
                progress.advance(task)
        report.activity_rows_added = sum(counts.total for counts in written)
        console.print(await _data_table(db, tenants, report))

        console.rule("what a service does")
        home, other = tenants[0], tenants[1]
        console.print(await reads_and_writes(db, home))
        rescored, report.rescore = await rescore(db, home)
        console.print(rescored)
        console.print(await enroll(db, home))
        for table in await views(db, home):
            console.print(table)
        cache_table, report.cache = await cache_warmup(db, home)
        console.print(cache_table)
        console.print(await session(db, home))
        isolated, report.cross_tenant_read = await isolation(db, home, other)
        report.cross_tenant_checked = True
        console.print(isolated)
    report.seconds = time.perf_counter() - started
    console.print(f"[bold]leaddb demo finished in {report.seconds:.1f}s[/]")
    return report


def _servers_table(db: LeadDB) -> Table:
    info = db.info
    table = Table(title="leaddb demo: servers", show_header=False, title_justify="left")
    table.add_column()
    # Folded, not cut, and not percent-encoded: the embedded server's URL carries its socket
    # directory as ?host=/path, which is what a reader needs to see whole.
    table.add_column(overflow="fold")
    table.add_row("PostgreSQL", f"{info.postgres_version} at {unquote(info.database_url)}")
    table.add_row("Redis", f"{info.redis_version or 'unreachable'} at {info.redis_url}")
    table.add_row("embedded", "yes" if info.embedded else "no")
    return table


async def _data_table(db: LeadDB, tenants: list[Tenant], report: DemoReport) -> Table:
    table = Table(
        title="demo data (totals per organization)",
        title_justify="left",
        caption=f"this run added {report.leads_added:,} leads and "
        f"{report.activity_rows_added:,} other rows (every write also audited)",
    )
    table.add_column("organization", overflow="fold")
    for name in ("users", "leads", "rules", "runs", "enrolled", "messages", "notes"):
        table.add_column(name, justify="right")
    for tenant in tenants:
        async with db.tenant(tenant.organization.id) as uow:
            counts = [
                await uow.users.count(),
                await uow.leads.count(),
                await uow.scoring_rules.count(),
                await uow.workflow_executions.count(),
                await uow.campaign_leads.count(),
                await uow.communications.count(),
                await uow.notes.count(),
            ]
        table.add_row(tenant.organization.name, *(f"{count:,}" for count in counts))
    return table
