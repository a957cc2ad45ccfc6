"""`medloop screen` and `medloop score`: outputs, model selection, and clear errors (exit code 2,
no traceback) for input that cannot be screened."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import typer
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from medloop.clinical.catalogue import MODELS, POPULATION_DEFAULT
from medloop.screening.cli import score, screen

app = typer.Typer()
app.command("score")(score)
app.command("screen")(screen)
runner = CliRunner()


def invoke(*args: str | Path) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_screen_parquet(population_parquet: Path, population: pl.DataFrame, tmp_path: Path) -> None:
    out = tmp_path / "results.parquet"
    code, output = invoke("screen", population_parquet, "--out", out, "--batch-rows", "700")
    assert code == 0, output
    results = pl.read_parquet(out)
    expected = ["person_id", *(c for n in POPULATION_DEFAULT for c in MODELS[n].columns())]
    assert results.columns == expected
    assert results.get_column("person_id").to_list() == population.get_column("person_id").to_list()
    assert "Screened 3,000 rows" in output and "china_par" in output and "not_applicable" in output
    assert not list(tmp_path.glob("*.partial"))


def test_csv_gives_the_same_results_as_parquet(
    population_parquet: Path, population_csv: Path, tmp_path: Path
) -> None:
    invoke("screen", population_parquet, "--out", tmp_path / "a.parquet")
    code, output = invoke("screen", population_csv, "--out", tmp_path / "b.csv")
    assert code == 0, output
    from_parquet = pl.read_parquet(tmp_path / "a.parquet")
    from_csv = pl.read_csv(tmp_path / "b.csv", schema=from_parquet.schema)
    assert_frame_equal(from_csv, from_parquet)


def test_booleans_accept_true_false_1_0(tmp_path: Path) -> None:
    rows = (
        "person_id,sbp,dbp,age,copd,smoking,pack_years,years_since_quit,passive_smoking_years,"
        "occupational_exposure,family_history_lung_cancer\n"
    )
    rows += "a,150,85,60,1,never,0,,0,0,FALSE\nb,150,85,60,true,never,0,,0,False,0\n"
    rows += "c,150,85,60,0,never,0,,0,0,0\n"
    (tmp_path / "in.csv").write_text(rows, encoding="utf-8")
    code, output = invoke(
        "screen",
        tmp_path / "in.csv",
        "--out",
        tmp_path / "out.parquet",
        "--models",
        "lung_screening,blood_pressure",
    )
    assert code == 0, output
    results = pl.read_parquet(tmp_path / "out.parquet")
    assert results.get_column("lung_screening_category").to_list() == ["eligible", "eligible", "not_eligible"]
    assert results.columns == [
        "person_id",
        *MODELS["lung_screening"].columns(),
        *MODELS["blood_pressure"].columns(),
    ]


def test_missing_columns_disable_only_their_models(population: pl.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "no_lipids.parquet"
    population.drop("tc_mmol", "hdl_mmol").write_parquet(path, row_group_size=1000)
    code, output = invoke("screen", path, "--out", tmp_path / "out.parquet", "--batch-rows", "1000")
    assert code == 0, output
    assert output.count("china_par disabled: the input lacks tc_mmol, hdl_mmol") == 1
    columns = pl.read_parquet(tmp_path / "out.parquet").columns
    assert "china_par_category" not in columns and "cdrs_category" in columns


def test_missing_values_are_insufficient_data(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("person_id,sbp,dbp\na,150,\nb,,\n", encoding="utf-8")
    invoke("screen", tmp_path / "in.csv", "--out", tmp_path / "out.csv", "--models", "blood_pressure")
    results = pl.read_csv(tmp_path / "out.csv")
    assert results.get_column("blood_pressure_category").to_list() == ["insufficient_data"] * 2
    assert results.get_column("blood_pressure_reasons").to_list() == [
        "missing:dbp",
        "missing:sbp;missing:dbp",
    ]


MALFORMED = [
    (
        "wrong_type.csv",
        b"person_id,sex,age,psa\na,M,60,1.0\nb,M,forty,2.0\n",
        "column 'age': expected a whole number, found 'forty' (row 2 of rows 1–2 of wrong_type.csv)",
    ),
    (
        "bad_bool.csv",
        b"person_id,fpg_mmol,diabetes_symptoms\na,5.0,maybe\n",
        "column 'diabetes_symptoms': expected true/false/1/0, found 'maybe'",
    ),
    ("empty.csv", b"", "empty.csv is empty"),
    ("header_only.csv", b"person_id,sbp,dbp\n", "header_only.csv has no rows"),
    (
        "latin1.csv",
        "person_id,sex,sbp,dbp\nZhāng,M,120,80\n".encode("latin-1", errors="replace") + b"\xe9\xff,F,1,1\n",
        "latin1.csv is not valid UTF-8 text",
    ),
    ("no_key.csv", b"sbp,dbp\n120,80\n", "the input has no key column; add person_id or patient_id"),
    ("people.xlsx", b"PK", "people.xlsx: unknown file type '.xlsx'"),
    ("not_parquet.parquet", b"this is not parquet", "not_parquet.parquet cannot be read"),
    (
        "nothing_to_run.csv",
        b"person_id,height_cm\na,170\n",
        "no model can run: the input lacks required columns",
    ),
]


@pytest.mark.parametrize(("name", "content", "message"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_input_is_a_clear_error(name: str, content: bytes, message: str, tmp_path: Path) -> None:
    (tmp_path / name).write_bytes(content)
    out = tmp_path / "out.parquet"
    code, output = invoke("screen", tmp_path / name, "--out", out)
    assert code == 2
    assert message in output
    assert "Traceback" not in output
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


def test_wrong_parquet_column_type(tmp_path: Path) -> None:
    pl.DataFrame({"person_id": ["a", "b"], "sbp": ["120", "high"], "dbp": [80, 80]}).write_parquet(
        tmp_path / "x.parquet"
    )
    code, output = invoke("screen", tmp_path / "x.parquet", "--out", tmp_path / "out.parquet")
    assert code == 2 and "column 'sbp': expected a number, found 'high'" in output


def test_unknown_model_and_missing_input(population_parquet: Path, tmp_path: Path) -> None:
    code, output = invoke(
        "screen", population_parquet, "--out", tmp_path / "o.parquet", "--models", "framingham"
    )
    assert code == 2 and "unknown model(s): framingham" in output
    code, output = invoke("screen", tmp_path / "nope.parquet", "--out", tmp_path / "o.parquet")
    assert code == 2 and "does not exist" in output


def test_score_command() -> None:
    code, output = invoke(
        "score",
        "cdrs",
        "--json",
        json.dumps(
            {
                "sex": "M",
                "age": 52,
                "height_cm": 100,
                "weight_kg": 25,
                "waist_cm": 88,
                "sbp": 135,
                "family_history_diabetes": True,
            }
        ),
    )
    assert code == 0
    result = json.loads(output)
    assert (result["score"], result["category"], result["model_version"]) == (
        37,
        "high",
        MODELS["cdrs"].version,
    )
    assert invoke("score", "cdrs", "--json", "{")[0] == 2
    assert invoke("score", "nope", "--json", "{}")[0] == 2
    code, output = invoke("score", "cdrs", "--json", '{"age": "old"}')
    assert code == 2 and "expected a whole number" in output


def test_registered_in_the_medloop_command(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_bytes(b"person_id,sex,age,psa\na,M,forty,1\n")
    medloop = Path(sys.executable).parent / "medloop"
    run = subprocess.run(
        [str(medloop), "screen", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "o.csv")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 2, run.stderr
    assert "expected a whole number" in run.stderr and "Traceback" not in run.stderr
