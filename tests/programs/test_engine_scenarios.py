"""Pathway scenarios as tables: given a programme, how the patient was enrolled and these events,
the enrolment ends in this state and stage with these open tasks. Pure engine, no database."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from medloop.programs.definitions import add_months, load_definitions
from medloop.programs.engine import Event, Journal, Outcome, run, seed_event
from tests.programs.conftest import T0, at, event, visit


@dataclass
class Scenario:
    name: str
    programme: str
    events: list[Event]
    state: str
    stage: str
    open: set[str]
    seed: dict[str, Any] = field(default_factory=lambda: {"source": "screening"})
    check: Callable[[Outcome], None] | None = None


def _step(n: int) -> Callable[[Outcome], None]:
    def check(o: Outcome) -> None:
        assert o.state.step == n

    return check


def _due(key: str, expected: Any) -> Callable[[Outcome], None]:
    def check(o: Outcome) -> None:
        assert o.state.open[key].due_at == expected

    return check


def _all(*checks: Callable[[Outcome], None]) -> Callable[[Outcome], None]:
    def check(o: Outcome) -> None:
        for c in checks:
            c(o)

    return check


def _ended(reason: str) -> Callable[[Outcome], None]:
    def check(o: Outcome) -> None:
        assert o.state.ended == reason
        assert not o.state.open and not o.state.timers

    return check


def _timepoints(*names: str) -> Callable[[Outcome], None]:
    def check(o: Outcome) -> None:
        assert set(o.state.timepoints) == set(names)

    return check


LOW = {"source": "screening", "ascvd_category": "low", "ascvd_risk": 3.2}
MID = {"source": "screening", "ascvd_category": "intermediate", "ascvd_risk": 7.5}
TITRATING = [visit("v1", 20, 152, 94)]  # grade 1 with intermediate risk: drug treatment starts
LDCT = {"test": "ldct", "nodule_type": "solid", "nodule_status": "baseline", "suspicious_features": False}

SCENARIOS = [
    # --- hypertension ---
    Scenario(
        "htn: enrolled from screening awaits a confirming visit",
        "hypertension",
        [],
        "screened",
        "screening",
        {"education", "follow_up_visit"},
        LOW,
        _due("follow_up_visit", add_months(T0, 1)),
    ),
    Scenario(
        "htn: grade 1, low risk → lifestyle first",
        "hypertension",
        [visit("v1", 20, 150, 92)],
        "lifestyle",
        "treatment",
        {"education", "lifestyle", "follow_up_visit"},
        LOW,
        _step(0),
    ),
    Scenario(
        "htn: lifestyle trial ends uncontrolled → step 1",
        "hypertension",
        [visit("v1", 20, 150, 92), event("t", "tick", at(20 + 84))],
        "titrating",
        "treatment",
        {"education", "lifestyle", "follow_up_visit", "medication_review"},
        LOW,
        _step(1),
    ),
    Scenario(
        "htn: controlled during the lifestyle trial",
        "hypertension",
        [visit("v1", 20, 150, 92), visit("v2", 50, 132, 84), event("t", "tick", at(200))],
        "controlled",
        "follow_up",
        {"education", "lifestyle", "follow_up_visit"},
        LOW,
        _all(_step(0), _due("follow_up_visit", add_months(at(50), 3))),
    ),
    Scenario(
        "htn: grade 1 with intermediate risk → drugs at once",
        "hypertension",
        TITRATING,
        "titrating",
        "treatment",
        {"education", "follow_up_visit", "medication_review"},
        MID,
        _step(1),
    ),
    Scenario(
        "htn: grade 2 → drugs whatever the risk",
        "hypertension",
        [visit("v1", 20, 165, 102)],
        "titrating",
        "treatment",
        {"education", "follow_up_visit", "medication_review"},
        LOW,
        _step(1),
    ),
    Scenario(
        "htn: not confirmed at the visit",
        "hypertension",
        [visit("v1", 20, 128, 82)],
        "not_hypertensive",
        "diagnosis",
        set(),
        LOW,
        _ended("not_hypertensive"),
    ),
    Scenario(
        "htn: controlled → 3-monthly follow-up",
        "hypertension",
        [*TITRATING, visit("v2", 50, 132, 84)],
        "controlled",
        "follow_up",
        {"education", "follow_up_visit", "medication_review"},
        MID,
        _due("follow_up_visit", add_months(at(50), 3)),
    ),
    Scenario(
        "htn: uncontrolled again → next protocol step",
        "hypertension",
        [*TITRATING, visit("v2", 50, 132, 84), visit("v3", 140, 150, 90)],
        "titrating",
        "treatment",
        {"education", "follow_up_visit", "medication_review"},
        MID,
        _all(_step(2), _due("follow_up_visit", add_months(at(140), 1))),
    ),
    Scenario(
        "htn: uncontrolled at the last step → specialist review",
        "hypertension",
        [*TITRATING, visit("v2", 50, 150, 92), visit("v3", 80, 148, 92), visit("v4", 110, 146, 91)],
        "titrating",
        "treatment",
        {"education", "follow_up_visit", "medication_review", "protocol_exhausted"},
        MID,
        _step(3),
    ),
    Scenario(
        "htn: critical reading → urgent review",
        "hypertension",
        [*TITRATING, visit("v2", 30, 186, 112)],
        "titrating",
        "treatment",
        {"education", "follow_up_visit", "medication_review", "critical_reading"},
        MID,
    ),
    Scenario(
        "htn: device alert → urgent task, done when completed",
        "hypertension",
        [
            *TITRATING,
            event("a1", "device_alert", at(25), rule_id="bp-critical-systolic"),
            event("c1", "task_completed", at(26), task="education"),
        ],
        "titrating",
        "treatment",
        {"follow_up_visit", "medication_review", "device_alert"},
        MID,
    ),
    Scenario(
        "htn: home BP above target while controlled → visit brought forward",
        "hypertension",
        [*TITRATING, visit("v2", 50, 132, 84), event("h1", "home_bp", at(60), sbp=142, dbp=88)],
        "controlled",
        "follow_up",
        {"education", "follow_up_visit", "medication_review"},
        MID,
        _due("follow_up_visit", add_months(at(60), 1)),
    ),
    Scenario(
        "htn: call reached and rescheduled",
        "hypertension",
        [
            *TITRATING,
            event(
                "c1", "call_outcome", at(70), outcome="reached_rescheduled", rescheduled_to=at(75).isoformat()
            ),
        ],
        "titrating",
        "treatment",
        {"education", "follow_up_visit", "medication_review"},
        MID,
        _due("follow_up_visit", at(75)),
    ),
    Scenario(
        "htn: call — died",
        "hypertension",
        [*TITRATING, event("c1", "call_outcome", at(70), outcome="died")],
        "titrating",
        "treatment",
        set(),
        MID,
        _ended("died"),
    ),
    Scenario(
        "htn: clinician enrols a known hypertensive",
        "hypertension",
        [],
        "titrating",
        "treatment",
        {"education", "follow_up_visit", "medication_review"},
        {"source": "clinician", "diagnosed": True},
        _step(1),
    ),
    # --- diabetes ---
    Scenario(
        "dm: high CDRS → confirm",
        "diabetes",
        [],
        "confirming",
        "diagnosis",
        {"education", "confirm_diagnosis"},
    ),
    Scenario(
        "dm: FPG 7.8 confirms → management",
        "diabetes",
        [event("t1", "test_result", at(7), test="fpg", fpg_mmol=7.8)],
        "managing",
        "treatment",
        {"education", "hba1c_test", "eye_exam", "foot_exam", "kidney_screen"},
        check=_due("hba1c_test", add_months(at(7), 3)),
    ),
    Scenario(
        "dm: normal FPG → not confirmed",
        "diabetes",
        [event("t1", "test_result", at(7), test="fpg", fpg_mmol=5.0)],
        "no_diabetes",
        "diagnosis",
        set(),
        check=_ended("no_diabetes"),
    ),
    Scenario(
        "dm: composite on target → controlled",
        "diabetes",
        [
            event("t1", "test_result", at(7), test="fpg", fpg_mmol=7.8),
            event("t2", "test_result", at(30), test="lipids", ldl_mmol=2.1),
            visit("v1", 40, 124, 76),
            event("t3", "test_result", at(100), test="hba1c", hba1c_pct=6.6),
        ],
        "controlled",
        "follow_up",
        {"education", "hba1c_test", "eye_exam", "foot_exam", "kidney_screen"},
        check=_due("hba1c_test", add_months(at(100), 3)),
    ),
    Scenario(
        "dm: HbA1c off target again → managing",
        "diabetes",
        [
            event("t1", "test_result", at(7), test="fpg", fpg_mmol=7.8),
            event("t2", "test_result", at(30), test="lipids", ldl_mmol=2.1, hba1c_pct=6.6),
            visit("v1", 40, 124, 76),
            event("t3", "test_result", at(130), test="hba1c", hba1c_pct=7.4),
        ],
        "managing",
        "treatment",
        {"education", "hba1c_test", "eye_exam", "foot_exam", "kidney_screen"},
    ),
    Scenario(
        "dm: eye examination → again in 12 months",
        "diabetes",
        [
            event("t1", "test_result", at(7), test="fpg", fpg_mmol=7.8),
            event("e1", "test_result", at(20), test="eye_exam", result="normal"),
        ],
        "managing",
        "treatment",
        {"education", "hba1c_test", "eye_exam", "foot_exam", "kidney_screen"},
        check=_due("eye_exam", add_months(at(20), 12)),
    ),
    # --- COPD ---
    Scenario(
        "copd: COPD-SQ positive → spirometry referral",
        "copd",
        [],
        "spirometry_due",
        "diagnosis",
        {"education", "spirometry", "spirometry_referral"},
    ),
    Scenario(
        "copd: obstruction confirmed",
        "copd",
        [
            event(
                "s1", "test_result", at(10), test="spirometry", post_bronchodilator=True, fev1_fvc_ratio=0.62
            )
        ],
        "treatment",
        "treatment",
        {"education", "start_treatment", "follow_up_visit"},
    ),
    Scenario(
        "copd: no obstruction",
        "copd",
        [
            event(
                "s1", "test_result", at(10), test="spirometry", post_bronchodilator=True, fev1_fvc_ratio=0.76
            )
        ],
        "not_copd",
        "diagnosis",
        set(),
        check=_ended("not_copd"),
    ),
    Scenario(
        "copd: pre-bronchodilator spirometry does not decide",
        "copd",
        [
            event(
                "s1", "test_result", at(10), test="spirometry", post_bronchodilator=False, fev1_fvc_ratio=0.62
            )
        ],
        "spirometry_due",
        "diagnosis",
        {"education", "spirometry", "spirometry_referral"},
    ),
    Scenario(
        "copd: exacerbation → follow-up → pulmonary rehab → stable",
        "copd",
        [
            event(
                "s1", "test_result", at(10), test="spirometry", post_bronchodilator=True, fev1_fvc_ratio=0.62
            ),
            event("x1", "exacerbation", at(60)),
            event("v1", "visit", at(70)),
            event(
                "r1",
                "referral_outcome",
                at(120),
                capability="pulmonary_rehab",
                outcome="completed",
                task="rehab_referral",
            ),
        ],
        "stable",
        "follow_up",
        {"education", "start_treatment", "follow_up_visit"},
    ),
    # --- chest pain ---
    Scenario(
        "cpc: first contact → ECG due within 10 minutes",
        "chest_pain",
        [],
        "first_contact",
        "diagnosis",
        {"first_ecg"},
        {"source": "clinician", "arrival_mode": "ambulance"},
        _all(_due("first_ecg", T0 + timedelta(minutes=10)), _timepoints("fmc", "ambulance")),
    ),
    Scenario(
        "cpc: STEMI → transfer → balloon → discharge → community",
        "chest_pain",
        [
            event("e1", "first_ecg", at(minutes=6)),
            event("e2", "ecg_transmitted", at(minutes=7)),
            event("d1", "stemi_diagnosis", at(minutes=12), stemi=True),
            event("h1", "hospital_arrival", at(minutes=50), bypass_ed=True),
            event("k1", "cath_lab_activated", at(minutes=15)),
            event("k2", "cath_lab_ready", at(minutes=40)),
            event("b1", "reperfusion", at(minutes=110), method="pci"),
            event("o1", "discharge", at(5)),
            event("v1", "visit", at(30)),
        ],
        "follow_up",
        "follow_up",
        {"community_follow_up", "secondary_prevention", "follow_up_visit"},
        {"source": "clinician", "arrival_mode": "ambulance"},
        _timepoints(
            "fmc",
            "ambulance",
            "first_ecg",
            "prehospital_ecg_transmitted",
            "stemi_diagnosis",
            "door",
            "ed_bypass",
            "cath_lab_activated",
            "cath_lab_ready",
            "balloon",
        ),
    ),
    Scenario(
        "cpc: not a STEMI",
        "chest_pain",
        [
            event("e1", "first_ecg", at(minutes=6)),
            event("d1", "stemi_diagnosis", at(minutes=12), stemi=False),
        ],
        "not_stemi",
        "diagnosis",
        set(),
        {"source": "clinician"},
        _ended("not_stemi"),
    ),
    # --- lung cancer ---
    Scenario(
        "lung: eligible → education, LDCT ordered",
        "lung_cancer",
        [],
        "education",
        "education",
        {"education", "ldct", "ldct_referral"},
    ),
    Scenario(
        "lung: education done → LDCT due",
        "lung_cancer",
        [event("c1", "task_completed", at(3), task="education")],
        "ldct_due",
        "screening",
        {"ldct", "ldct_referral"},
    ),
    Scenario(
        "lung: Lung-RADS 2 → LDCT in 12 months",
        "lung_cancer",
        [event("l1", "test_result", at(14), **LDCT, nodule_long_mm=5, nodule_short_mm=4)],
        "surveillance",
        "screening",
        {"education", "ldct"},
        check=_due("ldct", add_months(at(14), 12)),
    ),
    Scenario(
        "lung: reference example 7.4 × 5.9 mm → category 3, LDCT in 6 months",
        "lung_cancer",
        [event("l1", "test_result", at(14), **LDCT, nodule_long_mm=7.4, nodule_short_mm=5.9)],
        "surveillance",
        "screening",
        {"education", "ldct"},
        check=_due("ldct", add_months(at(14), 6)),
    ),
    Scenario(
        "lung: Lung-RADS 4A (part-solid, solid part 7 mm) → LDCT in 3 months",
        "lung_cancer",
        [
            event(
                "l1",
                "test_result",
                at(14),
                **(LDCT | {"nodule_type": "part_solid"}),
                nodule_long_mm=10,
                nodule_short_mm=8,
                solid_component_mm=7,
            )
        ],
        "surveillance",
        "screening",
        {"education", "ldct"},
        check=_due("ldct", add_months(at(14), 3)),
    ),
    Scenario(
        "lung: Lung-RADS 4A, solid part ≥ 8 mm → LDCT in 3 months and PET/CT",
        "lung_cancer",
        [event("l1", "test_result", at(14), **LDCT, nodule_long_mm=10, nodule_short_mm=8)],
        "surveillance",
        "screening",
        {"education", "ldct", "pet_ct"},
        check=_due("ldct", add_months(at(14), 3)),
    ),
    Scenario(
        "lung: 4B → MDT; biopsy; pathology → MDT; surgery; survivorship",
        "lung_cancer",
        [
            event("l1", "test_result", at(14), **LDCT, nodule_long_mm=17, nodule_short_mm=15),
            event("m1", "mdt_recommendation", at(21), recommendation="biopsy"),
            event("p1", "test_result", at(28), test="pathology", result="adenocarcinoma"),
            event("m2", "mdt_recommendation", at(35), recommendation="surgery"),
            event("t1", "treatment_completed", at(80)),
            event("v1", "visit", at(200)),
        ],
        "survivorship",
        "follow_up",
        {"education", "pet_ct", "diagnostic_ct", "community_follow_up", "follow_up_visit"},
    ),
    Scenario(
        "lung: MDT says surveillance at a date it sets",
        "lung_cancer",
        [
            event("l1", "test_result", at(14), **LDCT, nodule_long_mm=17, nodule_short_mm=15),
            event(
                "m1",
                "mdt_recommendation",
                at(21),
                recommendation="surveillance",
                follow_up_at=at(111).isoformat(),
            ),
        ],
        "surveillance",
        "screening",
        {"education", "pet_ct", "diagnostic_ct", "ldct"},
        check=_due("ldct", at(111)),
    ),
]


@pytest.mark.parametrize("case", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario(case: Scenario) -> None:
    definition = load_definitions()[case.programme]
    outcome = run(definition, seed_event("e-1", T0, case.seed), case.events)
    assert outcome.state.name == case.state
    assert definition.stage(outcome.state.name) == case.stage
    assert set(outcome.state.open) == case.open
    if case.check:
        case.check(outcome)
    # Delivered one at a time in time order, the engine only ever advances, and gets the same result.
    journal = Journal(definition, seed_event("e-1", T0, case.seed))
    for e in sorted(case.events, key=lambda e: e.key):
        journal.deliver([e])
    assert journal.replays == 0
    assert journal.state.to_json() == outcome.state.to_json()
    assert journal.tasks == outcome.tasks


def test_every_stage_of_the_course_is_covered() -> None:
    stages = {d.stage(s) for d in load_definitions().values() for s in d.states}
    assert stages == {"education", "screening", "diagnosis", "treatment", "follow_up", "rehabilitation"}


def test_events_before_enrolment_and_after_the_end_change_nothing() -> None:
    d = load_definitions()["hypertension"]
    seed = seed_event("e-1", T0, LOW)
    base = run(d, seed, [visit("v1", 20, 128, 82)])  # ends: not confirmed
    later = run(d, seed, [visit("v0", -3, 190, 120), visit("v1", 20, 128, 82), visit("v2", 40, 190, 120)])
    assert later.state.ended == base.state.ended == "not_hypertensive"
    assert set(later.tasks) == set(base.tasks)


def test_opening_an_open_task_keeps_one_with_the_earlier_due_time() -> None:
    d = load_definitions()["hypertension"]
    two_alerts = [
        event("a1", "device_alert", at(25), rule_id="bp-critical-systolic"),
        event("a2", "device_alert", at(27), rule_id="bp-critical-systolic"),
    ]
    outcome = run(d, seed_event("e-1", T0, MID), [*TITRATING, *two_alerts])
    alerts = [t for t in outcome.tasks.values() if t.key == "device_alert"]
    assert len(alerts) == 1 and alerts[0].due_at == at(25)
    assert outcome.state.critical
