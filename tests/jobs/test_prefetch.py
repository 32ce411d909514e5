"""Reading ahead keeps order, raises a reader's error where it happened, and stops when dropped."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from engine.jobs.prefetch import prefetch


def test_items_arrive_in_order_and_the_error_after_the_good_ones() -> None:
    def items() -> Iterator[int]:
        yield from range(5)
        raise ValueError("bad record 5")

    got = []
    with pytest.raises(ValueError, match="bad record 5"):
        for x in prefetch(items(), depth=2):
            got.append(x)
    assert got == [0, 1, 2, 3, 4]
    assert list(prefetch(iter(range(100)), depth=3)) == list(range(100))
    assert list(prefetch(iter(range(3)), depth=0)) == [0, 1, 2]


def test_reader_runs_ahead_and_stops_when_the_consumer_leaves() -> None:
    produced: list[int] = []

    def items() -> Iterator[int]:
        for i in range(1000):
            produced.append(i)
            yield i

    it = prefetch(items(), depth=2)
    assert next(it) == 0
    deadline = time.monotonic() + 5
    while len(produced) < 3 and time.monotonic() < deadline:  # the reader fills the buffer meanwhile
        time.sleep(0.01)
    assert 3 <= len(produced) <= 4  # one handed out, two buffered, at most one waiting to be put
    it.close()  # type: ignore[attr-defined]
    deadline = time.monotonic() + 5
    while any(t.name == "engine-prefetch" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(t.name == "engine-prefetch" for t in threading.enumerate())
    assert len(produced) < 10
