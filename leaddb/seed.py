"""``leaddb seed``: realistic organizations, users and leads, fast and repeatable.

``leaddb seed --organizations 3 --leads 100000`` creates (or reuses, by slug) the organizations
``seed-001`` .. ``seed-003``, gives each five users, and tops each up to 100,000 leads through
the repositories' bulk path, with a progress bar and the throughput at the end. Running it again
writes nothing; a larger ``--leads`` adds only the difference. ``register(app)`` adds the
command to the ``leaddb`` CLI.
"""

from __future__ import annotations

import contextlib
import gc
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from leaddb.cli_support import DatabaseUrl, RedisUrl, console, fail, load_settings, run
from leaddb.seeding.defaults import DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY

# The `leaddb` command imports this module to register `seed`: what the command runs is imported
# when it runs, so `leaddb --help` loads neither the database stack nor rich's progress bars.
if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, Task
    from rich.table import Table

    from leaddb.db import LeadDB
    from leaddb.seeding import SeedResult
    from leaddb.settings import LeadDBSettings

__all__ = ["progress_bar", "register", "result_table", "seed_with_progress"]


def average_rate(task: Task) -> float | None:
    """Rows per second since the task started: what the summary line reports at the end (its
    ``rate`` field once set), not rich's speed over the last few updates, which swings with
    each chunk."""
    final = task.fields.get("rate")
    if isinstance(final, float):
        return final
    elapsed = task.elapsed
    if not elapsed or not task.completed:
        return None
    return task.completed / elapsed


def progress_bar(console: Console, *, rate: bool = True) -> Progress:
    """A progress bar: description, bar, done/total, rows/s (when ``rate``), elapsed."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = average_rate(task)
            text = "" if speed is None else f"{speed:,.0f} rows/s"
            return Text(text, style="progress.data.speed")

    columns: list[ProgressColumn] = [
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
    ]
    if rate:
        columns.append(RateColumn())
    columns.append(TimeElapsedColumn())
    return Progress(*columns, console=console)


async def seed_with_progress(
    db: LeadDB,
    console: Console,
    *,
    organizations: int,
    leads: int,
    prefix: str = "seed",
    users_per_organization: int = 5,
    batch_size: int = DEFAULT_BATCH_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> SeedResult:
    """``leaddb.seeding.seed`` with a rich progress bar of the leads written.

    The bar advances with each chunk PostgreSQL has inserted; its clock starts when the leads
    do (not while organizations and users are prepared), and it ends on the summary's rate.
    """
    from leaddb.seeding import seed

    with progress_bar(console) as progress:
        task = progress.add_task("leads", total=None, start=False)

        def planned(total: int) -> None:
            progress.update(task, total=total)
            progress.start_task(task)

        def advanced(count: int) -> None:
            progress.advance(task, count)

        result = await seed(
            db,
            organizations=organizations,
            leads=leads,
            prefix=prefix,
            users_per_organization=users_per_organization,
            batch_size=batch_size,
            concurrency=concurrency,
            on_planned=planned,
            on_progress=advanced,
        )
        progress.update(task, rate=result.rows_per_second)
        return result


def result_table(result: SeedResult, title: str = "seeded organizations") -> Table:
    """One row per organization: slug, name, users, leads before and after."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("slug")
    table.add_column("name")
    table.add_column("new?")
    table.add_column("users", justify="right")
    table.add_column("leads before", justify="right")
    table.add_column("leads after", justify="right")
    for seeded in result.organizations:
        table.add_row(
            seeded.organization.slug,
            seeded.organization.name,
            "created" if seeded.created else "existing",
            str(len(seeded.users)),
            f"{seeded.leads_before:,}",
            f"{seeded.leads_after:,}",
        )
    return table


def throughput_line(result: SeedResult) -> str:
    """``N leads in S s: R rows/s`` (or that nothing was needed)."""
    if result.leads_added == 0:
        return "nothing to add: every organization already has its leads"
    return (
        f"{result.leads_added:,} leads in {result.lead_seconds:.1f}s: "
        f"{result.rows_per_second:,.0f} rows/s (each lead also writes one audit row)"
    )


@contextlib.contextmanager
def _few_collections() -> Iterator[None]:
    """Fewer garbage collections while seeding, for this command's process only.

    A seed allocates millions of short-lived objects (payloads, rows, models), so the collector
    would run over and over, each time scanning everything the process holds; the objects
    alive now are frozen out of its scans and it runs a fiftieth as often (measured: 12% more
    rows/s). Both are undone afterwards.
    """
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


async def run_seed(
    settings: LeadDBSettings,
    console: Console,
    *,
    organizations: int,
    leads: int,
    prefix: str = "seed",
    users_per_organization: int = 5,
    batch_size: int = DEFAULT_BATCH_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> SeedResult:
    """Connect, migrate, seed with a progress bar, and print the result."""
    from leaddb.db import LeadDB

    with _few_collections():
        async with await LeadDB.connect(settings) as db:
            await db.migrate()
            console.print(f"seeding {db.info.database_url}")
            result = await seed_with_progress(
                db,
                console,
                organizations=organizations,
                leads=leads,
                prefix=prefix,
                users_per_organization=users_per_organization,
                batch_size=batch_size,
                concurrency=concurrency,
            )
    console.print(result_table(result))
    console.print(throughput_line(result))
    return result


def register(app: typer.Typer) -> None:
    """Add the ``seed`` command to ``app`` (the ``leaddb`` CLI)."""
    app.command("seed")(seed_command)


def seed_command(
    organizations: Annotated[
        int, typer.Option("--organizations", "-o", min=0, max=10_000, help="Organizations.")
    ] = 3,
    leads: Annotated[
        int,
        typer.Option(
            "--leads", "-l", min=0, max=100_000_000, help="Leads per organization (topped up)."
        ),
    ] = 1_000,
    users: Annotated[int, typer.Option(min=0, max=1_000, help="Users per organization.")] = 5,
    prefix: Annotated[
        str, typer.Option(help="Slug prefix: organizations are <prefix>-001, <prefix>-002, ...")
    ] = "seed",
    batch_size: Annotated[
        int, typer.Option(min=200, max=100_000, help="Leads per COPY batch and transaction.")
    ] = DEFAULT_BATCH_SIZE,
    concurrency: Annotated[
        int, typer.Option(min=1, max=16, help="Batches in flight (they commit in order).")
    ] = DEFAULT_CONCURRENCY,
    database_url: DatabaseUrl = None,
    redis_url: RedisUrl = None,
) -> None:
    """Create realistic organizations, users and leads; re-running adds only what is missing."""
    from leaddb.models.organization import SLUG_PATTERN

    if len(prefix) > 50 or not re.fullmatch(SLUG_PATTERN, f"{prefix}-001"):
        fail(f"--prefix {prefix!r}: use up to 50 lowercase letters, digits and dashes")
    loaded = load_settings(database_url, redis_url)
    run(
        lambda: run_seed(
            loaded.settings,
            console(),
            organizations=organizations,
            leads=leads,
            prefix=prefix,
            users_per_organization=users,
            batch_size=batch_size,
            concurrency=concurrency,
        ),
        loaded,
    )
