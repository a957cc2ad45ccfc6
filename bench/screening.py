"""Population screening benchmark. For each population size (synthetic people from the region
simulator, `medloop.sim.population`, written once to Parquet and reused), prints in one run:

1. `medloop screen` end to end (read → type → all population models → write results) against a bare
   Polars scan of the same input columns from the same Parquet file (the I/O limit; collected at
   once, and in the engine's 500,000-row slices). Target ≤ 3×. Wall and CPU time are both shown:
   on a shared machine the CPU ratio is the steadier one. Beside it, the two halves of the job on
   their own: reading and scoring with nothing written, and writing the results file from memory
   with the engine's writer (the output side of the I/O limit).
2. Time per row against a straightforward row-by-row pure-Python implementation of the same models
   (`bench/row_by_row.py`: the same job, the same outputs — score, category, flags and reasons of
   every model — checked equal to the engine's), timed on a 100,000-row sample. Target ≥ 100×
   faster, for the models: the engine's time in the models over the whole population against the
   baseline's time in the models. End to end (reading and writing included, on both sides) is
   shown beside it.
3. Peak resident memory of the screening process (separate process, `wait4` rusage). Target for
   10M people ≤ 4 GiB.
4. For reference, the `medloop screen … --referrals` command as a user runs it: process start-up,
   imports and the referrals file included (not part of the ratios above).

Each measurement is the fastest of `--repeat` runs (default 3; the machines are shared and noisy).

    python bench/screening.py                          # 1M and 10M people
    python bench/screening.py --sizes 200000           # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import row_by_row
from medloop.screening.contract import NAMES
from medloop.screening.engine import DEFAULT_BATCH_ROWS, make_plan, select_models
from medloop.sim.population import generate

GiB = 1 << 30
MEDLOOP = str(Path(sys.executable).with_name("medloop"))  # the command, installed beside Python
ROUTING = ("latitude", "longitude")


# --- the run -----------------------------------------------------------------------------------


def population(n: int, seed: int, data_dir: Path) -> Path:
    """n synthetic people (contract columns and location) as Parquet, generated once."""
    path = data_dir / f"people-{n}-seed{seed}.parquet"
    if path.exists():
        return path
    data_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    started = time.perf_counter()
    writer: pq.ParquetWriter | None = None
    for chunk in generate(n, seed, 500_000):
        table = chunk.select(*NAMES, *ROUTING).to_arrow()
        writer = writer or pq.ParquetWriter(partial, table.schema, compression="zstd")
        writer.write_table(table)
    assert writer is not None
    writer.close()
    partial.replace(path)
    print(f"  generated {n:,} people in {time.perf_counter() - started:.0f} s → {path}", flush=True)
    return path


def _child(code: str, *args: str) -> tuple[dict[str, Any], int]:
    """Run Python `code` in a fresh process; its JSON output and its peak RSS in bytes."""
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"child failed ({proc.returncode})")
    return json.loads(output), usage.ru_maxrss * 1024  # Linux: kilobytes


def _best(repeat: int, code: str, *args: str) -> tuple[dict[str, Any], int]:
    """The fastest (wall time) of `repeat` runs of `_child`, and the largest peak RSS among them."""
    runs = [_child(code, *args) for _ in range(repeat)]
    return min((r for r, _ in runs), key=lambda r: r["seconds"]), max(peak for _, peak in runs)


def _command(*args: str) -> dict[str, float]:
    """Run a command; its wall and CPU seconds (user + system, from `wait4`)."""
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{args[0]} failed")
    return {"seconds": time.perf_counter() - started, "cpu": usage.ru_utime + usage.ru_stime}


SCAN = """
import json, sys, time
import polars as pl
columns, batch = sys.argv[2].split(","), int(sys.argv[3])
scan = pl.scan_parquet(sys.argv[1]).select(columns)
started, cpu = time.perf_counter(), time.process_time()
if batch:  # the engine's read pattern: slices of `batch` rows, one at a time
    rows = sum(scan.slice(offset, batch).collect().height for offset in range(0, int(sys.argv[4]), batch))
else:
    rows = scan.collect().height
elapsed = {"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu}
print(json.dumps({**elapsed, "rows": rows}))
"""

SCREEN = """
import json, sys, time
from pathlib import Path
from rich.console import Console
from medloop.screening.runner import ScreenOptions, run_screen
started, cpu = time.perf_counter(), time.process_time()
report = run_screen(ScreenOptions(Path(sys.argv[1]), Path(sys.argv[2])), Console(quiet=True))
elapsed = {"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu}
print(json.dumps({**elapsed, "rows": report.summary.rows}))
"""


WRITE_ONLY = """
import json, sys, time
from pathlib import Path
import polars as pl
from medloop.screening.frames import FrameWriter
results, batch = pl.read_parquet(sys.argv[1]), int(sys.argv[3])
started, cpu = time.perf_counter(), time.process_time()
with FrameWriter(Path(sys.argv[2])) as writer:  # as medloop screen writes them, batch by batch
    for offset in range(0, results.height, batch):
        writer.write(results.slice(offset, batch))
elapsed = {"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu}
print(json.dumps({**elapsed, "rows": results.height}))
"""


MODELS_ONLY = """
import json, sys, time
from pathlib import Path
from medloop.clinical.scoring import evaluate
from medloop.screening.engine import DEFAULT_BATCH_ROWS, make_plan, select_models
from medloop.screening.frames import normalise, open_source
started, cpu, in_models = time.perf_counter(), time.process_time(), 0.0
source = open_source(Path(sys.argv[1]))
plan = make_plan(source.columns, select_models(None))
rows = 0
for raw in source.batches(plan.columns, DEFAULT_BATCH_ROWS):  # as local_results, with a clock
    frame = normalise(raw, plan.columns, "a batch")
    before = time.perf_counter()
    rows += evaluate(frame, plan.models, keep=plan.keep).height
    in_models += time.perf_counter() - before
elapsed = {"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu}
print(json.dumps({**elapsed, "models": in_models, "rows": rows}))
"""


def sample_file(path: Path, rows: int, data_dir: Path) -> Path:
    """The first `rows` people of `path`, as a file of their own."""
    sample = data_dir / f"sample-{rows}-of-{path.name}"
    if not sample.exists():
        pl.read_parquet(path, n_rows=rows).write_parquet(sample)
    return sample


def compare(baseline: Path, engine: Path) -> list[str]:
    """The columns in which the baseline's results differ from the engine's (empty: identical).
    Scores agree to 1e-9 relative (as the unit tests hold China-PAR to its formula), not to the
    last bit: the engine sums China-PAR's terms in another order, and Polars divides by a constant
    as a multiplication by its reciprocal."""
    theirs = pl.read_parquet(baseline)
    ours = pl.read_parquet(engine).with_columns(pl.col(pl.Enum).cast(pl.String))
    if theirs.columns != ours.columns or theirs.height != ours.height:
        return ["(the columns or the rows)"]
    differ = []
    for name in ours.columns:
        a, b = theirs.get_column(name), ours.get_column(name)
        same = a.is_null() == b.is_null()
        if name.endswith("_score"):
            same &= ((a - b).abs() <= 1e-9 * b.abs()).fill_null(True)
        else:
            same &= (a == b).fill_null(True)
        if not same.all():
            differ.append(f"{name} ({(~same).sum():,} rows)")
    return differ


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--sample", type=int, default=100_000, help="rows screened row by row")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each measurement; the fastest counts (shared machines)"
    )
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "medloop-bench")
    args = parser.parse_args()

    models = select_models(None)
    if list(row_by_row.MODELS) != [m.name for m in models]:
        raise SystemExit(f"the row-by-row baseline has {list(row_by_row.MODELS)}, not every population model")
    print(f"models: {', '.join(m.name for m in models)} (all population models); {os.cpu_count()} CPUs")
    sample = sample_file(population(args.sizes[0], args.seed, args.data_dir), args.sample, args.data_dir)
    theirs, ours = args.data_dir / "row-by-row-results.parquet", args.data_dir / "engine-results.parquet"
    base_end_to_end, base_models = (t / args.sample for t in row_by_row.screen_file(sample, theirs))
    _child(SCREEN, str(sample), str(ours))
    differ = compare(theirs, ours)
    theirs.unlink()
    ours.unlink()
    verdict = f"DIFFER from the engine's in {', '.join(differ)}" if differ else "equal to the engine's"
    print(
        f"row by row, {args.sample:,}-row sample: {base_models * 1e6:.1f} µs per row in the models, "
        f"{base_end_to_end * 1e6:.1f} µs end to end; results {verdict} (scores to 1e-9)"
    )
    for n in args.sizes:
        path = population(n, args.seed, args.data_dir)
        columns = make_plan(pq.ParquetFile(path).schema_arrow.names, models).columns
        out = args.data_dir / f"results-{n}.parquet"
        scan, _ = _best(args.repeat, SCAN, str(path), ",".join(columns), "0", str(n))
        sliced, _ = _best(args.repeat, SCAN, str(path), ",".join(columns), str(DEFAULT_BATCH_ROWS), str(n))
        compute, _ = _best(args.repeat, MODELS_ONLY, str(path))
        screen, peak = _best(args.repeat, SCREEN, str(path), str(out))
        rewritten = args.data_dir / f"rewritten-{n}.parquet"
        write, _ = _best(args.repeat, WRITE_ONLY, str(out), str(rewritten), str(DEFAULT_BATCH_ROWS))
        rewritten.unlink()
        referrals = args.data_dir / f"referrals-{n}.parquet"
        command = _command(MEDLOOP, "screen", str(path), "--out", str(out), "--referrals", str(referrals))
        assert screen["rows"] == compute["rows"] == scan["rows"] == sliced["rows"] == write["rows"] == n
        print(f"{n:,} people ({path.stat().st_size / 1e6:,.0f} MB Parquet, {len(columns)} input columns)")
        print("                                             wall   ratio      CPU   ratio")
        for label, run in (
            ("bare Polars scan of the input columns", scan),
            ("the same scan in 500,000-row slices", sliced),
            ("read → type → models, nothing written", compute),
            ("writing the results alone, from memory", write),
            ("medloop screen: read → models → file", screen),
            ("the command, with start-up and referrals", command),
        ):
            print(
                f"  {label:40s} {run['seconds']:6.2f} s {run['seconds'] / scan['seconds']:5.2f}×"
                f" {run['cpu']:6.2f} s {run['cpu'] / scan['cpu']:5.2f}×"
            )
        print(
            "  (target for medloop screen: ≤ 3× the scan; reading plus writing alone, no models: "
            f"{(scan['seconds'] + write['seconds']) / scan['seconds']:.2f}×)"
        )
        in_models, end_to_end = compute["models"] / n, screen["seconds"] / n
        print(
            f"  per row, in the models:   {in_models * 1e6:.2f} µs = {base_models / in_models:,.0f}× faster "
            "than row by row (target ≥ 100×)"
        )
        print(
            f"  per row, end to end:      {end_to_end * 1e6:.2f} µs = {base_end_to_end / end_to_end:,.0f}× "
            "(reading and writing included on both sides)"
        )
        print(
            f"  peak RSS of the screening process              {peak / GiB:8.2f} GiB (target ≤ 4 GiB at 10M)",
            flush=True,
        )
        out.unlink()
        referrals.unlink()


if __name__ == "__main__":
    main()
