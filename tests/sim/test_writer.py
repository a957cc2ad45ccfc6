"""Writing the region: Parquet table and database (SQLite and PostgreSQL) agree; identifiers are
hashed; re-running is idempotent; a different region needs --replace."""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from medloop.auth.models import AuditEvent
from medloop.network.models import Organisation
from medloop.people.identifiers import hash_identifier, mask_national_id
from medloop.people.models import Patient, PatientIdentifier
from medloop.screening.contract import NAMES
from medloop.sim.population import generate
from medloop.sim.region import build_region
from medloop.sim.writer import RegionError, build_region_outputs, identifier_ids, write_parquet

KEY = "test-identifier-key"
PEOPLE, FACILITIES = 3_000, 30


def count(engine: Engine, model: type) -> int:
    with Session(engine) as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_region_in_parquet_and_database(engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "population.parquet"
    chunks: list[int] = []
    summary = build_region_outputs(
        PEOPLE,
        FACILITIES,
        21,
        out=out,
        engine=engine,
        identifier_key=KEY,
        chunk_size=1_000,
        on_chunk=chunks.append,
    )
    assert chunks == [1_000, 1_000, 1_000]
    assert (summary.status, summary.patients_written, summary.identifiers_written) == (
        "written",
        PEOPLE,
        PEOPLE,
    )
    assert summary.facilities_written == FACILITIES
    assert count(engine, Organisation) == FACILITIES
    assert count(engine, Patient) == PEOPLE
    assert count(engine, PatientIdentifier) == PEOPLE

    table = pl.read_parquet(out)
    assert table.height == PEOPLE and table.columns[: len(NAMES)] == list(NAMES)
    frame = pl.concat(list(generate(PEOPLE, 21, region=build_region(FACILITIES, 21))))
    with Session(engine) as s:
        patients = {p.id: p for p in s.scalars(select(Patient))}
        identifiers = {i.patient_id: i for i in s.scalars(select(PatientIdentifier))}
        orgs = {o.id: o for o in s.scalars(select(Organisation))}
        audit = s.scalars(select(AuditEvent).where(AuditEvent.resource_type == "Patient")).all()
    assert {uuid.UUID(v) for v in table["person_id"]} == set(patients)
    for row in frame.head(200).iter_rows(named=True):
        patient = patients[uuid.UUID(row["person_id"])]
        assert (patient.name, patient.sex, patient.birth_date) == (row["name"], row["sex"], row["birth_date"])
        assert orgs[patient.home_facility_id].code == row["home_facility_code"]
        assert patient.district_code == row["district_code"] and patient.city_code == "379900"
        ident = identifiers[patient.id]
        assert ident.system == "national-id"
        assert ident.value_key == hash_identifier(row["national_id"], KEY) != row["national_id"]
        assert ident.display == mask_national_id(row["national_id"]) and "*" in ident.display
    stored = " ".join(f"{i.value_key} {i.display}" for i in identifiers.values())
    assert not any(nid in stored for nid in frame["national_id"].head(200))
    by_code = {o.code: o for o in orgs.values()}
    assert by_code["HUB-01"].parent_id is None
    assert orgs[by_code["CNTY-01"].parent_id].code == "HUB-01"
    assert set(by_code["HUB-01"].capabilities) >= {"chest_pain_center", "cath_lab", "ldct"}
    assert len(audit) == 1 and audit[0].detail["patients"] == PEOPLE and audit[0].patient_id is None


def test_rerun_is_idempotent_and_a_different_region_needs_replace(engine: Engine, tmp_path: Path) -> None:
    build_region_outputs(500, FACILITIES, 4, engine=engine, identifier_key=KEY)
    again = build_region_outputs(
        500, FACILITIES, 4, engine=engine, identifier_key=KEY, out=tmp_path / "p.parquet"
    )
    assert again.status == "already present" and again.patients_written == 0
    assert pl.read_parquet(tmp_path / "p.parquet").height == 500
    assert count(engine, Patient) == 500

    with pytest.raises(RegionError, match="--replace"):
        build_region_outputs(700, FACILITIES, 5, engine=engine, identifier_key=KEY)
    assert count(engine, Patient) == 500  # nothing partially written

    replaced = build_region_outputs(700, FACILITIES + 5, 5, engine=engine, identifier_key=KEY, replace=True)
    assert replaced.replaced_patients == 500 and replaced.patients_written == 700
    assert count(engine, Patient) == 700
    assert count(engine, PatientIdentifier) == 700
    assert count(engine, Organisation) == FACILITIES + 5


def test_a_write_failing_midway_leaves_nothing(engine: Engine, tmp_path: Path) -> None:
    """A national ID already in the database (here: person 1,500, in the second chunk) is refused;
    neither the database nor the Parquet table keeps anything of the run."""
    frame = pl.concat(list(generate(2_000, 9, region=build_region(FACILITIES, 9))))
    value_key = hash_identifier(frame["national_id"][1_500], KEY)
    org, patient = uuid.uuid4(), uuid.uuid4()
    with Session(engine) as s:
        s.add(
            Organisation(
                id=org, code="ELSEWHERE", name="elsewhere", tier="primary", province_code="110000",
                city_code="110100", district_code="110101", latitude=39.9, longitude=116.4,
            )
        )  # fmt: skip
        s.flush()
        s.add(
            Patient(
                id=patient, family_name="A", given_name="B", name="AB", sex="F", birth_date=date(1970, 1, 1),
                province_code="110000", city_code="110100", district_code="110101", home_facility_id=org,
            )
        )  # fmt: skip
        s.flush()
        s.add(PatientIdentifier(patient_id=patient, system="national-id", value_key=value_key, display="x"))
        s.commit()
    out = tmp_path / "population.parquet"
    with pytest.raises(RegionError, match="refused"):
        build_region_outputs(
            2_000, FACILITIES, 9, engine=engine, identifier_key=KEY, out=out, chunk_size=1_000
        )
    assert (count(engine, Patient), count(engine, PatientIdentifier), count(engine, Organisation)) == (
        1,
        1,
        1,
    )
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))


def test_missing_schema_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RegionError, match="medloop db upgrade"):
        build_region_outputs(
            10, FACILITIES, 1, database_url=f"sqlite:///{tmp_path / 'empty.db'}", identifier_key=KEY
        )


def test_parquet_only_and_empty(tmp_path: Path) -> None:
    summary = build_region_outputs(0, FACILITIES, 1, out=tmp_path / "empty.parquet")
    assert summary.database is None
    empty = pl.read_parquet(tmp_path / "empty.parquet")
    assert empty.height == 0 and empty.columns[: len(NAMES)] == list(NAMES)
    assert write_parquet(generate(1_500, 2, 1_000), tmp_path / "p.parquet") == 1_500
    assert not list(tmp_path.glob(".*.tmp"))


def test_replace_keeps_an_identical_region(engine: Engine) -> None:
    build_region_outputs(300, FACILITIES, 8, engine=engine, identifier_key=KEY)
    same = build_region_outputs(300, FACILITIES, 8, engine=engine, identifier_key=KEY, replace=True)
    assert same.status == "already present" and same.replaced_patients == 0


def test_identifier_ids_flip_one_byte_of_the_patient_id() -> None:
    people = next(generate(2_000, 5, region=build_region(30, 5)))["person_id"]
    ids = [uuid.UUID(s) for s in identifier_ids(people)]
    assert ids == [uuid.UUID(int=uuid.UUID(p).int ^ (0x5A << 64)) for p in people]
    assert ids == sorted(ids) and not set(ids) & {uuid.UUID(p) for p in people}
    assert {i.version for i in ids} == {7}
