"""The seed's and the demo's organizations do not look alike (issue 25, item 10)."""

from __future__ import annotations

from leaddb.demo import ORGANIZATIONS
from leaddb.seeding.fake import organization_payload


def test_the_demos_organizations_and_the_seeds_have_different_names() -> None:
    demo = {organization_payload("demo", index).name for index in range(ORGANIZATIONS)}
    seeded = {organization_payload("seed", index).name for index in range(10)}
    assert len(demo) == ORGANIZATIONS
    assert demo.isdisjoint(seeded)


def test_the_organizations_of_one_prefix_have_distinct_names_and_repeat_across_runs() -> None:
    names = [organization_payload("seed", index).name for index in range(200)]
    assert len(set(names)) == 200
    assert names == [organization_payload("seed", index).name for index in range(200)]
