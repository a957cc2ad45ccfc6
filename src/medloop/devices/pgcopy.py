"""Reading rows in PostgreSQL's binary COPY format, for the store stage.

The binary format spares the server parsing text (timestamps with zones, UUIDs), which is a good
part of what it does per row besides the foreign-key checks, and packing a row is one
`struct.pack` here. Each field is its length and its bytes in network order: uuid 16 bytes,
float8 an IEEE double, timestamptz microseconds since 2000-01-01 UTC, text UTF-8, NULL length -1.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from medloop.devices.types import ReadingRow

COLUMNS = ReadingRow._fields
HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)  # signature, flags, no extension
TRAILER = struct.pack(">h", -1)
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_NULL = -1


@lru_cache(maxsize=256)
def _layout(code: str, unit: str, channel: str, has_panel: bool) -> tuple[struct.Struct, bytes, bytes, bytes]:
    """The row's struct for these text values (few distinct ones: canonical codes and units)."""
    code_b, unit_b, channel_b = code.encode(), unit.encode(), channel.encode()
    fmt = (
        ">h"  # number of fields
        "i16s i16s i16s"  # id, patient_id, device_id
        f"i{len(code_b)}s id i{len(unit_b)}s"  # code, value, unit
        "iq iq"  # effective_at, received_at
        + ("i16s" if has_panel else "i")  # panel_id or NULL
        + f"i{len(channel_b)}s"  # channel
    )
    return struct.Struct(fmt), code_b, unit_b, channel_b


def _microseconds(at: datetime) -> int:
    return (at - _PG_EPOCH) // _MICROSECOND


def encode(rows: Iterable[ReadingRow]) -> Iterator[bytes]:
    """The COPY data for `rows`, one bytes object per row (without HEADER and TRAILER)."""
    received: dict[datetime, int] = {}
    n = len(COLUMNS)
    for r in rows:
        layout, code, unit, channel = _layout(r.code, r.unit, r.channel, r.panel_id is not None)
        at = received.get(r.received_at)
        if at is None:
            at = received[r.received_at] = _microseconds(r.received_at)
        head = (
            n,
            16,
            r.id.bytes,
            16,
            r.patient_id.bytes,
            16,
            r.device_id.bytes,
            len(code),
            code,
            8,
            r.value,
            len(unit),
            unit,
            8,
            _microseconds(r.effective_at),
            8,
            at,
        )
        if r.panel_id is None:
            yield layout.pack(*head, _NULL, len(channel), channel)
        else:
            yield layout.pack(*head, 16, r.panel_id.bytes, len(channel), channel)
