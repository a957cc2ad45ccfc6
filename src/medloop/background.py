"""Overlapping the steps of a batch job on two cores.

`read_ahead(items)` iterates `items` on a background thread, at most `ahead` items ahead of the
consumer, so that producing the next item (generating a chunk of people) overlaps with consuming
this one (writing it). (Screening overlaps the other way round: its results writer,
`screening.frames.FrameWriter`, has the thread.) It pays where both sides spend their time
in code that releases the GIL: NumPy, Polars, Arrow and Parquet compression, the database drivers.
The thread is bounded and joined, not a hidden background task: an exception of the producer is
raised to the consumer after the items produced before it, and a consumer that stops early (or
closes the iterator: `contextlib.closing`) stops and joins the producer."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
_END = object()


def hand_over(handoff: queue.Queue[Any], item: Any, waiting: Callable[[], bool]) -> bool:
    """Put `item` on the bounded queue `handoff`, waiting for room as long as `waiting()` holds
    (the other side is still there); False when it stopped holding first."""
    while waiting():
        try:
            handoff.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def read_ahead(items: Iterator[T], *, ahead: int = 1, name: str = "read-ahead") -> Generator[T, None, None]:
    """The items of `items`, produced on a thread named `name` up to `ahead` items ahead."""
    handoff: queue.Queue[Any] = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def put(value: Any) -> bool:
        return hand_over(handoff, value, lambda: not stop.is_set())

    def produce() -> None:
        try:
            for item in items:
                if not put((item,)):
                    return
            put(_END)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while (value := handoff.get()) is not _END:
            if isinstance(value, BaseException):
                raise value
            yield value[0]
    finally:
        stop.set()
        thread.join()
