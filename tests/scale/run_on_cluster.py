"""The cache and session suites on a local 3-master Redis Cluster (`nox -s scale`).

``python -m tests.scale.run_on_cluster [pytest arguments]`` starts a ``RedisCluster3`` from the
machine's redis-server/redis-cli, runs pytest with ``LEADDB_TEST_REDIS_URL`` set to its
``redis+cluster://`` URL (PostgreSQL from ``LEADDB_TEST_DATABASE_URL``, else embedded, as the
suite does everywhere), stops the cluster whatever happens, and exits with pytest's code.
Without arguments it runs the cache and session suites (tests/integration/test_cache*.py and
test_session*.py), quietly.

On a cluster URL every multi-key command leaddb sends must stay in one slot, and the raw
client the tests inspect Redis with is a ``RedisCluster`` (tests/conftest.py). The suites'
"lean" transport case is not generated there (LeanRedis speaks to one Redis; leaddb takes
redis-py on a cluster URL whatever LEADDB_REDIS_CLIENT says), so nothing is skipped: a skipped
test would not be a test that passed on the cluster, and a run with one fails here.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from types import FrameType

import pytest

from .redis_topology import RedisCluster3

ROOT = Path(__file__).resolve().parents[2]
SUITES = ("tests/integration/test_cache*.py", "tests/integration/test_session*.py")


def default_arguments() -> list[str]:
    """``-q`` and the cache and session test modules, as paths relative to the repository."""
    found = sorted(
        {str(path.relative_to(ROOT)) for pattern in SUITES for path in ROOT.glob(pattern)}
    )
    if not found:
        raise FileNotFoundError(f"no test module matches {SUITES} under {ROOT}")
    return ["-q", *found]


class NothingSkipped:
    """A pytest plugin: a skipped (or xfailed) test fails the run, since it did not pass."""

    def __init__(self) -> None:
        self.skipped: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped:
            self.skipped.append(report.nodeid)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.skipped and exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.skipped:
            terminalreporter.write_line(
                f"run_on_cluster: {len(self.skipped)} test(s) skipped, which fails this run: "
                + ", ".join(self.skipped),
                red=True,
            )


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # As Ctrl-C: pytest ends the session (a SystemExit would only fail the running test), and
    # the finally below stops the cluster.
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    arguments = [argument for argument in argv if argument != "--"] or default_arguments()
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    cluster = RedisCluster3.start()
    previous = os.environ.get("LEADDB_TEST_REDIS_URL")
    try:
        os.environ["LEADDB_TEST_REDIS_URL"] = cluster.url
        print(f"run_on_cluster: a 3-master Redis Cluster at {cluster.url}", flush=True)
        return int(pytest.main(["-p", "no:cacheprovider", *arguments], plugins=[NothingSkipped()]))
    finally:
        if previous is None:
            os.environ.pop("LEADDB_TEST_REDIS_URL", None)
        else:
            os.environ["LEADDB_TEST_REDIS_URL"] = previous
        cluster.stop()


if __name__ == "__main__":
    os.chdir(ROOT)  # pytest's rootdir and the modules' relative paths
    sys.exit(main(sys.argv[1:]))
