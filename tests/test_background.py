"""`read_ahead`: the region simulator generates the next chunk of people in a background thread
while the current one is written; order, errors and early stops must be as if there were no
thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from medloop.background import read_ahead
from medloop.screening.frames import InputError


def test_items_come_in_order() -> None:
    assert list(read_ahead(iter(range(100)))) == list(range(100))
    assert list(read_ahead(iter([]))) == []


def test_an_error_in_the_producer_is_raised_after_the_items_before_it() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise InputError("column 'age': expected a whole number")

    seen = []
    with pytest.raises(InputError, match="whole number"):
        for item in read_ahead(items()):
            seen.append(item)
    assert seen == [1, 2]


def test_a_consumer_that_stops_early_stops_the_producer() -> None:
    produced = []

    def items() -> Iterator[int]:
        for i in range(1_000):
            produced.append(i)
            yield i

    ahead = read_ahead(items(), name="test-read-ahead")
    assert next(ahead) == 0
    ahead.close()  # what a failing consumer does on its way out
    assert len(produced) <= 3  # the one consumed, the one waiting, the one being produced
    assert not any(t.name == "test-read-ahead" for t in threading.enumerate())


def test_up_to_ahead_items_wait_for_the_consumer() -> None:
    produced = []

    def items() -> Iterator[int]:
        for i in range(100):
            produced.append(i)
            yield i

    ahead = read_ahead(items(), ahead=4)
    assert next(ahead) == 0
    threading.Event().wait(0.3)  # let the producer run as far as it may
    assert len(produced) <= 6  # the one consumed, four waiting, one being produced
    ahead.close()
