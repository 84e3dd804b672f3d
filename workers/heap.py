"""A worker process's garbage collector, set for thousands of attempts in flight.

An attempt's objects (its request, the SDK's response models, its coroutine) live as long as its vendor call.
With CPython's default young-generation threshold (700 net allocations) a busy worker ran a young collection
every few tens of milliseconds, so those objects outlived several collections, were promoted, and kept the
older generations collecting: a profile of an async worker at 256 attempts in flight put about 7 % of its
CPU in the collector. :func:`settle`, once the process has loaded everything it runs on, freezes what is
there (the modules, the config, the clients: never garbage, never traversed again) and raises the young
threshold so that most attempts are over before a collection looks at their objects. Reference counting
still frees what is not in a cycle at once; only how often cycles are looked for changes.
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG_COLLECTION_OBJECTS", "settle"]

YOUNG_COLLECTION_OBJECTS = 10_000  # net new container objects between young collections (CPython's default 700)


def settle() -> None:
    """Collect once, move every object alive now out of the collector's reach (``gc.freeze``), and raise the
    young generation's threshold (the older generations keep theirs)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_OBJECTS, older, oldest)
