"""The Dask runner: the same models over partitions of the input on a Dask cluster.

Workers read their own partitions (runs of Parquet row groups, or byte ranges of a CSV file), so
the input path must be readable by every worker (a shared file system). Results come back to the
client in input order, a bounded number of partitions in flight, and go to the same consumers as
the local runner (output file, summary, referrals): the two engines write identical files."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
from distributed import Client, Future

from medloop.clinical.catalogue import MODELS
from medloop.clinical.scoring import evaluate
from medloop.screening.engine import Plan
from medloop.screening.frames import CSV_BLOCK_BYTES, Source, file_format, normalise, read_csv_range


def _evaluate(
    raw: pl.DataFrame, columns: list[str], models: tuple[str, ...], keep: tuple[str, ...], where: str
) -> pl.DataFrame:
    frame = normalise(raw, columns, where)
    return evaluate(frame, [MODELS[m] for m in models], keep=keep)


def _parquet_part(
    path: str,
    groups: list[int],
    columns: list[str],
    models: tuple[str, ...],
    keep: tuple[str, ...],
    where: str,
) -> pl.DataFrame:
    raw = pl.from_arrow(pq.ParquetFile(path).read_row_groups(groups, columns=columns))
    assert isinstance(raw, pl.DataFrame)
    return _evaluate(raw, columns, models, keep, where)


def _csv_part(
    path: str,
    start: int,
    end: int,
    columns: list[str],
    models: tuple[str, ...],
    keep: tuple[str, ...],
    where: str,
) -> pl.DataFrame:
    return _evaluate(read_csv_range(Path(path), start, end, columns), columns, models, keep, where)


def _row_group_tasks(path: Path, rows_per_task: int) -> list[tuple[list[int], int, int]]:
    """Row groups in consecutive runs of about `rows_per_task` rows: (groups, first row, rows)."""
    meta = pq.ParquetFile(path).metadata
    tasks: list[tuple[list[int], int, int]] = []
    groups: list[int] = []
    first = held = 0
    for g in range(meta.num_row_groups):
        groups.append(g)
        held += meta.row_group(g).num_rows
        if held >= rows_per_task:
            tasks.append((groups, first, held))
            first, groups, held = first + held, [], 0
    if groups:
        tasks.append((groups, first, held))
    return tasks


def _byte_ranges(path: Path, block: int) -> list[tuple[int, int]]:
    """[start, end) ranges of the data lines of a CSV file, about `block` bytes each."""
    with path.open("rb") as f:
        data_start = len(f.readline())
    size = path.stat().st_size
    return [(s, min(s + block, size)) for s in range(data_start, size, block)]


def dask_results(
    source: Source,
    plan: Plan,
    client: Client,
    rows_per_task: int,
    in_flight: int | None = None,
    csv_block_bytes: int = CSV_BLOCK_BYTES,
) -> Iterator[pl.DataFrame]:
    """Results partition by partition, in input order, evaluated on the cluster behind `client`."""
    columns = [c for c in plan.columns if c in source.columns]
    args = (columns, plan.model_names, plan.keep)
    path, name = str(source.path), source.path.name
    submit: list[Callable[[], Future]] = []
    if file_format(source.path) == "parquet":
        for groups, first, rows in _row_group_tasks(source.path, rows_per_task):
            where = f"rows {first + 1}–{first + rows} of {name}"
            submit.append(partial(client.submit, _parquet_part, path, groups, *args, where, pure=False))
    else:
        for start, end in _byte_ranges(source.path, csv_block_bytes):
            where = f"the lines in bytes {start}–{end} of {name}"
            submit.append(partial(client.submit, _csv_part, path, start, end, *args, where, pure=False))
    limit = in_flight or 2 * max(1, len(client.scheduler_info()["workers"]))
    waiting = deque(submit)
    queue: deque[Future] = deque()
    try:
        while waiting or queue:
            while waiting and len(queue) < limit:
                queue.append(waiting.popleft()())
            result: pl.DataFrame = queue.popleft().result()
            yield result
    finally:
        for future in queue:
            future.cancel()
