"""The cache and the sessions on a local 3-master Redis Cluster: tenants spread over the masters,
every multi-key command stays in one slot, and a master killed mid-run costs PostgreSQL reads,
never a stale one (`nox -s scale`)."""

from __future__ import annotations

import asyncio
import time
import uuid

from integration.factories import make_lead, make_org, make_user

from leaddb import LeadDB
from leaddb.cache.keys import epoch_key
from leaddb.connections.redis_topology import create_client
from leaddb.connections.redis_transport import RedisPyTransport
from leaddb.models import LeadUpdate
from leaddb.sessions.tokens import organization_index_key, user_index_key
from leaddb.settings import parse_redis_url

from .redis_topology import RedisCluster3

TENANTS = 12


async def _tenants(db: LeadDB, count: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """``count`` organizations, each with one lead: (org id, lead id)."""
    made = []
    for _ in range(count):
        org = await make_org(db)
        lead = await make_lead(db, org.id, score=10)
        made.append((org.id, lead.id))
    return made


async def test_tenants_spread_over_the_masters_and_hit_the_cache(
    cluster_db: LeadDB, cluster: RedisCluster3
) -> None:
    tenants = await _tenants(cluster_db, TENANTS)
    masters = {cluster.node_of(epoch_key(org)) for org, _ in tenants}
    assert len(masters) >= 2, "every tenant landed on one master: the test proves nothing"
    for org, lead in tenants:
        async with cluster_db.tenant(org) as uow:
            await uow.leads.get_many([lead, uuid.uuid4()])
            assert (await uow.leads.get_one(lead)).id == lead
    before = cluster_db.cache.stats()
    for org, lead in tenants:
        async with cluster_db.tenant(org) as uow:
            assert (await uow.leads.get_one(lead)).score == 10
    after = cluster_db.cache.stats()
    assert after.hits - before.hits == TENANTS
    assert after.errors == 0


async def test_sessions_of_users_on_different_masters_are_revoked_per_organization(
    cluster_db: LeadDB, cluster: RedisCluster3
) -> None:
    org = await make_org(cluster_db)
    users = [await make_user(cluster_db, org.id) for _ in range(8)]
    assert len({cluster.node_of(user_index_key(user.id)) for user in users}) >= 2
    assert cluster.node_of(organization_index_key(org.id)) in cluster.ports
    tokens = [
        await cluster_db.sessions.create(user_id=user.id, organization_id=org.id) for user in users
    ]
    rotated = await cluster_db.sessions.rotate(tokens[0])
    assert rotated is not None
    assert await cluster_db.sessions.get(tokens[0]) is None
    assert len(await cluster_db.sessions.list(users[1].id)) == 1
    assert await cluster_db.sessions.revoke_organization(org.id) == len(users)
    for token in [rotated, *tokens[1:]]:
        assert await cluster_db.sessions.get(token) is None


async def test_a_master_killed_mid_run_means_postgres_reads_and_nothing_stale_after(
    cluster_db: LeadDB, cluster: RedisCluster3
) -> None:
    tenants = await _tenants(cluster_db, TENANTS)
    for org, lead in tenants:
        async with cluster_db.tenant(org) as uow:
            await uow.leads.get_one(lead)
    victim_org, victim_lead = tenants[0]
    victim = cluster.node_of(epoch_key(victim_org))
    # The killed master restarts from this snapshot: it holds every value filled above, so a
    # lost invalidation would bring the old score back.
    cluster.cli_save(victim)
    cluster.servers.kill(victim)

    async with cluster_db.tenant(victim_org) as uow:
        await uow.leads.update(victim_lead, LeadUpdate(score=99))
        await uow.commit()
    # Redis is down for this tenant: the read goes to PostgreSQL and sees the commit.
    for org, lead in tenants:
        async with cluster_db.tenant(org) as uow:
            expected = 99 if lead == victim_lead else 10
            assert (await uow.leads.get_one(lead)).score == expected
    assert cluster_db.cache.stats().errors >= 1

    cluster.servers.restart(victim)
    await asyncio.to_thread(cluster.wait_ok)
    deadline = time.monotonic() + 60
    served_from_cache = 0
    while served_from_cache < 3 and time.monotonic() < deadline:
        before = cluster_db.cache.stats().hits
        async with cluster_db.tenant(victim_org) as uow:
            assert (await uow.leads.get_one(victim_lead)).score == 99
        served_from_cache += cluster_db.cache.stats().hits - before
        await asyncio.sleep(0.05)
    assert served_from_cache >= 3, "the cache never came back after the master restarted"


async def test_many_scripts_on_one_master_do_not_exhaust_its_connection_pool(
    cluster: RedisCluster3,
) -> None:
    # Every key in one slot, so every call goes to one master: more calls than redis-py's
    # pool allows per node (100) raised MaxConnectionsError when all ran at once.
    client = create_client(parse_redis_url(cluster.url), timeout=2.0, retries=True)
    transport = RedisPyTransport(client, owned=True)
    try:
        tag = uuid.uuid4().hex
        calls = [([f"{{{tag}}}:{i}"], [str(i)]) for i in range(300)]
        assert len({cluster.node_of(keys[0]) for keys, _ in calls}) == 1
        script = "redis.call('SET', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[1])"
        # Twice: the first run loads the script and opens the connections one by one; on the
        # second, all 300 calls went out at once.
        for _ in range(2):
            replies = await transport.evalsha_many(script, calls)
            assert replies == [str(i).encode() for i in range(300)]
    finally:
        await transport.close()
