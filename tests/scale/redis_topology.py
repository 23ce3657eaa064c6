"""Redis topologies for the scale-out tests, started from the machine's redis-server/redis-cli.

``RedisCluster3`` is three masters (``--cluster-enabled yes``, no replicas) made one cluster by
``redis-cli --cluster create``; ``RedisSentinelSet`` is a primary, a replica of it and one
Sentinel with quorum 1. Each lives in a temporary directory on free loopback ports, and
``stop()`` ends every process it started (by its own pid) and removes the directory.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
SERVICE = "leaddb"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def free_cluster_port() -> int:
    """A free port whose cluster bus port (10000 higher, so at most 55535) is free too."""
    for _ in range(200):
        port = random.randrange(20000, 45000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as probe:
                    probe.bind((HOST, candidate))
        except OSError:
            continue
        return port
    raise OSError("no free port pair for a cluster node")


def binaries_present() -> bool:
    return shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None


def cli(port: int, *args: str, check: bool = True) -> str:
    done = subprocess.run(  # noqa: S603  (the machine's redis-cli, fixed arguments)
        ["redis-cli", "-h", HOST, "-p", str(port), *args],  # noqa: S607
        capture_output=True,
        text=True,
        timeout=30,
        check=check,
    )
    return done.stdout.strip()


def _wait_until(what: str, ready: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if callable(ready) and ready():
                return
        except (subprocess.SubprocessError, OSError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout} s")


@dataclass
class _Servers:
    """redis-server processes in one temporary directory."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ldbredis")))
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    arguments: dict[int, tuple[str, ...]] = field(default_factory=dict)

    def start(self, port: int, *args: str) -> None:
        self.arguments[port] = args
        work = self.root / str(port)
        work.mkdir(exist_ok=True)
        log = (work / "log").open("wb")
        self.processes[port] = subprocess.Popen(  # noqa: S603  (fixed arguments)
            [  # noqa: S607  (the machine's redis-server, found on PATH)
                "redis-server",
                *args,
                "--port",
                str(port),
                "--bind",
                HOST,
                "--dir",
                str(work),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        _wait_until(f"redis-server :{port}", lambda: cli(port, "PING") == "PONG")

    def kill(self, port: int) -> None:
        """SIGKILL one server (a master dying mid-run)."""
        process = self.processes.pop(port)
        process.kill()
        process.wait(timeout=10)

    def restart(self, port: int) -> None:
        """Start a killed server again, in its directory: it reloads its last ``SAVE``."""
        self.start(port, *self.arguments[port])

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.processes.clear()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class RedisCluster3:
    """A local 3-master Redis Cluster."""

    ports: list[int]
    servers: _Servers

    @classmethod
    def start(cls) -> RedisCluster3:
        servers = _Servers()
        ports: list[int] = []
        while len(ports) < 3:
            port = free_cluster_port()
            if port not in ports:
                ports.append(port)
        try:
            for port in ports:
                config = f"nodes-{port}.conf"
                servers.start(
                    port,
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    config,
                    "--cluster-node-timeout",
                    "2000",
                    # A killed master's slots are then down, not the whole cluster: the other
                    # masters keep serving their tenants.
                    "--cluster-require-full-coverage",
                    "no",
                )
            nodes = [f"{HOST}:{port}" for port in ports]
            cli(ports[0], "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes")
            _wait_until(
                "cluster state ok",
                lambda: all("cluster_state:ok" in cli(port, "CLUSTER", "INFO") for port in ports),
            )
        except BaseException:
            servers.stop()
            raise
        return cls(ports, servers)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{HOST}:{port}" for port in self.ports)

    def flush(self) -> None:
        for port in list(self.servers.processes):
            cli(port, "FLUSHALL")

    def cli_save(self, port: int) -> None:
        """Snapshot one node to disk (``SAVE``); a restart of it loads that snapshot."""
        cli(port, "SAVE")

    def node_of(self, key: str) -> int:
        """The port of the master that serves ``key``'s slot."""
        slot = int(cli(self.ports[0], "CLUSTER", "KEYSLOT", key))
        for line in cli(self.ports[0], "CLUSTER", "NODES").splitlines():
            fields = line.split()
            if "master" not in fields[2]:
                continue
            for span in fields[8:]:
                low, _, high = span.partition("-")
                if int(low) <= slot <= int(high or low):
                    return int(fields[1].split("@")[0].rsplit(":", 1)[1])
        raise LookupError(f"no master serves slot {slot}")

    def wait_ok(self) -> None:
        _wait_until(
            "cluster state ok",
            lambda: all("cluster_state:ok" in cli(port, "CLUSTER", "INFO") for port in self.ports),
        )

    def stop(self) -> None:
        self.servers.stop()


@dataclass
class RedisSentinelSet:
    """A Redis primary, one replica of it and one Sentinel (quorum 1) watching them."""

    primary: int
    replica: int
    sentinel: int
    servers: _Servers

    @classmethod
    def start(cls) -> RedisSentinelSet:
        servers = _Servers()
        primary, replica, sentinel = free_port(), free_port(), free_port()
        try:
            servers.start(primary)
            servers.start(replica, "--replicaof", HOST, str(primary))
            _wait_until(
                "replica in sync",
                lambda: "master_link_status:up" in cli(replica, "INFO", "replication"),
            )
            conf = servers.root / "sentinel.conf"
            conf.write_text(
                f"sentinel monitor {SERVICE} {HOST} {primary} 1\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 5000\n"
            )
            servers.start(sentinel, str(conf), "--sentinel")
            _wait_until(
                "sentinel sees the replica",
                lambda: cli(sentinel, "SENTINEL", "REPLICAS", SERVICE).count("\n") > 0,
            )
        except BaseException:
            servers.stop()
            raise
        return cls(primary, replica, sentinel, servers)

    def url(self, db: int = 0) -> str:
        return f"redis+sentinel://{HOST}:{self.sentinel}/{SERVICE}/{db}"

    def master_port(self) -> int:
        return int(cli(self.sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE).split()[1])

    def failover(self) -> int:
        """``SENTINEL FAILOVER``; returns the new primary's port once Sentinel reports it."""
        before = self.master_port()
        cli(self.sentinel, "SENTINEL", "FAILOVER", SERVICE)
        _wait_until("failover", lambda: self.master_port() != before, timeout=30)
        after = self.master_port()
        _wait_until("new primary", lambda: "role:master" in cli(after, "INFO", "replication"))
        # Until Sentinel demotes it (at its next look, seconds later), the old primary still
        # takes writes: the split brain a client must survive.
        _wait_until(
            "old primary demoted",
            lambda: "role:slave" in cli(before, "INFO", "replication"),
            timeout=60,
        )
        return after

    def flush(self) -> None:
        cli(self.master_port(), "FLUSHALL")

    def stop(self) -> None:
        self.servers.stop()
