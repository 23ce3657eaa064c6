"""leaddb's tenancy, row-level-security, cache and bulk suites through PgBouncer (issue #23).

``python -m tests.scale.run_through_pooler [-- <pytest args>]`` (``nox -s scale`` runs it): starts
a primary and PgBouncer 1.18 in front of it (``pool_mode = transaction``, ``default_pool_size =
2``: tests/scale/postgres_topology.py), runs pytest with ``LEADDB_TEST_DATABASE_URL`` on the
primary and ``LEADDB_TEST_POOLER_URL`` on PgBouncer, so every ``LeadDB`` the suites open goes
through PgBouncer with ``transaction_pooler=True`` (creating, migrating and cleaning the run's
database stay direct: leaddb.testing), stops both whatever happens and exits with pytest's code.

Tests whose assertion is about a direct session by nature (the pool's own server connections,
their pids, session-level state) are marked ``direct_connection`` and deselected here; each
says why. Redis is ``LEADDB_TEST_REDIS_URL``'s, else an embedded one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from types import FrameType

from . import postgres_topology

SUITES = [
    "tests/integration/test_tenant_boundary.py",
    "tests/integration/test_repositories_tenancy.py",
    "tests/integration/test_row_level_security.py",
    "tests/integration/test_cache.py",
    "tests/integration/test_cache_concurrency.py",
    "tests/integration/test_cache_failure.py",
    "tests/integration/test_cache_values.py",
    "tests/integration/test_bulk_copy.py",
    "tests/integration/test_bulk_writes.py",
    "tests/integration/test_transaction_pooler.py",
]
DESELECT = ["-m", "not direct_connection"]


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> int:
    args = argv[1:] if argv[:1] == ["--"] else argv
    # A later -m of the caller's replaces this one (pytest keeps the last).
    pytest_args = [*DESELECT, *(args or ["-q", *SUITES])]
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    topology = postgres_topology.start(replica=False)
    try:
        env = {
            **os.environ,
            "LEADDB_TEST_DATABASE_URL": topology.url(topology.primary_port, "postgres"),
            "LEADDB_TEST_POOLER_URL": topology.url(topology.bouncer_port, "postgres"),
        }
        env.pop("LEADDB_SCALE", None)  # tests/scale itself is not what runs here
        print(
            f"PgBouncer {topology.bouncer_url} (transaction, pool "
            f"{postgres_topology.POOL_SIZE}) in front of {topology.primary_url}",
            flush=True,
        )
        # This interpreter's pytest with this run's arguments: nothing from outside.
        command = [sys.executable, "-m", "pytest", *pytest_args]
        return subprocess.run(command, env=env).returncode  # noqa: S603
    finally:
        topology.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
