"""A worker's garbage collector after :func:`workers.heap.settle`: startup objects frozen, young threshold raised,
cycles made afterwards still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from workers import heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_settle_freezes_what_is_loaded_and_raises_only_the_young_threshold(restored_gc: None) -> None:
    gc.unfreeze()
    _, older, oldest = gc.get_threshold()
    loaded = _Node()
    heap.settle()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (heap.YOUNG_COLLECTION_OBJECTS, older, oldest)
    assert not any(obj is loaded for obj in gc.get_objects())  # frozen: no generation traverses it


def test_a_cycle_made_after_settle_is_still_collected(restored_gc: None) -> None:
    heap.settle()
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    assert gone() is not None  # a cycle: reference counting alone never frees it
    gc.collect()
    assert gone() is None
