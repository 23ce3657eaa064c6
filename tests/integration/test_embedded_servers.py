"""The embedded servers' lifecycle, with real processes: they live in the data directory, run
while a process uses them, stop when the last one exits, and `leaddb servers` shows and stops
what a killed process left (issue 25, item 1)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from leaddb.embedded import (
    _binary_gone,
    in_use,
    redis_binary,
    start_redis,
    status,
    stop_servers,
)

ROOT = Path(__file__).resolve().parents[2]

CONNECT = """
    import asyncio, os, sys
    from leaddb import LeadDB

    async def main():
        db = await LeadDB.connect()
        print(db.info.redis_url, flush=True)
        if sys.argv[1] == "wait":
            sys.stdin.readline()  # until the test says so
        if sys.argv[1] == "kill":
            os._exit(0)  # as if killed: no clean-up at all
        await db.close()

    asyncio.run(main())
"""


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    # Short: the servers' unix sockets live inside it.
    path = Path(tempfile.mkdtemp(prefix="ldbs", dir="/tmp"))
    yield path
    stop_servers(path)
    shutil.rmtree(path, ignore_errors=True)


def _environment(data_dir: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("LEADDB_")}
    env["LEADDB_EMBEDDED_DATA_DIR"] = str(data_dir)
    env["PYTHONPATH"] = str(ROOT)
    return env


def _connect(data_dir: Path, how: str) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 - this interpreter, a fixed program
        [sys.executable, "-c", textwrap.dedent(CONNECT), how],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=data_dir,
        env=_environment(data_dir),
    )


def _finish(process: subprocess.Popen[str], stdin: str = "") -> str:
    out, err = process.communicate(stdin, timeout=180)
    assert process.returncode == 0, err
    return out


def _leaddb(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - this interpreter, a fixed program
        [sys.executable, "-m", "leaddb", *args],
        capture_output=True,
        text=True,
        cwd=data_dir,
        env=_environment(data_dir),
        timeout=120,
        check=False,
    )


def _running(data_dir: Path) -> list[str]:
    return [state.name for state in status(data_dir) if state.pid is not None]


def test_the_servers_live_in_the_data_directory_and_stop_with_their_last_user(
    data_dir: Path,
) -> None:
    first = _connect(data_dir, "wait")
    assert first.stdout is not None
    redis_url = first.stdout.readline().strip()
    assert redis_url == f"unix://{data_dir}/redis/redis.sock"
    assert _running(data_dir) == ["PostgreSQL", "Redis"]
    # A second process joins and leaves: the first still uses them.
    _finish(_connect(data_dir, "close"))
    assert _running(data_dir) == ["PostgreSQL", "Redis"]
    assert in_use(data_dir)
    refused = _leaddb(data_dir, "servers", "stop")
    assert refused.returncode == 2
    assert "in use by a running process" in refused.stderr
    _finish(first, "go on\n")
    assert _running(data_dir) == []
    assert not in_use(data_dir)


def test_servers_a_killed_process_left_are_shown_and_stopped_by_the_command(
    data_dir: Path,
) -> None:
    _finish(_connect(data_dir, "kill"))
    assert _running(data_dir) == ["PostgreSQL", "Redis"]
    shown = _leaddb(data_dir, "servers", "status")
    assert shown.returncode == 0, shown.stderr
    assert "PostgreSQL: running, pid" in shown.stdout
    assert "Redis: running, pid" in shown.stdout
    assert "in use by a running process: no" in shown.stdout
    stopped = _leaddb(data_dir, "servers", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped PostgreSQL" in stopped.stdout
    assert "stopped Redis" in stopped.stdout
    assert _running(data_dir) == []
    again = _leaddb(data_dir, "servers", "stop")
    assert "no embedded server was running" in again.stdout


def test_a_redis_whose_binary_was_deleted_is_replaced(data_dir: Path, tmp_path: Path) -> None:
    # What a rebuilt venv does to a server started from it: its binary is gone.
    copy = tmp_path / "redis-server"
    shutil.copy(redis_binary(), copy)
    redis_dir = data_dir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(  # noqa: S603 - the copied binary, fixed arguments
        [
            str(copy),
            *("--port", "0", "--unixsocket", str(redis_dir / "redis.sock")),
            *("--pidfile", str(redis_dir / "redis.pid"), "--dir", str(redis_dir)),
            *("--save", "", "--daemonize", "yes"),
        ],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        old = status(data_dir)[1].pid
        if old is not None and (redis_dir / "redis.sock").exists():
            break
        time.sleep(0.02)
    assert old is not None
    copy.unlink()
    started = start_redis(data_dir)
    new = status(data_dir)[1].pid
    assert new is not None
    assert new != old
    assert started.url == f"unix://{redis_dir}/redis.sock"
    started.stop()
    assert status(data_dir)[1].pid is None


def test_a_process_whose_binary_was_deleted_is_told_apart(tmp_path: Path) -> None:
    # How a PostgreSQL or Redis started from a venv that was rebuilt since is recognised.
    sleeper = tmp_path / "sleeper"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", sleeper)
    kept = subprocess.Popen(["sleep", "30"])  # noqa: S607
    gone = subprocess.Popen([str(sleeper), "30"])  # noqa: S603
    try:
        sleeper.unlink()
        assert _binary_gone(gone.pid)
        assert not _binary_gone(kept.pid)
    finally:
        for process in (kept, gone):
            process.kill()
            process.wait()
