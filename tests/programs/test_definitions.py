"""Programme definitions: the packaged ones load and carry a source and confirmed flag for every
number; a broken one fails at load with its file, the line and the reason."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medloop.programs.cli import app
from medloop.programs.definitions import DefinitionError, load_definitions, parse_definition

MINI = """\
id: mini
version: 1
title: Mini
source: "test"
parameters:
  interval:
    value: "3 months"
    source: "test"
    confirmed: false
enrolment:
  clinician: true
conditions:
  high: {event.sbp: {">=": 140}}
states:
  new: {stage: screening}
  waiting: {stage: follow_up}
transitions:
  - on: enrolled
    from: [new]
    to: waiting
    do:
      - open: {task: follow_up_visit, title: "Visit", due: $interval}
"""

# (what to change, into what, the line the error must point at (a text on it), the reason)
BROKEN = [
    ("    to: waiting", "    to: wating", "to: wating", "transitions[0].to: unknown state 'wating'"),
    ("title: Mini", "title: Mini\ncolour: blue", "colour: blue", "unknown key(s) 'colour'"),
    ("due: $interval", "due: 3 monhts", "due: 3 monhts", "does not match"),
    ("due: $interval", "due: $intervall", "due: $intervall", "unknown parameter '$intervall'"),
    (
        '    source: "test"\n    confirmed: false',
        '    source: "test"',
        "  interval:",
        "'confirmed' is a required property",
    ),
    ("  - on: enrolled", "  - on: enroled", "on: enroled", "unknown event kind 'enroled'"),
    (
        "  waiting: {stage: follow_up}",
        "  waiting: {stage: follow_up}\n  orphan: {stage: treatment}",
        "orphan:",
        "state 'orphan' cannot be reached",
    ),
    (
        "  waiting: {stage: follow_up}",
        "  waiting: {stage: aftercare}",
        "waiting:",
        "'aftercare' is not one of",
    ),
    (
        "task: follow_up_visit, title",
        "task: referral, title",
        "open:",
        "a referral task needs a 'capability'",
    ),
    (
        "  clinician: true",
        "  clinician: true\n  screening:\n    - {model: copd_sq, categories: [severe]}",
        "categories: [severe]",
        "'severe' is not a category of copd_sq",
    ),
    (
        '  high: {event.sbp: {">=": 140}}',
        "  high: {any: [high]}",
        "high: {any",
        "condition 'high' refers to itself",
    ),
    (
        '  high: {event.sbp: {">=": 140}}',
        '  high: {patient.sbp: {">=": 140}}',
        "high:",
        "unknown key(s) 'patient.sbp'",
    ),
    ("version: 1", "version: 1\nversion: 2", "version: 2", "key 'version' appears twice"),
    ("title: Mini", "title: [Mini", 'source: "test"', "while parsing a flow sequence on line 3"),
    (
        "      - open: {task: follow_up_visit",
        "      - opne: {task: follow_up_visit",
        "opne:",
        "unknown key(s) 'opne'",
    ),
]


@pytest.mark.parametrize(("old", "new", "marker", "reason"), BROKEN, ids=[b[3][:40] for b in BROKEN])
def test_broken_definition_names_file_line_and_reason(old: str, new: str, marker: str, reason: str) -> None:
    assert old in MINI
    text = MINI.replace(old, new, 1)
    expected_line = next(i for i, line in enumerate(text.splitlines(), start=1) if marker in line)
    with pytest.raises(DefinitionError) as caught:
        parse_definition(text, "mini.yaml")
    error = caught.value
    assert (error.file, error.line) == ("mini.yaml", expected_line), str(error)
    assert reason in error.reason, str(error)
    assert str(error).startswith(f"mini.yaml:{expected_line}: ")


def test_the_minimal_definition_is_valid() -> None:
    definition = parse_definition(MINI, "mini.yaml")
    assert definition.param("interval") == "3 months"


def test_packaged_definitions_load() -> None:
    definitions = load_definitions()
    assert set(definitions) == {"hypertension", "diabetes", "copd", "chest_pain", "lung_cancer"}
    for d in definitions.values():
        for name, parameter in d.parameters.items():
            assert parameter["source"] and isinstance(parameter["confirmed"], bool), (d.id, name)
            if not parameter["confirmed"]:  # an unconfirmed number says why
                assert re.search(r"UNCONFIRMED|placeholder|not in the reference pack", parameter["source"]), (
                    d.id,
                    name,
                )
        assert d.terminal  # every definition has a way to end besides the built-in call outcomes


def test_hypertension_protocol_is_data() -> None:
    steps = load_definitions()["hypertension"].protocol
    assert [s["title"] for s in steps] == [
        "amlodipine",
        "add an ARB or ACE inhibitor",
        "add a thiazide-like diuretic",
    ]


def test_validate_command(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["validate"])
    assert ok.exit_code == 0 and "5 definition(s) valid" in ok.output
    (tmp_path / "mini.yaml").write_text(MINI.replace("    to: waiting", "    to: nowhere"), encoding="utf-8")
    bad = runner.invoke(app, ["validate", str(tmp_path)])
    assert bad.exit_code == 1
    assert "mini.yaml:20: transitions[0].to: unknown state 'nowhere'" in bad.output
    load_definitions.cache_clear()


def test_two_files_with_one_id(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(MINI, encoding="utf-8")
    (tmp_path / "b.yaml").write_text(MINI, encoding="utf-8")
    with pytest.raises(DefinitionError, match=r"b\.yaml:1: programme id 'mini' is also used by a\.yaml"):
        load_definitions(str(tmp_path))
