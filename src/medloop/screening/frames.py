"""Reading population tables in bounded batches, typing their columns by the contract, and writing
results. Parquet and CSV (UTF-8) by file suffix.

Typing is strict: a cell that cannot be read as its column's type (text in a number column, a yes/no
column holding anything but true/false/1/0) is a malformed file and stops the run with an
`InputError` naming the column, the row and the value. Values of the right type that are
implausible (age 200) or not allowed (smoking "sometimes") are the models' business: those rows get
an error reason and the run goes on."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import polars as pl
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from polars.io.plugins import register_io_source

from medloop.background import hand_over
from medloop.clinical.inputs import INVALID
from medloop.errors import Unprocessable
from medloop.screening.contract import BY_NAME, Column

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv",)
CSV_BLOCK_BYTES = 32 << 20
_BOOL_TEXT = {"true": True, "1": True, "false": False, "0": False}
_EXPECTED = {
    "str": "text",
    "int": "a whole number",
    "float": "a number",
    "bool": "true/false/1/0",
    "enum": "text",
}


class InputError(Unprocessable):
    """The input cannot be screened: unreadable, empty, wrong types, or lacking its key column."""


def file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    if suffix in CSV_SUFFIXES:
        return "csv"
    raise InputError(f"{path.name}: unknown file type {suffix!r}; use .parquet or .csv")


# --- typing -------------------------------------------------------------------------------------


class _BadCell(Exception):
    def __init__(self, index: int, value: Any) -> None:
        super().__init__(index, value)
        self.index, self.value = index, value


def _first_failure(raw: pl.Series, converted: pl.Series) -> None:
    bad = raw.is_not_null() & converted.is_null()
    if bad.any():
        index = int(bad.arg_true()[0])
        raise _BadCell(index, raw[index])


def _wrong_type(s: pl.Series) -> _BadCell:
    index = int(s.is_not_null().arg_true()[0])
    return _BadCell(index, s[index])


def _text(s: pl.Series) -> pl.Series:
    """Stripped text, blank as null."""
    text = s.str.strip_chars()
    return pl.select(pl.when(text == "").then(None).otherwise(text)).to_series().alias(s.name)


def _as_float(s: pl.Series) -> pl.Series:
    if s.dtype.is_numeric():
        return s.cast(pl.Float64)
    if s.dtype != pl.String:
        raise _wrong_type(s)
    text = _text(s)
    out = text.cast(pl.Float64, strict=False)
    _first_failure(text, out)
    return out


def _as_bool(s: pl.Series) -> pl.Series:
    if s.dtype == pl.Boolean:
        return s
    if s.dtype.is_numeric():
        raw = s
        out = pl.select(pl.when(s == 1).then(True).when(s == 0).then(False)).to_series()
    elif s.dtype == pl.String:
        raw = _text(s).str.to_lowercase()
        out = raw.replace_strict(_BOOL_TEXT, default=None, return_dtype=pl.Boolean)
    else:
        raise _wrong_type(s)
    _first_failure(raw, out)
    return out


def _as_enum(s: pl.Series, column: Column) -> pl.Series:
    """An enum column; values that are not allowed become INVALID (a row error, not a file error)."""
    if isinstance(s.dtype, pl.Categorical | pl.Enum):
        s = s.cast(pl.String)
    if s.dtype != pl.String:
        raise _wrong_type(s)
    out = s.cast(column.dtype, strict=False)
    if out.null_count() == s.null_count():  # the common case: clean values
        return out.alias(s.name)
    text = _text(s)
    text = text.str.to_uppercase() if column.name == "sex" else text.str.to_lowercase()
    out = text.cast(column.dtype, strict=False)
    unknown = text.is_not_null() & out.is_null()
    return (
        pl.select(pl.when(unknown).then(pl.lit(INVALID, dtype=column.dtype)).otherwise(out))
        .to_series()
        .alias(s.name)
    )


def _convert(s: pl.Series, column: Column) -> pl.Series:
    if s.dtype == pl.Null:
        return pl.Series(s.name, [None] * len(s), dtype=column.dtype)
    kind = column.kind
    if kind == "str":  # a key: copied as it is
        if s.dtype.is_nested():
            raise _wrong_type(s)
        return s.cast(pl.String)
    if kind == "enum":
        return _as_enum(s, column)
    if kind == "bool":
        return _as_bool(s).alias(s.name)
    number = _as_float(s)
    if kind == "int":
        whole = pl.select(pl.when(number == number.floor()).then(number)).to_series()
        _first_failure(number, whole)
        number = whole
    return number.cast(column.dtype).alias(s.name)


def normalise(raw: pl.DataFrame, columns: Sequence[str], where: str) -> pl.DataFrame:
    """The `columns` of `raw` (those present), typed by the contract. `where` names the batch in
    error messages, e.g. "rows 1–500000 of people.csv"; row numbers in them count data rows from 1
    within that batch."""
    out: list[pl.Series] = []
    for name in columns:
        if name not in raw.columns:
            continue
        column = BY_NAME[name]
        try:
            out.append(_convert(raw.get_column(name), column))
        except _BadCell as bad:
            raise InputError(
                f"column {name!r}: expected {_EXPECTED[column.kind]}, found {bad.value!r} "
                f"(row {bad.index + 1} of {where})"
            ) from None
    return pl.DataFrame(out)


# --- reading ------------------------------------------------------------------------------------


class Source(Protocol):
    path: Path
    columns: tuple[str, ...]
    rows: int | None  # known in advance for Parquet

    def batches(self, columns: Sequence[str], batch_rows: int) -> Iterator[pl.DataFrame]: ...


def _unreadable(path: Path, exc: Exception) -> InputError:
    text = str(exc)
    if "UTF8" in text or "UTF-8" in text or "utf-8" in text:
        return InputError(f"{path.name} is not valid UTF-8 text ({text}); save it as UTF-8 and retry")
    return InputError(f"{path.name} cannot be read: {text}")


@dataclass
class ParquetSource:
    path: Path
    columns: tuple[str, ...]
    rows: int | None

    @classmethod
    def open(cls, path: Path) -> ParquetSource:
        try:
            meta = pq.ParquetFile(path).metadata
        except (pa.ArrowException, OSError) as exc:
            raise _unreadable(path, exc) from None
        return cls(path, tuple(meta.schema.names), meta.num_rows)

    def batches(self, columns: Sequence[str], batch_rows: int) -> Iterator[pl.DataFrame]:
        # Polars reads only the row groups a slice needs, straight into its own memory layout.
        scan = pl.scan_parquet(self.path).select(columns)
        try:
            for offset in range(0, self.rows or 0, batch_rows):
                yield scan.slice(offset, batch_rows).collect()
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise _unreadable(self.path, exc) from None


def csv_as_text(columns: Sequence[str]) -> pa_csv.ConvertOptions:
    """Read these CSV columns as text (typed later by `normalise`); empty cells are missing."""
    return pa_csv.ConvertOptions(
        column_types={c: pa.string() for c in columns},
        include_columns=list(columns),
        strings_can_be_null=True,
        null_values=[""],
    )


def read_csv_range(path: Path, start: int, end: int, columns: Sequence[str]) -> pl.DataFrame:
    """The rows of a CSV file whose lines start in bytes [start, end) (start ≥ the header's end),
    with the header. Lines are split on newlines, so quoted fields must not contain line breaks."""
    with path.open("rb") as f:
        header = f.readline()
        f.seek(start - 1)
        f.readline()
        first = max(f.tell(), len(header))
        f.seek(end - 1)
        f.readline()
        last = f.tell()
        f.seek(first)
        body = f.read(last - first)
    try:
        table = pa_csv.read_csv(pa.py_buffer(header + body), convert_options=csv_as_text(columns))
    except pa.ArrowException as exc:
        raise _unreadable(path, exc) from None
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


@dataclass
class CsvSource:
    path: Path
    columns: tuple[str, ...]
    rows: int | None = None

    @classmethod
    def open(cls, path: Path) -> CsvSource:
        try:
            with pa_csv.open_csv(path, read_options=pa_csv.ReadOptions(block_size=1 << 16)) as reader:
                names = tuple(reader.schema.names)
        except (pa.ArrowException, OSError) as exc:
            raise _unreadable(path, exc) from None
        return cls(path, names)

    def batches(self, columns: Sequence[str], batch_rows: int) -> Iterator[pl.DataFrame]:
        try:
            with pa_csv.open_csv(
                self.path,
                read_options=pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES),
                convert_options=csv_as_text(columns),
            ) as reader:
                pending: list[pl.DataFrame] = []
                held = 0
                for batch in reader:
                    frame = pl.from_arrow(batch)
                    assert isinstance(frame, pl.DataFrame)
                    pending.append(frame)
                    held += frame.height
                    while held >= batch_rows:
                        whole = pl.concat(pending)
                        yield whole.head(batch_rows)
                        rest = whole.slice(batch_rows)
                        pending, held = [rest], rest.height
                if held:
                    yield pl.concat(pending)
        except (pa.ArrowException, OSError) as exc:
            raise _unreadable(self.path, exc) from None


def open_source(path: Path) -> Source:
    if not path.exists():
        raise InputError(f"{path} does not exist")
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(f"{path.name} is empty")
    source: Source = ParquetSource.open(path) if file_format(path) == "parquet" else CsvSource.open(path)
    if source.rows == 0:
        raise InputError(f"{path.name} has no rows")
    return source


# --- writing ------------------------------------------------------------------------------------

_END = object()  # the producer is done: finish the file
_ABORT = object()  # the producer failed: stop writing


class _Aborted(Exception):
    """Stops the writer of a run that failed (the partial file is removed)."""


class FrameWriter:
    """Writes frames, in order, to one Parquet or CSV file, atomically: into `<path>.partial`,
    renamed to `path` on a clean close and removed when the run fails. Write at least one (maybe
    empty) frame so that the file exists with its columns; every frame has the first one's schema.

    Polars' own writer does the work, on a thread of its own that takes the frames from a queue
    (a lazy frame whose source is that queue, sunk to the file), so that writing one batch
    overlaps with producing the next and `write` returns as soon as the frame is handed over.
    Parquet: LZ4, no statistics (a results file is read whole); text columns are Enums, written
    dictionary-encoded. A failure of the writer is raised by the next `write` or at the close."""

    def __init__(self, path: Path, *, ahead: int = 1) -> None:
        self.path = path
        self.format = file_format(path)
        self.partial = path.with_name(path.name + ".partial")
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=ahead)
        self._schema: pl.Schema | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def write(self, frame: pl.DataFrame) -> None:
        if self._thread is None:
            self._schema = frame.schema
            self._thread = threading.Thread(target=self._sink, name=f"write-{self.path.name}", daemon=True)
            self._thread.start()
        elif frame.schema != self._schema:
            raise ValueError(f"{self.path.name}: a frame with columns {frame.schema} after {self._schema}")
        if self._error is not None or not self._put(frame):
            raise self._error or RuntimeError(f"the writer of {self.path.name} stopped")

    def _put(self, item: Any) -> bool:
        """Hand `item` to the writer; False when the writer has stopped."""
        assert self._thread is not None
        return hand_over(self._queue, item, self._thread.is_alive)

    def _frames(
        self,
        with_columns: list[str] | None,
        predicate: pl.Expr | None,
        n_rows: int | None,
        batch_size: int | None,
    ) -> Iterator[pl.DataFrame]:
        """The queue as the source of a lazy frame that is sunk whole: Polars pushes no filter or
        limit down to it (and would get wrong results if it did, hence the check)."""
        if predicate is not None or n_rows is not None:
            raise NotImplementedError("a frame writer's source cannot filter or limit")
        while (item := self._queue.get()) is not _END:
            if item is _ABORT:
                raise _Aborted(self.path.name)
            yield item if with_columns is None else item.select(with_columns)

    def _sink(self) -> None:
        assert self._schema is not None
        frames = register_io_source(self._frames, schema=self._schema)
        try:
            if self.format == "parquet":
                frames.sink_parquet(self.partial, compression="lz4", statistics=False)
            else:
                frames.sink_csv(self.partial)
        except BaseException as exc:  # raised to the producer by write() or __exit__
            self._error = exc

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._thread is None:  # nothing written: no file
            return
        self._put(_END if exc_type is None else _ABORT)
        self._thread.join()
        if exc_type is None and self._error is None:
            self.partial.replace(self.path)
            return
        self.partial.unlink(missing_ok=True)
        if exc_type is None and self._error is not None:
            raise self._error
