"""The garbage-collector pause of large create_many batches: pure logic, no servers."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from leaddb.repositories.collector import CollectorPause


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


def test_a_pause_holds_the_collector_until_it_ends() -> None:
    with CollectorPause() as pause:
        assert not gc.isenabled()
        pause.end()
        assert gc.isenabled()
    assert gc.isenabled()


def test_ending_twice_releases_once() -> None:
    outer = CollectorPause()
    with outer:
        with CollectorPause() as inner:
            inner.end()
            inner.end()
            # The second end must not count as the outer pause's.
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_overlapping_pauses_switch_it_back_on_when_the_last_ends() -> None:
    first, second = CollectorPause(), CollectorPause()
    first.__enter__()
    second.__enter__()
    first.end()
    assert not gc.isenabled()
    second.end()
    assert gc.isenabled()


def test_a_collector_switched_off_by_the_application_stays_off() -> None:
    gc.disable()
    with CollectorPause() as pause:
        pause.end()
    assert not gc.isenabled()


def test_a_disabled_pause_leaves_the_collector_alone() -> None:
    with CollectorPause(enabled=False):
        assert gc.isenabled()
    assert gc.isenabled()


def test_an_error_inside_ends_the_pause() -> None:
    with pytest.raises(RuntimeError), CollectorPause():
        raise RuntimeError("boom")
    assert gc.isenabled()
