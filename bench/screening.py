"""Population screening benchmark. For each population size (synthetic people from the region
simulator, `medloop.sim.population`, written once to Parquet and reused), prints in one run:

1. `medloop screen` end to end (read → type → all population models → write results) against a bare
   Polars scan of the same input columns from the same Parquet file (the I/O limit; collected at
   once, and in the engine's 500,000-row slices). Target ≤ 3×. Wall and CPU time are both shown:
   on a shared machine the CPU ratio is the steadier one.
2. Time per row against a straightforward row-by-row pure-Python implementation of the same models
   (below; same data files), timed on a 100,000-row sample. Target ≥ 100× faster.
3. Peak resident memory of the screening process (separate process, `wait4` rusage). Target for
   10M people ≤ 4 GiB.
4. For reference, the `medloop screen … --referrals` command as a user runs it: process start-up,
   imports and the referrals file included (not part of the ratios above).

    python bench/screening.py                          # 1M and 10M people
    python bench/screening.py --sizes 200000           # a quick run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from medloop.clinical import blood_pressure, cdrs, china_par, copd_sq, gastric, glycaemia, lung_screening, psa
from medloop.clinical.catalogue import MODELS
from medloop.clinical.inputs import FIELDS, limits
from medloop.clinical.scoring import evaluate
from medloop.screening.contract import NAMES
from medloop.screening.engine import DEFAULT_BATCH_ROWS, make_plan, select_models
from medloop.screening.frames import normalise
from medloop.sim.population import generate

GiB = 1 << 30
MEDLOOP = str(Path(sys.executable).with_name("medloop"))  # the command, installed beside Python
ROUTING = ("latitude", "longitude")


# --- the baseline: the same models, one person at a time, in plain Python -------------------------

Row = Mapping[str, Any]


def _band(x: Any, bands: Sequence[Mapping[str, Any]], key: str) -> Any:
    for band in reversed(bands):
        if "min" in band:
            if x >= band["min"]:
                return band[key]
        elif "above" in band:
            if x > band["above"]:
                return band[key]
        else:
            return band[key]
    return None


def _bad(row: Row, fields: Iterable[str]) -> bool:
    for f in fields:
        value = row.get(f)
        if value is None:
            continue
        spec = FIELDS[f]
        if spec.kind == "enum":
            if value not in spec.values:
                return True
        elif f in limits():
            lim = limits()[f]
            if math.isnan(value) or not lim.min <= value <= lim.max:
                return True
    return False


def _status(row: Row, fields: Sequence[str], applies: bool | None = True) -> str | None:
    """error / not_applicable / insufficient_data, or None when the model can be computed."""
    if _bad(row, fields):
        return "error"
    if applies is False:
        return "not_applicable"
    if any(row.get(f) is None for f in fields):
        return "insufficient_data"
    return None


def _or(*values: bool | None) -> bool | None:
    if any(v is True for v in values):
        return True
    return None if any(v is None for v in values) else False


def _and(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def _ge(x: float | None, y: float) -> bool | None:
    return None if x is None else x >= y


def row_china_par(r: Row) -> str:
    male = r.get("sex") == "M"
    fields = [
        "sex",
        "age",
        "sbp",
        "bp_treated",
        "tc_mmol",
        "hdl_mmol",
        "waist_cm",
        "smoking",
        "diabetes",
        "north",
    ]
    fields += ["urban", "family_history_ascvd"] if male or r.get("sex") is None else []
    age = r.get("age")
    status = _status(r, fields, None if age is None else 35 <= age <= 74)
    if status:
        return status
    b = china_par.DOC["coefficients"][r["sex"]]
    mgdl = china_par.DOC["mmol_per_mgdl"]
    la, ls = math.log(r["age"]), math.log(r["sbp"])
    treated = 1.0 if r["bp_treated"] else 0.0
    smoker = 1.0 if r["smoking"] == "current" else 0.0
    fh = 1.0 if r.get("family_history_ascvd") else 0.0
    z = b["intercept"] + b["ln_age"] * la + b["ln_sbp_treated"] * ls * treated
    z += b["ln_sbp_untreated"] * ls * (1 - treated) + b["ln_tc"] * math.log(r["tc_mmol"] / mgdl)
    z += b["ln_hdl"] * math.log(r["hdl_mmol"] / mgdl) + b["ln_waist"] * math.log(r["waist_cm"])
    z += b["smoker"] * smoker + b["diabetes"] * r["diabetes"] + b["north"] * r["north"]
    z += b["ln_age_x_ln_sbp_treated"] * la * ls * treated + b["ln_age_x_ln_sbp_untreated"] * la * ls * (
        1 - treated
    )
    if male:
        z += b["urban"] * r["urban"] + b["family_history"] * fh + b["ln_age_x_smoker"] * la * smoker
        z += b["ln_age_x_family_history"] * la * fh
    risk = 100 * (1 - math.exp(-math.exp(z)))
    return str(_band(risk, china_par.BANDS, "category"))


def _bmi(r: Row) -> float:
    return float(r["weight_kg"]) / (r["height_cm"] / 100) ** 2


def row_cdrs(r: Row) -> str:
    fields = ["sex", "age", "height_cm", "weight_kg", "waist_cm", "sbp", "family_history_diabetes"]
    age = r.get("age")
    status = _status(r, fields, None if age is None else 20 <= age <= 74)
    if status:
        return status
    p = cdrs.POINTS
    total = _band(age, p["age"], "points") + _band(_bmi(r), p["bmi"], "points")
    total += _band(r["waist_cm"], p["waist"][r["sex"]], "points") + _band(r["sbp"], p["sbp"], "points")
    total += p["family_history_diabetes"] * r["family_history_diabetes"] + p["male"] * (r["sex"] == "M")
    return str(_band(total, cdrs.BANDS, "category"))


def row_copd_sq(r: Row) -> str:
    pack_years = 0.0 if r.get("smoking") == "never" and r.get("pack_years") is None else r.get("pack_years")
    fields = [
        "age",
        "height_cm",
        "weight_kg",
        "chronic_cough",
        "dyspnea",
        "biomass_exposure",
        "family_history_respiratory",
    ]
    if _bad(r, ["smoking", "pack_years"]):
        return "error"
    age = r.get("age")
    status = _status(
        {**r, "pack_years": pack_years}, [*fields, "pack_years"], None if age is None else age >= 40
    )
    if status:
        return status
    p = copd_sq.POINTS
    total = _band(age, p["age"], "points") + _band(pack_years, p["pack_years"], "points")
    total += _band(_bmi(r), p["bmi"], "points") + p["chronic_cough"] * r["chronic_cough"]
    total += p["dyspnea"][r["dyspnea"]] + p["biomass_exposure"] * r["biomass_exposure"]
    total += p["family_history_respiratory"] * r["family_history_respiratory"]
    return str(_band(total, copd_sq.BANDS, "category"))


def row_lung_screening(r: Row) -> str:
    fields = [
        "age",
        "smoking",
        "pack_years",
        "years_since_quit",
        "passive_smoking_years",
        "copd",
        "occupational_exposure",
        "family_history_lung_cancer",
    ]
    if _bad(r, fields):
        return "error"
    c = lung_screening.CHINA_DOC["criteria"]
    age, smoking, ysq = r.get("age"), r.get("smoking"), r.get("years_since_quit")
    recent = None if ysq is None else ysq < c["heavy_smoking"]["quit_years_below"]
    current = None if smoking is None else smoking == "current"
    former = None if smoking is None else smoking == "former"
    heavy = _and(
        _ge(r.get("pack_years"), c["heavy_smoking"]["pack_years_min"]), _or(current, _and(former, recent))
    )
    passive = r.get("passive_smoking_years")
    routes = _or(
        heavy,
        None if passive is None else passive > c["passive_smoking"]["years_above"],
        r.get("copd"),
        r.get("occupational_exposure"),
        r.get("family_history_lung_cancer"),
    )
    in_age = None if age is None else c["age"]["min"] <= age <= c["age"]["max"]
    eligible = _and(in_age, routes)
    return "insufficient_data" if eligible is None else "eligible" if eligible else "not_eligible"


def row_blood_pressure(r: Row) -> str:
    status = _status(r, ["sbp", "dbp"])
    if status:
        return status
    g = blood_pressure.GRADES
    level = max(_band(r["sbp"], g["sbp"], "level"), _band(r["dbp"], g["dbp"], "level"))
    return str(g["levels"][level])


def row_glycaemia(r: Row) -> str:
    if _bad(r, ["fpg_mmol", "hba1c_pct"]):
        return "error"
    d, fpg, a1c = glycaemia.DOC["diabetes"], r.get("fpg_mmol"), r.get("hba1c_pct")
    if (fpg is not None and fpg >= d["fpg_min"]) or (a1c is not None and a1c >= d["hba1c_min"]):
        return "diabetes"
    if fpg is None:
        return "insufficient_data"
    return "ifg" if fpg >= glycaemia.DOC["ifg"]["fpg_min"] else "normal"  # no OGTT in a population table


def row_gastric(r: Row) -> str:
    fields = ["age", "sex", "hp_positive", "pg_ratio", "gastrin17"]
    age = r.get("age")
    status = _status(r, fields, None if age is None else age >= 40)
    if status:
        return status
    p = gastric.POINTS
    total = (
        _band(age, p["age"], "points") + p["male"] * (r["sex"] == "M") + p["hp_positive"] * r["hp_positive"]
    )
    total += p["pg_ratio_below"]["points"] * (r["pg_ratio"] < p["pg_ratio_below"]["value"])
    total += _band(r["gastrin17"], p["gastrin17"], "points")
    return str(_band(total, gastric.BANDS, "category"))


def row_psa(r: Row) -> str:
    if _bad(r, ["sex", "age", "psa"]):
        return "error"
    if r.get("sex") == "F":
        return "not_applicable"
    s, age, value = psa.START, r.get("age"), r.get("psa")
    start = _or(
        None if age is None else age > s["age_above"],
        _and(None if age is None else age > s["age_above_with_family_history"], None),
        _and(
            None if age is None else age > s["age_above_with_psa"],
            None if value is None else value > s["psa_above"],
        ),
    )
    if r.get("sex") == "M" and start is False:
        return "not_applicable"
    if r.get("sex") is None or start is None or value is None:
        return "insufficient_data"
    return str(_band(value, psa.TRIAGE["bands"], "category"))


ROW_BY_ROW: dict[str, Callable[[Row], str]] = {
    "china_par": row_china_par,
    "cdrs": row_cdrs,
    "copd_sq": row_copd_sq,
    "lung_screening": row_lung_screening,
    "blood_pressure": row_blood_pressure,
    "glycaemia": row_glycaemia,
    "gastric": row_gastric,
    "psa": row_psa,
}


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


MODELS_ONLY = """
import json, sys, time
from pathlib import Path
from medloop.screening.engine import Summary, local_results, make_plan, select_models
from medloop.screening.frames import open_source
started, cpu = time.perf_counter(), time.process_time()
source = open_source(Path(sys.argv[1]))
plan = make_plan(source.columns, select_models(None))
summary = Summary(plan.models)
for results in local_results(source, plan):
    summary.add(results)
elapsed = {"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu}
print(json.dumps({**elapsed, "rows": summary.rows}))
"""


def row_by_row(sample: list[dict[str, Any]]) -> tuple[float, dict[str, list[str]]]:
    """Seconds per row of the row-by-row implementation over `sample`, and its categories."""
    categories: dict[str, list[str]] = {name: [] for name in ROW_BY_ROW}
    started = time.perf_counter()
    for row in sample:
        for name, model in ROW_BY_ROW.items():
            categories[name].append(model(row))
    return (time.perf_counter() - started) / len(sample), categories


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--sample", type=int, default=100_000, help="rows timed row by row")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "medloop-bench")
    args = parser.parse_args()

    models = select_models(None)
    print(f"models: {', '.join(m.name for m in models)} (all population models); {os.cpu_count()} CPUs")
    first = pl.read_parquet(population(args.sizes[0], args.seed, args.data_dir), n_rows=args.sample)
    baseline, expected = row_by_row(first.to_dicts())
    sample = normalise(first, make_plan(first.columns, models).columns, "the sample")
    evaluate(sample.head(100), models)  # build the models' expressions once, as a run does
    started = time.perf_counter()
    in_memory = evaluate(sample, models)
    engine_row = (time.perf_counter() - started) / sample.height
    agree = sum(
        in_memory.get_column(f"{m}_category").cast(pl.String).to_list() == expected[m] for m in ROW_BY_ROW
    )
    print(
        f"{sample.height:,}-row sample, in memory: row-by-row Python {baseline * 1e6:.1f} µs per row, "
        f"engine {engine_row * 1e6:.2f} µs per row = {baseline / engine_row:,.0f}× "
        f"(categories identical for {agree} of {len(ROW_BY_ROW)} models)"
    )
    for n in args.sizes:
        path = population(n, args.seed, args.data_dir)
        columns = make_plan(pq.ParquetFile(path).schema_arrow.names, models).columns
        out = args.data_dir / f"results-{n}.parquet"
        scan, _ = _child(SCAN, str(path), ",".join(columns), "0", str(n))
        sliced, _ = _child(SCAN, str(path), ",".join(columns), str(DEFAULT_BATCH_ROWS), str(n))
        compute, _ = _child(MODELS_ONLY, str(path))
        screen, peak = _child(SCREEN, str(path), str(out))
        referrals = args.data_dir / f"referrals-{n}.parquet"
        command = _command(MEDLOOP, "screen", str(path), "--out", str(out), "--referrals", str(referrals))
        assert screen["rows"] == compute["rows"] == scan["rows"] == sliced["rows"] == n
        print(f"{n:,} people ({path.stat().st_size / 1e6:,.0f} MB Parquet, {len(columns)} input columns)")
        print("                                             wall   ratio      CPU   ratio")
        for label, run in (
            ("bare Polars scan of the input columns", scan),
            ("the same scan in 500,000-row slices", sliced),
            ("read → type → models, nothing written", compute),
            ("medloop screen: read → models → file", screen),
            ("the command, with start-up and referrals", command),
        ):
            print(
                f"  {label:40s} {run['seconds']:6.2f} s {run['seconds'] / scan['seconds']:5.2f}×"
                f" {run['cpu']:6.2f} s {run['cpu'] / scan['cpu']:5.2f}×"
            )
        print("  (target for medloop screen: ≤ 3× the scan)")
        per_row, cpu_per_row = screen["seconds"] / n, screen["cpu"] / n
        print(
            f"  end to end per row: {per_row * 1e6:.2f} µs = {baseline / per_row:,.0f}× faster than "
            f"row by row (target ≥ 100×); in CPU time {cpu_per_row * 1e6:.2f} µs = "
            f"{baseline / cpu_per_row:,.0f}× (row by row uses one core)"
        )
        print(
            f"  peak RSS of the screening process              {peak / GiB:8.2f} GiB (target ≤ 4 GiB at 10M)",
            flush=True,
        )
        out.unlink()
        referrals.unlink()


if __name__ == "__main__":
    assert set(ROW_BY_ROW) == {m.name for m in MODELS.values() if m.population}
    main()
