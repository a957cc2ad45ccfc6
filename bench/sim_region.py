"""Benchmark: `medloop sim region --people 1000000` (target: < 60 s wall, < 2 GiB peak RSS on the
2-core machine). Each run is a fresh subprocess that reports its own peak RSS. Runs: Parquet only,
Parquet + SQLite, and Parquet + PostgreSQL when MEDLOOP_TEST_PG_URL is set.

Machines are noisy, so two baselines are measured in the same run and the figures are also given as
ratios to them: the time NumPy takes to draw as many random numbers as the generator draws, and a
bare Parquet write (Polars, zstd) of the same population table.

    .venv/bin/python bench/sim_region.py [--people N] [--no-sqlite] [--no-postgres]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scratch import scratch_database

from medloop.sim import population
from medloop.store import migrate
from medloop.store.engine import make_engine

TARGET_SECONDS = 60.0
TARGET_RSS_MIB = 2048.0

# Runs the CLI in this process and reports the process's own peak RSS on stderr at exit.
WRAPPER = """
import atexit, resource, sys
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
atexit.register(lambda: print(f"PEAK_RSS_KIB {peak()}", file=sys.stderr))
from medloop.cli import main
sys.argv = ["medloop", *sys.argv[1:]]
main()
"""


def run_cli(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one `medloop` run."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", WRAPPER, *args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"medloop {' '.join(args)} failed with exit code {proc.returncode}")
    match = re.search(r"PEAK_RSS_KIB (\d+)", proc.stderr)
    return wall, (int(match.group(1)) / 1024 if match else float("nan"))


def baseline_random(people: int) -> float:
    """Seconds for NumPy to draw the generator's random numbers (uniforms and normals) for `people`."""
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for start in range(0, people, population.BLOCK_ROWS):
        n = min(population.BLOCK_ROWS, people - start)
        rng.random((len(population._UNIFORMS), n))
        rng.standard_normal((len(population._NORMALS), n))
    elapsed = time.perf_counter() - started
    return elapsed


def baseline_parquet(table: Path, scratch: Path) -> float:
    """Seconds for a bare Polars write of the same population table."""
    frame = pl.read_parquet(table)
    started = time.perf_counter()
    frame.write_parquet(scratch, compression="zstd")
    return time.perf_counter() - started


def report(label: str, people: int, wall: float, rss: float, base_rng: float, base_pq: float) -> None:
    verdict = "ok" if wall < TARGET_SECONDS and rss < TARGET_RSS_MIB else "MISSES TARGET"
    print(
        f"{label:<22} {wall:7.1f} s  {people / wall:>10,.0f} rows/s  peak RSS {rss:7.0f} MiB  "
        f"x{wall / base_rng:6.1f} NumPy draws  x{wall / base_pq:6.1f} Parquet write  [{verdict}]"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--no-postgres", action="store_true")
    opts = parser.parse_args()
    people = opts.people
    env = {**os.environ, "MEDLOOP_LOG_LEVEL": "WARNING"}
    common = ["sim", "region", "--people", str(people), "--seed", str(opts.seed), "--quiet"]

    with tempfile.TemporaryDirectory(prefix="medloop-bench-") as tmp:
        work = Path(tmp)
        out = work / "population.parquet"
        print(
            f"sim region, {people:,} residents, seed {opts.seed} (targets: < {TARGET_SECONDS:.0f} s, < 2 GiB)"
        )
        wall, rss = run_cli([*common, "--out", str(out), "--no-database"], env)
        base_rng = baseline_random(people)
        base_pq = baseline_parquet(out, work / "bare.parquet")
        startup, _ = run_cli(["sim", "--help"], env)
        print(
            f"baselines: NumPy draws {base_rng:.2f} s; bare Parquet write of the same table {base_pq:.2f} s; "
            f"CLI start-up (medloop sim --help, included in every run below) {startup:.2f} s"
        )
        report("parquet only", people, wall, rss, base_rng, base_pq)

        if not opts.no_sqlite:
            url = f"sqlite:///{work / 'medloop.db'}"
            engine = make_engine(url)
            migrate.upgrade(engine)
            engine.dispose()
            wall, rss = run_cli([*common, "--out", str(out), "--database-url", url], env)
            report("parquet + sqlite", people, wall, rss, base_rng, base_pq)

        admin_url = os.environ.get("MEDLOOP_TEST_PG_URL")
        if admin_url and not opts.no_postgres:
            with scratch_database(admin_url, prefix="medloop_bench_sim") as engine:
                url = engine.url.render_as_string(hide_password=False)
                engine.dispose()
                wall, rss = run_cli([*common, "--out", str(out), "--database-url", url], env)
                report("parquet + postgresql", people, wall, rss, base_rng, base_pq)


if __name__ == "__main__":
    main()
