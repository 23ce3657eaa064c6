"""Developer and CI tasks. `nox -s tests` and `nox -s demo` are the README's two commands."""

from __future__ import annotations

import hashlib
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.error_on_missing_interpreters = True

BENCH_PEERS = ["advanced-alchemy>=0.20", "fastcrud>=0.15"]
DEPTRY = "deptry==0.25.1"


def install_once(session: nox.Session, *requirements: str) -> None:
    """Install ``requirements`` unless this (reused) venv already has them for this pyproject.

    The project is installed editable, so a change to the code needs no reinstall; a change to
    pyproject.toml (dependencies, extras, entry points) or to ``requirements`` does.
    """
    stamp = Path(session.virtualenv.location) / ".leaddb-installed"
    digest = hashlib.sha256(Path("pyproject.toml").read_bytes())
    digest.update("\0".join(requirements).encode())
    if stamp.is_file() and stamp.read_text() == digest.hexdigest():
        session.log("installed already (pyproject.toml unchanged): not reinstalling")
        return
    session.install(*requirements)
    stamp.write_text(digest.hexdigest())


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite against real servers (embedded ones unless LEADDB_TEST_* are set)."""
    # pip too: the wheel tests build and install leaddb's wheel with the suite's own
    # interpreter, and a venv that uv made has no pip of its own.
    session.install("-e", ".[dev,embedded]", "pip")
    session.run("pytest", *(session.posargs or ["-q"]))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and formatting), lint-imports (the layers contract in pyproject), and
    deptry: the dependencies are what the code imports."""
    # Pinned: ruff's formatter output changes between releases, and CI must judge the code,
    # not the day it ran.
    session.install("ruff==0.17.6", "import-linter>=2.1")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    # Reads leaddb's source from the checkout (the current directory): nothing to install.
    session.run("lint-imports")
    # deptry maps imports to distributions through what is installed, so the project (every
    # extra a module imports from) is installed with it.
    session.install(DEPTRY, "-e", ".[cli,embedded,dev]")
    session.run("deptry", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the library, the tests, the stubs and the example service."""
    session.install("-e", ".[dev,embedded]")
    session.run("mypy", "--strict")


@nox.session(reuse_venv=True)
def demo(session: nox.Session) -> None:
    """`leaddb demo`: embedded servers unless LEADDB_DATABASE_URL / LEADDB_REDIS_URL are set.

    The venv is kept between runs, and installed into again only when pyproject.toml changed:
    a rerun costs the demo's own seconds.
    """
    install_once(session, "-e", ".[embedded,cli]")
    session.run("leaddb", "demo", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmark against raw asyncpg and the peers; writes docs/benchmarks.md.

    Embedded servers unless --database-url / --redis-url (or LEADDB_BENCH_DATABASE_URL /
    LEADDB_BENCH_REDIS_URL) are given: `nox -s bench -- --quick`, `nox -s bench -- --help`.
    The peers are installed here only, one at a time: one that cannot be installed is reported
    as unavailable by the script, which carries on without it.
    """
    # The OpenTelemetry SDK for the telemetry section (issue 24): a service brings its own.
    session.install("-e", ".[embedded,cli,otel]", "opentelemetry-sdk>=1.27")
    for peer in BENCH_PEERS:
        session.install(peer, success_codes=[0, 1, 2])
    session.run("python", "-m", "bench.run", *session.posargs)


@nox.session
def scale(session: nox.Session) -> None:
    """The scale-out suite (tests/scale): starts each topology on this machine and stops it.

    PostgreSQL: PgBouncer (Debian's package) and a primary with a synchronous replica, from the
    machine's PostgreSQL binaries (tests/scale/postgres_topology.py), with Redis from
    LEADDB_TEST_REDIS_URL, else the embedded one. Redis: a 3-master Redis Cluster and a primary
    + replica + Sentinel from the machine's redis-server/redis-cli (Debian's redis-server and
    redis-tools; tests/scale/redis_topology.py). Then the tenancy, row-level-security, cache and
    bulk suites of tests/integration through PgBouncer (tests/scale/run_through_pooler.py), and
    the cache and session suites (tests/integration/test_cache*.py, test_session*.py) once more,
    on a 3-master Redis Cluster of their own (tests/scale/run_on_cluster.py), with nothing skipped.
    """
    session.install("-e", ".[dev,embedded]")
    # PostgreSQL's topologies and Redis's in runs of their own, so that neither is running
    # while the other's tests kill, promote and fail over servers, and each run needs only
    # its own servers' memory and ports.
    redis_tests = ["tests/scale/test_redis_cluster.py", "tests/scale/test_redis_sentinel.py"]
    env = {"LEADDB_SCALE": "1"}
    if session.posargs:
        session.run("pytest", "-q", *session.posargs, env=env)
        return
    session.run(
        "pytest", "-q", "tests/scale", *(f"--ignore={path}" for path in redis_tests), env=env
    )
    # leaddb's tenancy, row-level-security, cache and bulk suites through a PgBouncer of their
    # own (transaction, pool 2) with transaction_pooler; stops it whatever happens.
    session.run("python", "-m", "tests.scale.run_through_pooler", env=env)
    session.run("pytest", "-q", *redis_tests, env=env)
    # Starts the cluster, runs the suites with LEADDB_TEST_REDIS_URL=redis+cluster://... (the
    # machine's or an embedded PostgreSQL, as LEADDB_TEST_DATABASE_URL says), stops it.
    session.run("python", "-m", "tests.scale.run_on_cluster")


@nox.session
def migrations(session: nox.Session) -> None:
    """upgrade -> downgrade -> upgrade, and autogenerate finds no difference from the models."""
    session.install("-e", ".[dev,embedded]")
    session.run("pytest", "-q", "tests/integration/test_migrations.py", *session.posargs)


@nox.session
def soak(session: nox.Session) -> None:
    """The soak test at length (60 s by default), its figures written to docs/soak.md."""
    session.install("-e", ".[dev,embedded]")
    session.run(
        "pytest",
        "-q",
        "-s",
        "tests/integration/test_soak.py",
        env={
            "LEADDB_SOAK_SECONDS": session.posargs[0] if session.posargs else "60",
            "LEADDB_SOAK_REPORT": "docs/soak.md",
        },
    )
