"""``leaddb demo``: what a service does with leaddb, end to end, on real servers."""

from __future__ import annotations

import time

from rich.console import Console
from rich.table import Table

from leaddb.db import LeadDB
from leaddb.settings import LeadDBSettings


async def run_demo(settings: LeadDBSettings, console: Console) -> None:
    started = time.perf_counter()
    async with await LeadDB.connect(settings) as db:
        info = db.info
        table = Table(title="leaddb demo: servers", show_header=False)
        table.add_row("PostgreSQL", f"{info.postgres_version} at {info.database_url}")
        table.add_row("Redis", f"{info.redis_version or 'unreachable'} at {info.redis_url}")
        table.add_row("embedded", "yes" if info.embedded else "no")
        revision = await db.migrate()
        table.add_row("schema revision", str(revision))
        console.print(table)
    console.print(f"done in {time.perf_counter() - started:.1f}s")
