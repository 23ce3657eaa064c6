"""The seed command's garbage-collector settings are its own and are undone afterwards."""

from __future__ import annotations

import gc

import pytest

from leaddb.seed import _few_collections


def _fail_inside(seen: list[tuple[int, int]]) -> None:
    with _few_collections():
        seen.append((gc.get_threshold()[0], gc.get_freeze_count()))
        raise RuntimeError("the seed failed")


def test_collections_are_rarer_inside_and_restored_after_even_on_error() -> None:
    before = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    seen: list[tuple[int, int]] = []
    with pytest.raises(RuntimeError):
        _fail_inside(seen)
    ((threshold, frozen),) = seen
    assert threshold > before[0]
    assert frozen > frozen_before
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen_before
