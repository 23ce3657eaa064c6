"""The leaddb benchmark: ``nox -s bench`` (or ``python -m bench.run``), one script, one run.

Against one PostgreSQL and one Redis (embedded ones unless URLs are given), on a database of its
own seeded with 100,000 leads: raw asyncpg as the floor, SQLAlchemy's ORM, advanced-alchemy and
fastcrud as the peers, and leaddb. Prints a table and writes ``docs/benchmarks.md``.

    nox -s bench                        # full run, embedded servers
    nox -s bench -- --quick             # ~1 minute smoke run
    nox -s bench -- --database-url postgresql://postgres@127.0.0.1:5432/postgres \\
                    --redis-url redis://127.0.0.1:6379/13
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from bench import (
    later,
    ops_bulk,
    ops_cache,
    ops_orm,
    ops_reads,
    ops_telemetry,
    ops_writes,
    peers,
    servers,
)
from bench.context import Bench, Sizes
from bench.report import RunInfo, markdown, stdout_report
from bench.seed import seed
from bench.targets import targets
from leaddb.settings import asyncpg_dsn, masked_url

Section = Callable[[Bench], Awaitable[None]]

SECTIONS: list[tuple[str, Section]] = [
    ("get", ops_reads.get_by_id),
    ("list", ops_reads.list_by_status),
    ("create", ops_writes.create_one),
    ("update", ops_writes.update_one),
    ("cache", ops_cache.cache),
    ("rls", ops_cache.row_level_security),
    ("telemetry", ops_telemetry.telemetry_cost),
    ("orm", ops_orm.session_select),
    # Last: it adds tens of thousands of rows, which the reads above should not see.
    ("create_many", ops_bulk.create_many),
]
"""The sections of issues 5, 6 and 11, in order; ``bench.later`` adds scoring and soak."""

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"

logger = logging.getLogger("bench")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="nox -s bench --",
        description="leaddb against raw asyncpg and the peers; writes docs/benchmarks.md.",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("LEADDB_BENCH_DATABASE_URL") or None,
        help="a PostgreSQL URL whose role may create databases (env LEADDB_BENCH_DATABASE_URL); "
        "default: start an embedded PostgreSQL",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("LEADDB_BENCH_REDIS_URL") or None,
        help="a Redis URL (env LEADDB_BENCH_REDIS_URL); default: start an embedded Redis",
    )
    parser.add_argument("--quick", action="store_true", help="a ~1 minute smoke run")
    parser.add_argument("--leads", type=int, help="leads to seed (default 100,000; quick 20,000)")
    parser.add_argument(
        "--iterations",
        type=int,
        help="timed calls per contender of gets (default 2,000; quick 200); creates and "
        "updates take a quarter, first pages and get_many a tenth, deep pages a fortieth",
    )
    parser.add_argument(
        "--bulk-rows", type=int, help="rows per create_many (default 10,000; quick 2,000)"
    )
    parser.add_argument(
        "--bulk-repeats",
        type=int,
        help="create_many runs per contender (default 7: the seven contenders rotate, so each "
        "runs once in each place of a round; quick 1)",
    )
    parser.add_argument(
        "--seed-leads",
        type=int,
        help="leads `leaddb seed` writes in its section, last (default 1,000,000; quick 50,000)",
    )
    parser.add_argument(
        "--only",
        help="comma-separated sections to run (of: "
        + ", ".join(name for name, _ in SECTIONS + later.SECTIONS + later.LAST_SECTIONS)
        + "); for profiling, the report then covers just those",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="where to write the markdown report (default docs/benchmarks.md)",
    )
    return parser.parse_args(argv)


def sizes_of(args: argparse.Namespace) -> Sizes:
    quick = bool(args.quick)
    return Sizes(
        leads=args.leads or (20_000 if quick else 100_000),
        iterations=args.iterations or (200 if quick else 2_000),
        bulk_rows=args.bulk_rows or (2_000 if quick else 10_000),
        bulk_repeats=args.bulk_repeats or (1 if quick else 7),
        write_rounds=1 if quick else 8,
        seed_leads=args.seed_leads or (50_000 if quick else 1_000_000),
    )


def command_line(argv: list[str]) -> str:
    """The command as typed, passwords masked."""
    shown = []
    for arg in argv:
        shown.append(masked_url(arg) if "://" in arg else arg)
    joined = shlex.join(shown)
    if os.environ.get("VIRTUAL_ENV", "").rstrip("/").endswith(os.path.join(".nox", "bench")):
        return f"nox -s bench -- {joined}".rstrip(" -")
    return f"python -m bench.run {joined}".rstrip()


def _progress(started: float, text: str) -> None:
    print(f"[{time.perf_counter() - started:6.1f}s] {text}", file=sys.stderr, flush=True)


async def run(args: argparse.Namespace, argv: list[str]) -> int:
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    sizes = sizes_of(args)
    # create_many stays last: the rows it adds would change what the sections after it read.
    chosen = SECTIONS[:-1] + later.SECTIONS + SECTIONS[-1:] + later.LAST_SECTIONS
    if args.only:
        wanted = {name.strip() for name in args.only.split(",")}
        unknown = wanted - {name for name, _ in chosen}
        if unknown:
            print(f"unknown sections: {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        chosen = [(name, section) for name, section in chosen if name in wanted]
    found_peers = peers.load_peers()
    for peer in found_peers.values():
        if not peer.available:
            _progress(started, f"peer {peer.name} unavailable: {peer.reason}")
    place = await asyncio.to_thread(servers.start, args.database_url, args.redis_url)
    where = "embedded servers in " + str(place.scratch) if place.embedded else "given servers"
    _progress(started, f"servers: {where}")
    closers: list[Callable[[], Awaitable[object]]] = []
    try:
        dsn_url = await servers.create_database(place)
        dsn = asyncpg_dsn(dsn_url)
        _progress(started, f"database {place.database} created; migrating")
        db = await servers.connect(place, cache_enabled=False)
        closers.append(db.close)
        await db.migrate()
        db_cached = await servers.connect(place, cache_enabled=True)
        closers.append(db_cached.close)
        db_without_rls = await servers.connect(place, cache_enabled=False, row_level_security=False)
        closers.append(db_without_rls.close)
        raw_pool = await asyncpg.create_pool(dsn, min_size=2, max_size=4)
        closers.append(raw_pool.close)
        engine = peers.engine(servers.sqlalchemy_url(dsn_url))
        closers.append(engine.dispose)
        _progress(started, f"seeding {sizes.leads:,} leads")
        began = time.perf_counter()
        seeded = await seed(db, dsn, sizes.leads)
        seeding = time.perf_counter() - began
        place.tenants.update(seeded.organizations)
        _progress(started, f"seeded at {seeded.rows_per_second:,.0f} rows/s")
        bench = Bench(
            sizes=sizes,
            servers=place,
            db=db,
            db_cached=db_cached,
            db_without_rls=db_without_rls,
            raw_pool=raw_pool,
            engine=engine,
            peers=found_peers,
            seeded=seeded,
            dsn=dsn,
        )
        section_seconds: dict[str, float] = {"seed (organizations, COPY, ANALYZE)": seeding}
        for name, section in chosen:
            _progress(started, f"{name} ...")
            began = time.perf_counter()
            await section(bench)
            section_seconds[name] = time.perf_counter() - began
        by_key = {result.key: result for result in bench.results}
        found = targets(by_key) + later.targets(by_key)
        if args.only:
            found = [t for t in found if t.passed is not None]
        info = RunInfo(
            command=command_line(argv),
            started=started_at,
            postgres=db.info.postgres_version,
            redis=db.info.redis_version or "unreachable",
            postgres_where=place.describe()[0],
            redis_where=place.describe()[1],
            embedded_postgres=place.embedded_postgres is not None,
            embedded_redis=place.embedded_redis is not None,
            leads=sizes.leads,
            seed_rows_per_second=seeded.rows_per_second,
            sizes=(
                f"{sizes.leads:,} leads; {sizes.iterations:,} timed calls per contender "
                f"(lists {sizes.list_iterations:,}, deep pages {sizes.deep_iterations:,}), "
                f"warm-up {sizes.warmup}, blocks of <= {sizes.block}; creates and updates in "
                f"{sizes.write_rounds} rounds on new connections; create_many "
                f"{sizes.bulk_rows:,} rows x {sizes.bulk_repeats}"
            ),
            facts=bench.facts,
            peers=found_peers,
            section_seconds=section_seconds,
        )
        info.seconds = time.perf_counter() - started
        print(stdout_report(bench.results, found, info))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(markdown(bench.results, found, info))
        _progress(started, f"wrote {args.output}")
    finally:
        for close in reversed(closers):
            try:
                await close()
            except Exception as error:
                logger.warning("closing: %r", error)
        try:
            deleted = await servers.clean_redis(place.redis_url, place.tenants)
            await servers.drop_database(place)
            _progress(started, f"dropped {place.database}; deleted {deleted} Redis keys")
        finally:
            await asyncio.to_thread(servers.stop, place)
    return 0


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    arguments = sys.argv[1:] if argv is None else argv
    return asyncio.run(run(parse(arguments), arguments))


if __name__ == "__main__":
    sys.exit(main())
