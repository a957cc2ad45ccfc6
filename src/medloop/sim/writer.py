"""Writing a synthetic region: the Parquet population table and, optionally, the database
(organisations, patients and their national-ID identifiers) in one transaction, chunk by chunk. The
rows are built column-wise as Polars frames and written by `store.bulk.insert_frame` (CSV COPY on
PostgreSQL, the driver's executemany on SQLite), while a background thread generates the next chunk.

Re-running: the simulated region is recognised by its made-up city code. If the database already
holds exactly this region (same seed, facility count, people and reference date), nothing is written
and the run succeeds (idempotent, with or without `replace`). If it holds a different simulated
region, the run is refused unless `replace=True`, which deletes the old region first: its
facilities, every patient registered at them, and those patients' identifiers."""

from __future__ import annotations

import gc
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import polars as pl
import pyarrow.parquet as pq
from sqlalchemy import Connection, Engine, Table, bindparam, delete, func, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from medloop.auth.audit import record_access
from medloop.auth.principal import system_principal
from medloop.background import read_ahead
from medloop.logging import get_logger
from medloop.network.models import Organisation
from medloop.people.identifiers import hash_identifier, mask_national_id
from medloop.people.models import IdentifierSystem, Patient, PatientIdentifier
from medloop.sim.population import (
    CONTRACT_SCHEMA,
    DEFAULT_AS_OF,
    DEFAULT_CHUNK_ROWS,
    EXTRA_COLUMNS,
    ascii_strings,
    generate,
    population_table,
)
from medloop.sim.region import Region, build_region, load_yaml
from medloop.store.base import Base, utcnow
from medloop.store.bulk import bulk_insert, insert_frame
from medloop.store.engine import make_engine

log = get_logger(__name__)

_T = TypeVar("_T")
# `stream(prepare, write)` of `build_region_outputs`: generate (and prepare) in the background, write here.
_Stream = Callable[[Callable[[pl.DataFrame], Any] | None, Callable[[Any], None] | None], None]

# Identifier row ids are the patient's id with one byte of the seed-derived bits flipped (see
# `identifier_ids`).
_IDENTIFIER_ID_BYTE = 0x5A
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_HEX_VALUE = np.zeros(256, dtype=np.uint8)
_HEX_VALUE[_HEX] = np.arange(16, dtype=np.uint8)
_HEX_VALUE[np.frombuffer(b"ABCDEF", dtype=np.uint8)] = np.arange(10, 16, dtype=np.uint8)


_SQLITE_CACHE_KIB = 256 * 1024


class RegionError(Exception):
    """The region cannot be written as asked (a clear, user-facing reason)."""


@dataclass
class RegionSummary:
    people: int
    facilities: int
    seed: int
    as_of: date
    parquet_path: str | None = None
    database: str | None = None  # URL without password
    status: str = "written"  # written | already present
    patients_written: int = 0
    identifiers_written: int = 0
    facilities_written: int = 0
    replaced_patients: int = 0
    seconds: float = 0.0
    tiers: dict[str, int] = field(default_factory=dict)


# --- Parquet -------------------------------------------------------------------------------------


class ParquetSink:
    """Streams frames into one Parquet file, written under a temporary name and renamed when complete
    so that a failed run leaves no half-written table."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self._writer: pq.ParquetWriter | None = None
        self.rows = 0

    def write(self, frame: pl.DataFrame) -> None:
        table = population_table(frame).to_arrow(compat_level=pl.CompatLevel.oldest())
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self._tmp, table.schema, compression="zstd")
        self._writer.write_table(table)
        self.rows += frame.height

    def close(self, ok: bool) -> None:
        if self._writer is not None:
            self._writer.close()
        elif ok:  # no rows at all: still write an empty table with the right columns
            empty = pl.DataFrame(schema={**CONTRACT_SCHEMA, **EXTRA_COLUMNS})
            pq.write_table(empty.to_arrow(compat_level=pl.CompatLevel.oldest()), self._tmp)
        if ok:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)


def write_parquet(frames: Iterable[pl.DataFrame], path: Path) -> int:
    """Write generated frames as the Parquet population table; returns the row count."""
    sink = ParquetSink(path)
    ok = False
    try:
        for frame in frames:
            sink.write(frame)
        ok = True
    finally:
        sink.close(ok)
    return sink.rows


# --- database ------------------------------------------------------------------------------------


def organisation_rows(region: Region, now: datetime) -> list[dict[str, Any]]:
    by_code = region.by_code()
    return [
        {
            "id": f.id,
            "code": f.code,
            "name": f.name,
            "tier": f.tier,
            "parent_id": by_code[f.parent_code].id if f.parent_code else None,
            "province_code": region.province_code,
            "city_code": region.city_code,
            "district_code": f.district_code,
            "latitude": f.latitude,
            "longitude": f.longitude,
            "capabilities": list(f.capabilities),
            "timezone": "Asia/Shanghai",
            "active": True,
            "created_at": now,
            "updated_at": now,
        }
        for f in region.facilities
    ]


def patient_frame(frame: pl.DataFrame, region: Region, now: datetime) -> pl.DataFrame:
    """The patient table's rows of a generated frame (id = the Parquet `person_id`)."""
    facility_id = {f.code: str(f.id) for f in region.facilities}
    spec = load_yaml("region.yaml")
    prefix = f"{spec['province']['name']}{region.city_name}"
    address = {d.code: f"{prefix}{d.name}" for d in region.districts}
    # JSON text of the four consent combinations, indexed by 2 * sms + research.
    consent = {
        2 * sms + research: json.dumps(
            {"data_processing": True, "sms_contact": bool(sms), "research": bool(research)}
        )
        for sms in (0, 1)
        for research in (0, 1)
    }
    consent_index = 2 * pl.col("consent_sms").cast(pl.Int64) + pl.col("consent_research").cast(pl.Int64)
    return frame.select(
        pl.col("person_id").alias("id"),
        "family_name",
        "given_name",
        "name",
        "sex",
        "birth_date",
        "phone",
        pl.lit(region.province_code).alias("province_code"),
        pl.lit(region.city_code).alias("city_code"),
        "district_code",
        pl.col("district_code").replace_strict(address, return_dtype=pl.String).alias("address"),
        pl.col("home_facility_code")
        .replace_strict(facility_id, return_dtype=pl.String)
        .alias("home_facility_id"),
        consent_index.replace_strict(consent, return_dtype=pl.String).alias("consent"),
        pl.lit(True).alias("active"),
        pl.lit(False).alias("deceased"),
        pl.lit(1).alias("version"),
        pl.lit(now).alias("created_at"),
        pl.lit(now).alias("updated_at"),
    )


def identifier_frame(frame: pl.DataFrame, identifier_key: str) -> pl.DataFrame:
    """The national-ID identifier rows of a generated frame: keyed hash and masked display only."""
    numbers = frame["national_id"].to_list()
    return pl.DataFrame(
        {
            "id": identifier_ids(frame["person_id"]),
            "patient_id": frame["person_id"],
            "value_key": [hash_identifier(n, identifier_key) for n in numbers],
            "display": [mask_national_id(n) for n in numbers],
        }
    ).with_columns(
        pl.lit(IdentifierSystem.NATIONAL_ID.value).alias("system"),
        pl.lit(None, dtype=pl.String).alias("organisation_id"),
    )


def identifier_ids(person_ids: pl.Series) -> pl.Series:
    """Identifier row ids: the patient's id with byte 7 (the one after the version nibble's byte)
    XORed with 0x5a: distinct from every patient id, in the same order, same UUID version and
    variant. Done on the ASCII of the canonical form (hex digits 16-17)."""
    chars = np.frombuffer("".join(person_ids.to_list()).encode("ascii"), dtype=np.uint8)
    chars = chars.reshape(len(person_ids), 36).copy()
    byte = (_HEX_VALUE[chars[:, 16]] << 4 | _HEX_VALUE[chars[:, 17]]) ^ _IDENTIFIER_ID_BYTE
    chars[:, 16], chars[:, 17] = _HEX[byte >> 4], _HEX[byte & 0x0F]
    return ascii_strings(chars)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while the rows are built and inserted: hundreds of
    thousands of short-lived containers (and no cycles) make its repeated scans a large cost."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def _region_facility_ids(conn: Connection, city_code: str) -> dict[str, uuid.UUID]:
    rows = conn.execute(select(Organisation.code, Organisation.id).where(Organisation.city_code == city_code))
    return {code: oid for code, oid in rows}


def _patient_count(conn: Connection, facility_ids: Iterable[uuid.UUID]) -> int:
    ids = list(facility_ids)
    if not ids:
        return 0
    stmt = (
        select(func.count())
        .select_from(Patient)
        .where(Patient.home_facility_id.in_(bindparam("ids", expanding=True)))
    )
    return int(conn.execute(stmt, {"ids": ids}).scalar_one())


def _is_same_region(
    conn: Connection, region: Region, existing: dict[str, uuid.UUID], people: int, first_id: str | None
) -> bool:
    wanted = {f.code: f.id for f in region.facilities}
    if existing != wanted or _patient_count(conn, wanted.values()) != people:
        return False
    if first_id is None:
        return True
    found = conn.execute(select(Patient.id).where(Patient.id == uuid.UUID(first_id))).first()
    return found is not None


def delete_region(conn: Connection, city_code: str) -> int:
    """Delete a simulated region (recognised by its city code): identifiers, patients registered at
    its facilities, then the facilities. Returns the number of patients deleted."""
    fac = select(Organisation.id).where(Organisation.city_code == city_code).scalar_subquery()
    patients = select(Patient.id).where(Patient.home_facility_id.in_(fac)).scalar_subquery()
    conn.execute(delete(PatientIdentifier).where(PatientIdentifier.patient_id.in_(patients)))
    conn.execute(delete(PatientIdentifier).where(PatientIdentifier.organisation_id.in_(fac)))
    deleted = conn.execute(delete(Patient).where(Patient.home_facility_id.in_(fac))).rowcount
    conn.execute(delete(Organisation).where(Organisation.city_code == city_code))
    return int(deleted or 0)


def _check_schema(conn: Connection) -> None:
    missing = [t for t in ("organisation", "patient", "patient_identifier") if not inspect(conn).has_table(t)]
    if missing:
        raise RegionError(f"the database has no {', '.join(missing)} table: run `medloop db upgrade` first")


def _check_code_clash(conn: Connection, region: Region) -> None:
    codes = [f.code for f in region.facilities]
    stmt = select(Organisation.code).where(
        Organisation.code.in_(bindparam("codes", expanding=True)), Organisation.city_code != region.city_code
    )
    clash = conn.execute(stmt, {"codes": codes}).scalars().first()
    if clash is not None:
        raise RegionError(
            f"organisation code {clash} is already used by a facility outside the simulated region"
        )


# --- the whole run -------------------------------------------------------------------------------


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def build_region_outputs(
    people: int,
    facilities: int,
    seed: int,
    *,
    as_of: date = DEFAULT_AS_OF,
    out: Path | None = None,
    database_url: str | None = None,
    identifier_key: str = "",
    replace: bool = False,
    chunk_size: int = DEFAULT_CHUNK_ROWS,
    on_chunk: Callable[[int], None] | None = None,
    engine: Engine | None = None,
) -> RegionSummary:
    """Build the region and write it: Parquet to `out` (if given) and the database at `database_url`
    (or `engine`) if given. Returns counts."""
    started = time.perf_counter()
    region = build_region(facilities, seed)
    summary = RegionSummary(people=people, facilities=facilities, seed=seed, as_of=as_of)
    for f in region.facilities:
        summary.tiers[f.tier] = summary.tiers.get(f.tier, 0) + 1
    sink = ParquetSink(out) if out is not None else None
    if sink is not None:
        summary.parquet_path = str(out)

    def stream(prepare: Callable[[pl.DataFrame], _T] | None, write: Callable[[_T], None] | None) -> None:
        """Generate the people, and `prepare` each chunk's rows, on a background thread one chunk
        ahead of this one, which writes the Parquet table and `write`s to the database."""

        def chunks() -> Iterator[tuple[pl.DataFrame, _T | None]]:
            for frame in generate(people, seed, chunk_size, region=region, as_of=as_of):
                yield frame, (prepare(frame) if prepare is not None else None)

        ok = False
        try:
            with _gc_paused(), closing(read_ahead(chunks(), name="sim-generate")) as items:
                for frame, rows in items:
                    if sink is not None:
                        sink.write(frame)
                    if write is not None and rows is not None:
                        write(rows)
                    if on_chunk is not None:
                        on_chunk(frame.height)
            ok = True
        finally:
            if sink is not None:
                sink.close(ok)

    if engine is None and database_url is None:
        stream(None, None)
    else:
        if not identifier_key:
            raise RegionError("an identifier key is needed to hash national IDs")
        eng = engine if engine is not None else make_engine(database_url or "")
        summary.database = _safe_url(eng.url.render_as_string(hide_password=False))
        try:
            _write_database(eng, region, people, seed, as_of, identifier_key, replace, summary, stream)
        finally:
            if engine is None:
                eng.dispose()
    summary.seconds = time.perf_counter() - started
    log.info(
        "sim region done",
        extra={
            "status": summary.status,
            "people": people,
            "facilities": facilities,
            "patients_written": summary.patients_written,
            "seconds": round(summary.seconds, 2),
        },
    )
    return summary


def _write_database(
    engine: Engine,
    region: Region,
    people: int,
    seed: int,
    as_of: date,
    identifier_key: str,
    replace: bool,
    summary: RegionSummary,
    stream: _Stream,
) -> None:
    first = next(generate(1, seed, region=region, as_of=as_of), None) if people else None
    first_id = str(first["person_id"][0]) if first is not None else None
    now = utcnow()
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                # Random UUID keys touch pages all over the indexes: a larger page cache for this
                # connection (256 MiB) roughly halves SQLite's insert time at a million rows.
                conn.exec_driver_sql(f"PRAGMA cache_size=-{_SQLITE_CACHE_KIB}")
            _check_schema(conn)
            _check_code_clash(conn, region)
            existing = _region_facility_ids(conn, region.city_code)
            if existing and _is_same_region(conn, region, existing, people, first_id):
                summary.status = "already present"
                stream(None, None)  # the Parquet table is still written when asked for
                return
            if existing and not replace:
                raise RegionError(
                    f"the database already holds a different simulated region ({len(existing)} facilities, "
                    f"city code {region.city_code}); run again with --replace to delete it and write this one"
                )
            if existing:
                summary.replaced_patients = delete_region(conn, region.city_code)

            summary.facilities_written = bulk_insert(
                conn, _table(Organisation), organisation_rows(region, now)
            )

            def prepare(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
                return patient_frame(frame, region, now), identifier_frame(frame, identifier_key)

            def write(rows: tuple[pl.DataFrame, pl.DataFrame]) -> None:
                patients, identifiers = rows
                summary.patients_written += insert_frame(conn, _table(Patient), patients)
                summary.identifiers_written += insert_frame(conn, _table(PatientIdentifier), identifiers)

            stream(prepare, write)
            with Session(bind=conn) as session:
                record_access(
                    session,
                    system_principal("operations"),
                    "create",
                    "Patient",
                    [],
                    detail={"source": "sim region", "patients": summary.patients_written, "seed": seed},
                )
    except IntegrityError as exc:
        raise RegionError(
            "the database refused the region (other records refer to the simulated facilities or patients, "
            f"or an identifier already exists): {type(exc.orig).__name__}"
        ) from None
