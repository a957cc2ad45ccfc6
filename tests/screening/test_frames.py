"""`FrameWriter`: batches written in order by Polars' writer on a thread of its own; the file appears
only on a clean close, and a failure on either side leaves no file, no partial file and no thread."""

from __future__ import annotations

import threading
from pathlib import Path

import polars as pl
import pytest

from medloop.screening.frames import FrameWriter

LEVEL = pl.Enum(["low", "high", "error"])


def batches(n: int, rows: int) -> list[pl.DataFrame]:
    return [
        pl.DataFrame(
            {
                "person_id": [f"p{b}-{i}" for i in range(rows)],
                "score": [float(b * rows + i) if i % 3 else None for i in range(rows)],
                "category": pl.Series(["low", "high", "error"] * (rows // 3), dtype=LEVEL),
            }
        )
        for b in range(n)
    ]


def writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("write-")]


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_batches_arrive_in_order(suffix: str, tmp_path: Path) -> None:
    frames = batches(25, 300)
    path = tmp_path / f"out{suffix}"
    with FrameWriter(path) as writer:
        for frame in frames:
            writer.write(frame)
    expected = pl.concat(frames)
    if suffix == ".parquet":
        written = pl.read_parquet(path)
        assert written.schema == expected.schema  # the Enum survives
    else:
        written = pl.read_csv(path, schema=expected.schema)
        assert path.read_text().count("person_id") == 1  # one header
    assert written.height == 7_500
    assert written.equals(expected)
    assert not list(tmp_path.glob("*.partial"))
    assert writer_threads() == []


def test_an_empty_frame_gives_a_file_with_its_columns(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    with FrameWriter(path) as writer:
        writer.write(batches(1, 3)[0].clear())
    assert pl.read_parquet(path).columns == ["person_id", "score", "category"]


def test_nothing_written_is_no_file(tmp_path: Path) -> None:
    with FrameWriter(tmp_path / "none.parquet"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_a_failed_run_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    with pytest.raises(ZeroDivisionError), FrameWriter(path) as writer:
        for frame in batches(3, 300):
            writer.write(frame)
        _ = 1 / 0
    assert list(tmp_path.iterdir()) == []
    assert writer_threads() == []


def test_a_failing_writer_is_raised_to_the_producer(tmp_path: Path) -> None:
    path = tmp_path / "missing-directory" / "out.parquet"
    with pytest.raises(FileNotFoundError, match="missing-directory"), FrameWriter(path) as writer:
        for frame in batches(50, 300):
            writer.write(frame)
    assert not path.parent.exists()
    assert writer_threads() == []


def test_every_frame_has_the_first_ones_columns(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    first = batches(1, 3)[0]
    with pytest.raises(ValueError, match="a frame with columns"), FrameWriter(path) as writer:
        writer.write(first)
        writer.write(first.drop("score"))
    assert list(tmp_path.iterdir()) == []
