"""KPI figures on a hand-built data set (October 2026), the API over them (scoped), the DHIS2
export, and the two commands."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from medloop.auth.principal import system_principal
from medloop.cli import _register, app
from medloop.programs import dhis2, kpi, referrals, service
from medloop.programs.models import KpiValue, Referral
from medloop.screening.models import RiskAssessment
from medloop.settings import get_settings
from tests.factories import World, add_patient, auth

SYSTEM = system_principal()
OCT = date(2026, 10, 1)


def d(month: int, day: int, hour: int = 9, minute: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def _visit(s: Session, pid: uuid.UUID, when: datetime, sbp: float, dbp: float, **more: float) -> None:
    event = service.NewEvent(
        f"v-{uuid.uuid4().hex[:12]}", pid, "visit", when, {"sbp": sbp, "dbp": dbp, **more}
    )
    service.record_events(s, SYSTEM, [event])


@pytest.fixture
def dataset(engine: Engine, world: World) -> World:
    """Hypertension at CHC-A1: a controlled, b uncontrolled, c missed visits (last visit in May), d
    lost to follow-up (enrolled 2025, last visit July 2025), e enrolled in September (not in the
    cohort), f died in August (not counted). At CHC-A2: g controlled. Diabetes at CHC-A1: m on
    target, n HbA1c off target. Two referrals from CHC-A1 in October, one completed after 10 h.
    Chest pain at HUB: three cases in October, one in September."""
    with Session(engine, expire_on_commit=False) as s:
        p = {k: add_patient(s, world, k, "CHC-A2" if k == "g" else "CHC-A1").id for k in "abcdefgmn"}
        htn = {
            k: service.enrol(s, SYSTEM, p[k], "hypertension", at=d(1, 10), data={"ascvd_category": "high"}).id
            for k in "abcfg"
        }
        service.enrol(
            s, SYSTEM, p["d"], "hypertension", at=d(6, 1, year=2025), data={"ascvd_category": "high"}
        )
        service.enrol(s, SYSTEM, p["e"], "hypertension", at=d(9, 15), data={"ascvd_category": "high"})
        _visit(s, p["a"], d(7, 1), 150, 95)
        _visit(s, p["a"], d(10, 5), 130, 80)
        _visit(s, p["b"], d(9, 1), 150, 95)
        _visit(s, p["c"], d(5, 10), 150, 95)
        _visit(s, p["d"], d(7, 1, year=2025), 150, 95)
        _visit(s, p["g"], d(3, 1), 150, 95)
        _visit(s, p["g"], d(10, 20), 128, 78)
        _visit(s, p["a"], d(11, 3), 170, 100)  # after the month: ignored
        service.record_call_outcome(s, SYSTEM, htn["f"], outcome="died", at=d(8, 1))
        for k in "mn":
            service.enrol(s, SYSTEM, p[k], "diabetes", at=d(2, 1), diagnosed=True)
        _visit(s, p["m"], d(9, 1), 124, 76, hba1c_pct=6.5, ldl_mmol=2.2)
        _visit(s, p["n"], d(9, 1), 124, 76, hba1c_pct=7.5, ldl_mmol=2.2)
        # Screening: of the CHC-A1 residents (alice and the others above, all born 1960), three screened.
        for k in ("a", "b", "m"):
            s.add(
                RiskAssessment(
                    patient_id=p[k],
                    model="china_par",
                    model_version="t",
                    score=8.0,
                    category="intermediate",
                    assessed_at=d(3, 1),
                )
            )
        s.add(
            RiskAssessment(
                patient_id=p["c"],
                model="china_par",
                model_version="t",
                score=None,
                category="insufficient_data",
                assessed_at=d(3, 1),
            )
        )
        # Referrals from CHC-A1 in October: COPD spirometry for two patients, one completed in 10 hours.
        for k, hours in (("a", 10), ("b", None)):
            service.enrol(s, SYSTEM, p[k], "copd", at=d(10, 2, 8))
            ref = s.scalars(
                select(Referral).where(Referral.patient_id == p[k], Referral.capability == "spirometry")
            ).one()
            if hours:
                referrals.set_status(s, SYSTEM, ref.id, "accepted", at=d(10, 2, 9))
                referrals.set_status(s, SYSTEM, ref.id, "completed", at=d(10, 2, 8 + hours))
        # Chest pain at HUB: FMC→ECG 6, 12, 8 minutes; door→balloon 80 and 100 minutes.
        for i, (ecg, door, balloon) in enumerate([(6, 40, 120), (12, 30, 130), (8, None, None)]):
            pid = add_patient(s, world, f"cp{i}", "HUB").id
            fmc = d(10, 10 + i, 8)
            service.enrol(s, SYSTEM, pid, "chest_pain", at=fmc, data={"arrival_mode": "ambulance"})
            events = [service.NewEvent(f"e{i}", pid, "first_ecg", fmc + timedelta(minutes=ecg))]
            events.append(
                service.NewEvent(
                    f"x{i}",
                    pid,
                    "stemi_diagnosis",
                    fmc + timedelta(minutes=ecg + 5),
                    {"stemi": door is not None},
                )
            )
            if door is not None and balloon is not None:
                events.append(
                    service.NewEvent(
                        f"h{i}", pid, "hospital_arrival", fmc + timedelta(minutes=door), {"bypass_ed": i == 0}
                    )
                )
                events.append(
                    service.NewEvent(
                        f"b{i}", pid, "reperfusion", fmc + timedelta(minutes=balloon), {"method": "pci"}
                    )
                )
            service.record_events(s, SYSTEM, events)
        september = add_patient(s, world, "cp-sep", "HUB").id
        service.enrol(s, SYSTEM, september, "chest_pain", at=d(9, 20))
        service.record_events(s, SYSTEM, [service.NewEvent("e-sep", september, "first_ecg", d(9, 20, 10))])
        kpi.refresh(s, OCT)
        s.commit()
    return world


def _values(
    engine: Engine, level: str, unit: str, programme: str
) -> dict[str, tuple[float | None, float | None, float | None]]:
    with Session(engine) as s:
        rows = s.scalars(
            select(KpiValue).where(
                KpiValue.period == OCT,
                KpiValue.level == level,
                KpiValue.unit == unit,
                KpiValue.programme == programme,
            )
        )
        return {r.indicator: (r.numerator, r.denominator, r.value) for r in rows}


def test_figures(engine: Engine, dataset: World) -> None:
    # Hypertension control: the four classes add up to the cohort.
    got = _values(engine, "facility", "CHC-A1", "hypertension")
    assert got["enrolled"][2] == 5  # a b c d e (f died)
    assert got["cohort"][2] == 4  # e joined less than 3 months ago
    for indicator in ("bp_controlled", "bp_uncontrolled", "missed_visits", "lost_to_follow_up"):
        assert got[indicator] == (1, 4, 0.25), indicator
    district = _values(engine, "district", "330122", "hypertension")  # CHC-A1 and CHC-A2
    assert district["bp_controlled"] == (2, 5, 0.4) and district["enrolled"][2] == 6
    assert _values(engine, "region", "330100", "hypertension")["cohort"][2] == 5
    # Metabolic composite control.
    got = _values(engine, "facility", "CHC-A1", "diabetes")
    assert got["composite_controlled"] == (1, 2, 0.5) and got["hba1c_controlled"] == (1, 2, 0.5)
    # Screening coverage: 8 living residents aged 66 (alice, a–e, m, n; f died); an
    # 'insufficient_data' result does not count as screened.
    assert _values(engine, "facility", "CHC-A1", "screening")["screening_coverage"] == (3, 8, 3 / 8)
    # Referral completion and median time.
    got = _values(engine, "facility", "CHC-A1", "copd")
    assert got["referral_completion"] == (1, 2, 0.5)
    assert got["referral_median_hours"][2] == pytest.approx(10.0)
    # Chest Pain Center.
    got = _values(engine, "facility", "HUB", "chest_pain")
    assert got["enrolled"][2] == 3  # the non-STEMI case has ended; September's is still open
    assert got["fmc_to_ecg_compliance"] == (2, 3, pytest.approx(2 / 3))
    assert got["fmc_to_ecg_median_minutes"][2] == pytest.approx(8.0)
    assert got["fmc_to_ecg_mean_minutes"][2] == pytest.approx(26 / 3)
    assert got["door_to_balloon_compliance"] == (1, 2, 0.5)  # 80 and 100 minutes
    assert got["door_to_balloon_median_minutes"][2] == pytest.approx(90.0)
    assert got["ed_bypass"] == (1, 2, 0.5)  # ambulance STEMIs: 2, one straight to the cath lab
    assert got["prehospital_ecg"] == (0, 2, 0.0)
    # Refreshing again replaces the month.
    with Session(engine) as s:
        before = len(s.scalars(select(KpiValue).where(KpiValue.period == OCT)).all())
        assert kpi.refresh(s, OCT) == before
        s.commit()


def test_kpi_api_is_scoped(client: TestClient, dataset: World) -> None:
    mine = client.get(
        "/api/v1/kpis", headers=auth(client, "doc-a1"), params={"period": "2026-10", "limit": 500}
    ).json()
    units = {(i["level"], i["unit"]) for i in mine["items"]}
    assert (
        ("facility", "CHC-A1") in units and ("district", "330122") in units and ("region", "330100") in units
    )
    assert ("facility", "HUB") not in units and ("facility", "CHC-A2") not in units
    hub = client.get("/api/v1/kpis", headers=auth(client, "screener-hub"), params={"period": "2026-10"})
    assert hub.status_code == 403  # screeners do not read programme figures
    admin = client.get(
        "/api/v1/kpis",
        headers=auth(client, "admin"),
        params={
            "period": "2026-10",
            "level": "facility",
            "unit": "HUB",
            "indicator": "door_to_balloon_median_minutes",
        },
    )
    assert [i["value"] for i in admin.json()["items"]] == [90.0]
    assert (
        client.get("/api/v1/kpis", headers=auth(client, "admin"), params={"period": "2026-13"}).status_code
        == 422
    )


def test_dhis2_data_value_set(engine: Engine, dataset: World, tmp_path: Path) -> None:
    with Session(engine) as s:
        result = dhis2.data_value_set(s, OCT, dhis2.load_mapping())
    values = {(v["dataElement"], v["orgUnit"]): v for v in result.document["dataValues"]}
    assert values[("MEDLOOP_HTN_BP_CONTROLLED", "CHC-A1")] == {
        "dataElement": "MEDLOOP_HTN_BP_CONTROLLED",
        "period": "202610",
        "orgUnit": "CHC-A1",
        "value": "1",
    }
    assert values[("MEDLOOP_CPC_D2B_COMPLIANCE_PCT", "HUB")]["value"] == "50"
    mapping = tmp_path / "map.yaml"
    mapping.write_text(
        "levels: [facility, district]\nunmapped: skip\ndata_set: DsHtn000001\n"
        "org_units: {facility: {CHC-A1: OuChcA10001}, district: {'330122': OuDist00001}}\n"
        "data_elements:\n  - {programme: hypertension, indicator: bp_controlled, field: value,"
        " data_element: DeCtrl00001, scale: 100, decimals: 1}\n",
        encoding="utf-8",
    )
    with Session(engine) as s:
        result = dhis2.data_value_set(s, OCT, dhis2.load_mapping(mapping))
    assert result.document["dataSet"] == "DsHtn000001" and result.document["period"] == "202610"
    assert sorted((v["orgUnit"], v["value"]) for v in result.document["dataValues"]) == [
        ("OuChcA10001", "25"),
        ("OuDist00001", "40"),
    ]
    assert result.skipped_units == 1  # CHC-A2
    broken = tmp_path / "broken.yaml"
    broken.write_text("levels: [ward]\ndata_elements: []\n", encoding="utf-8")
    with pytest.raises(dhis2.MappingError, match="levels/0"):
        dhis2.load_mapping(broken)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, db_url: str) -> Iterator[CliRunner]:
    monkeypatch.setenv("MEDLOOP_DATABASE_URL", db_url)
    monkeypatch.setenv("MEDLOOP_LOG_LEVEL", "WARNING")
    get_settings.cache_clear()
    _register()
    yield CliRunner()
    get_settings.cache_clear()


def test_commands(cli: CliRunner, dataset: World, tmp_path: Path) -> None:
    result = cli.invoke(app, ["kpi", "refresh", "--period", "2026-10", "--months", "2"])
    assert result.exit_code == 0, result.output
    assert "2026-09:" in result.output and "2026-10:" in result.output
    out = tmp_path / "dvs.json"
    result = cli.invoke(app, ["export", "dhis2", "--period", "2026-10", "--out", str(out)])
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text(encoding="utf-8"))
    assert {v["period"] for v in document["dataValues"]} == {"202610"}
    assert cli.invoke(app, ["kpi", "refresh", "--period", "October"]).exit_code == 2
