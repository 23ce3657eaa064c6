"""LEADDB_REDIS_URL's topologies: which client a URL selects, and what a malformed one says."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from leaddb import LeadDBSettings
from leaddb.connections.redis_topology import parse_redis_url
from leaddb.errors import ConfigurationError
from leaddb.settings import masked_url


def test_a_single_redis_url_keeps_its_own_topology() -> None:
    assert parse_redis_url("redis://127.0.0.1:6379/9").kind == "single"
    assert parse_redis_url("unix:///tmp/redis.sock").kind == "single"


def test_a_cluster_url_names_every_seed_node_and_its_credentials() -> None:
    topology = parse_redis_url("redis+cluster://app:s%40cret@10.0.0.1:7000,10.0.0.2:7001")
    assert topology.kind == "cluster"
    assert topology.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001))
    assert (topology.username, topology.password) == ("app", "s@cret")


def test_a_sentinel_url_names_the_sentinels_the_service_and_the_db() -> None:
    topology = parse_redis_url("redis+sentinel://:pw@s1:26379,s2:26380/mymaster/4")
    assert topology.kind == "sentinel"
    assert topology.nodes == (("s1", 26379), ("s2", 26380))
    assert (topology.service, topology.db, topology.password) == ("mymaster", 4, "pw")
    assert parse_redis_url("redis+sentinel://s1:26379/mymaster").db == 0


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+cluster://", "names no host:port"),
        ("redis+cluster://h:notaport", "is not host:port"),
        ("redis+cluster://h:1/3", "takes no path"),
        ("redis+sentinel://h:1", "/<service>"),
        ("redis+sentinel://h:1/svc/x", "is a number"),
    ],
)
def test_a_malformed_topology_url_is_refused_by_the_settings(url: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        LeadDBSettings.model_validate({"redis_url": SecretStr(url)})


def test_the_settings_accept_both_new_schemes() -> None:
    for url in ("redis+cluster://h:1,h:2", "redis+sentinel://h:1,h:2/svc/1"):
        settings = LeadDBSettings.model_validate({"redis_url": SecretStr(url)})
        assert settings.redis_url_value() == url


def test_a_topology_urls_password_is_masked() -> None:
    masked = masked_url("redis+sentinel://app:hunter2@h:1,h:2/svc/1")
    assert "hunter2" not in masked
    assert masked == "redis+sentinel://app:***@h:1,h:2/svc/1"


def test_redis_py_sentinel_attributes_the_primary_check_reads_still_exist() -> None:
    # leaddb.connections.redis_topology._check_primary reads these public attributes of
    # redis-py's Sentinel classes; an upgrade that renames them must fail here, not silently
    # let a connection to a former primary serve.
    from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection

    pool = SentinelConnectionPool("svc", Sentinel([("127.0.0.1", 1)]))  # type: ignore[no-untyped-call]
    assert pool.master_address is None
    connection = SentinelManagedConnection(**pool.connection_kwargs)  # type: ignore[no-untyped-call]
    assert connection.connection_pool.master_address is None
    assert (connection.host, connection.port) == ("localhost", 6379)


async def test_a_cluster_transport_makes_every_node_reply_raw_but_keeps_the_clusters_own() -> None:
    # RedisPyTransport empties the callbacks of an owned RedisCluster in place, relying on
    # redis-py handing that same dict to every ClusterNode it builds (connection_kwargs): an
    # upgrade that copies it per node would bring SET's True and ZSCAN's parsed tuple back.
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    from leaddb.connections.redis_transport import RedisPyTransport

    cluster = RedisCluster(host="127.0.0.1", port=1)
    transport = RedisPyTransport(cluster, owned=True)
    node = ClusterNode("127.0.0.1", 1, **cluster.connection_kwargs)
    assert node.response_callbacks is cluster.response_callbacks
    assert "SET" not in node.response_callbacks
    assert "ZSCAN" not in node.response_callbacks
    assert "COMMAND" in node.response_callbacks
    own = {name for name in RedisCluster(host="127.0.0.1", port=1).response_callbacks}
    own = {name for name in own if name.startswith(("CLUSTER", "COMMAND"))}
    assert "CLUSTER SHARDS" in own
    assert own <= set(node.response_callbacks)
    await transport.close()


def test_a_borrowed_cluster_client_is_refused() -> None:
    from redis.asyncio.cluster import RedisCluster

    from leaddb.connections.redis_transport import RedisPyTransport

    with pytest.raises(ValueError, match="its own client"):
        RedisPyTransport(RedisCluster(host="127.0.0.1", port=1))


def test_a_session_store_refuses_a_cluster_client_it_cannot_own() -> None:
    from redis.asyncio.cluster import RedisCluster

    from leaddb.sessions.store import SessionStore
    from leaddb.settings import LeadDBSettings

    # Built, never connected: RedisCluster reaches its nodes only when first used.
    cluster = RedisCluster(host="127.0.0.1", port=7000)
    with pytest.raises(TypeError, match="owned=True"):
        SessionStore(cluster, LeadDBSettings())  # type: ignore[arg-type]
