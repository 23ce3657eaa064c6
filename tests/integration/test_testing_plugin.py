"""The pytest plugin (leaddb.testing) as a service uses it: a test module in a directory of its
own, run by a separate pytest with ``-p leaddb.testing`` and no configuration of its own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import leaddb
from leaddb.testing import Servers

README = Path(__file__).resolve().parents[2] / "README.md"

SERVICE_TESTS = """
import pytest
import pytest_asyncio

from leaddb import LeadDB
from leaddb.models import Organization, OrganizationCreate
from leaddb.testing import Factories, OrganizationWithData

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def acme(leaddb_factories: Factories) -> OrganizationWithData:
    # A fixture of the service's own, on the same loop as the shared LeadDB without saying so.
    return await leaddb_factories.organization(users=2, leads=4, name="Acme")


async def test_factories_make_an_organization_with_users_and_leads(
    leaddb: LeadDB, acme: OrganizationWithData
) -> None:
    async with leaddb.tenant(acme.id) as uow:
        assert len((await uow.leads.list()).items) == 4
        assert len((await uow.users.list()).items) == 2
    # Read through the cache, then counted: the counters are this test's alone.
    async with leaddb.tenant(acme.id) as uow:
        await uow.leads.get(acme.leads[0].id)
        await uow.leads.get(acme.leads[0].id)
    assert (leaddb.cache.stats().misses, leaddb.cache.stats().hits) == (1, 1)


async def test_the_next_test_starts_from_empty_tables_and_cache(leaddb: LeadDB) -> None:
    async with leaddb.platform() as uow:
        assert (await uow.organizations.list()).items == []
    keys = await leaddb.redis.keys("leaddb:*")
    assert keys == []


async def test_a_service_key_in_redis_is_left_alone(leaddb: LeadDB) -> None:
    await leaddb.redis.set("service:kept", b"1")


async def test_it_was_left_alone(leaddb: LeadDB) -> None:
    assert await leaddb.redis.get("service:kept") == b"1"
    await leaddb.redis.delete("service:kept")


async def test_a_failing_test_fails(leaddb: LeadDB) -> None:
    async with leaddb.platform() as uow:
        await uow.organizations.create(OrganizationCreate(name="X", slug="x-co"))
    assert False, "reported as a failure, not an error of the plugin"
"""


def readme_test_module() -> str:
    """The README's ten-line test, as a service would copy it."""
    blocks = re.findall(r"^```python\n(.*?)^```$", README.read_text(encoding="utf-8"), re.M | re.S)
    [block] = [block for block in blocks if "leaddb_factories" in block]
    return str(block)


SESSION_LOOPS = (
    "-o",
    "asyncio_default_fixture_loop_scope=session",
    "-o",
    "asyncio_default_test_loop_scope=session",
)


@pytest.mark.parametrize(
    "loops", [(), SESSION_LOOPS], ids=["pytest-asyncio defaults", "session loops"]
)
def test_a_service_suite_runs_on_the_plugin(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    servers: Servers,
    loops: tuple[str, ...],
) -> None:
    # The subprocess imports this checkout's leaddb, and uses this run's servers.
    monkeypatch.setenv("PYTHONPATH", str(Path(leaddb.__file__).resolve().parents[1]))
    monkeypatch.setenv("LEADDB_TEST_DATABASE_URL", servers.admin_url)
    monkeypatch.setenv("LEADDB_TEST_REDIS_URL", servers.redis_url)
    pytester.makepyfile(test_service=SERVICE_TESTS, test_readme_example=readme_test_module())

    result = pytester.runpytest_subprocess("-p", "leaddb.testing", "-p", "no:cacheprovider", *loops)

    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(
        ["FAILED test_service.py::test_a_failing_test_fails - AssertionError: reported*"]
    )
