"""Programme definitions: YAML files in `definitions/`, validated at load by a JSON Schema
(`definition.schema.json`) and by reference checks, then compiled for the engine.

A bad file fails with its name, the line and the reason (`DefinitionError`), e.g.

    hypertension.yaml:41: transitions[3].to: unknown state 'controled'

The format is described in docs/programs.md. In short: `parameters` hold every clinical number
(value, source, confirmed); `conditions` name tests over the event and the enrolment's state;
`states` carry a stage of the course; `handlers` run on every matching event, then the first
matching `transition` out of the current state runs and moves the enrolment on.
"""

from __future__ import annotations

import calendar
import json
import operator
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

DEFINITIONS_DIR = Path(__file__).parent / "definitions"

STAGES = ("education", "screening", "diagnosis", "treatment", "follow_up", "rehabilitation")
# Event kinds every programme understands (programmes may declare more under `events`).
COMMON_EVENTS = {
    "enrolled": "the enrolment itself (its seed event): source, reason, risk at enrolment",
    "visit": "a clinic visit: BP, glucose, HbA1c, LDL-C, weight, medication changes, notes",
    "home_bp": "a home blood-pressure reading from a connected device",
    "device_alert": "a device alert (critical reading) for the patient",
    "screening_result": "a stored screening risk assessment",
    "test_result": "a test result (laboratory, imaging, spirometry, examinations)",
    "referral_outcome": "a referral reached its end: completed, declined or revoked",
    "mdt_recommendation": "the recommendation of an MDT review",
    "call_outcome": "the outcome of a call from the worklist",
    "task_completed": "a care-team member completed (or cancelled) a task",
    "tick": "time passes (fires due timers)",
    "timer": "a timer fired (internal: raised by the engine when time passes its due time)",
}
TASK_KINDS = (
    "follow_up_visit",
    "test",
    "referral",
    "mdt_review",
    "education",
    "urgent_review",
    "medication_review",
    "treatment",
    "call_patient",
)
# Open tasks of these kinds make a patient due for follow-up (the worklists' "next due").
FOLLOW_UP_KINDS = frozenset({"follow_up_visit", "test"})
# Kinds the engine itself acts on in every programme (task completions, call outcomes, referral
# outcomes, the clock), so every enrolment receives them.
BUILTIN_EVENTS = frozenset({"task_completed", "call_outcome", "referral_outcome", "tick"})
# Kinds only the engine and the service create.
INTERNAL_EVENTS = frozenset({"enrolled", "timer"})
ANY_STATE = "*"

_SCHEMA = json.loads(
    resources.files("medloop.programs").joinpath("definition.schema.json").read_text("utf-8")
)
_VALIDATOR = jsonschema.Draft202012Validator(_SCHEMA)
_DURATION = re.compile(r"^(\d+) (minute|hour|day|week|month|year)s?$")
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "in": lambda a, b: a in b,
    "not_in": lambda a, b: a not in b,
    "contains": lambda a, b: isinstance(a, list | tuple) and b in a,
}

Path_ = tuple[str | int, ...]


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false, so `on:` and `no` stay strings."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _first in "tTfF":
    _Loader.yaml_implicit_resolvers.setdefault(_first, []).insert(
        0, ("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"))
    )


class DefinitionError(ValueError):
    """A programme definition that cannot be loaded: which file, which line, why."""

    def __init__(self, file: str, line: int | None, reason: str) -> None:
        super().__init__(f"{file}:{line if line is not None else '?'}: {reason}")
        self.file, self.line, self.reason = file, line, reason


# --- values the engine evaluates -------------------------------------------------------------


class Facts:
    """What conditions and values read: the event being applied and the enrolment's state."""

    __slots__ = ("event_at", "event_data", "event_kind", "state_name", "step", "vars")

    def __init__(
        self,
        event_kind: str,
        event_at: datetime,
        event_data: Mapping[str, Any],
        state_name: str,
        step: int,
        vars: Mapping[str, Any],
    ) -> None:
        self.event_kind, self.event_at, self.event_data = event_kind, event_at, event_data
        self.state_name, self.step, self.vars = state_name, step, vars


Getter = Callable[[Facts], Any]
Condition = Callable[[Facts], bool]


@dataclass(frozen=True)
class Duration:
    amount: int
    unit: str

    def after(self, at: datetime) -> datetime:
        if self.unit == "month":
            return add_months(at, self.amount)
        if self.unit == "year":
            return add_months(at, 12 * self.amount)
        return at + timedelta(**{f"{self.unit}s": self.amount})

    def before(self, at: datetime) -> datetime:
        return Duration(-self.amount, self.unit).after(at)


def add_months(at: datetime, months: int) -> datetime:
    """Calendar months later, on the same day or the month's last day."""
    index = at.year * 12 + at.month - 1 + months
    year, month = divmod(index, 12)
    day = min(at.day, calendar.monthrange(year, month + 1)[1])
    return at.replace(year=year, month=month + 1, day=day)


def parse_duration(text: str) -> Duration:
    if text == "now":
        return Duration(0, "minute")
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (e.g. '3 months', '10 minutes', 'now')")
    return Duration(int(match.group(1)), match.group(2))


@dataclass(frozen=True)
class Due:
    """When something is due: a duration after the event, or a time the event carries."""

    duration: Duration | None = None
    event_field: str | None = None

    def at(self, facts: Facts) -> datetime | None:
        if self.duration is not None:
            return self.duration.after(facts.event_at)
        value = facts.event_data.get(self.event_field or "")
        if isinstance(value, datetime):
            return value
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value)
            except ValueError:
                return None
        return None


# --- the compiled definition -----------------------------------------------------------------


@dataclass(frozen=True)
class TaskSpec:
    kind: str
    key: str
    title: str
    due: Due
    priority: str
    detail: Mapping[str, Any]


@dataclass(frozen=True)
class Action:
    """One step of a rule. `op` is the action name; the other fields are its compiled arguments."""

    op: str
    task: TaskSpec | None = None
    keys: tuple[str, ...] = ()
    due: Due | None = None
    values: tuple[tuple[str, Getter], ...] = ()
    name: str = ""
    actions: tuple[Action, ...] = ()


@dataclass(frozen=True)
class Rule:
    on: frozenset[str]
    states: frozenset[str] | None  # None: any state
    when: Condition | None
    actions: tuple[Action, ...]
    to: str | None = None  # transitions only
    where: str = ""  # "transitions[3]", for messages


@dataclass(frozen=True)
class Metric:
    id: str
    title: str
    source: str
    confirmed: bool
    start: str | None = None
    end: str | None = None
    target_minutes: float | None = None
    numerator: tuple[str, ...] = ()
    denominator: tuple[str, ...] = ()
    goal: float | None = None

    @property
    def interval(self) -> bool:
        return self.start is not None


@dataclass(frozen=True)
class Definition:
    id: str
    version: int
    title: str
    source: str
    file: str
    parameters: Mapping[str, Mapping[str, Any]]
    states: Mapping[str, Mapping[str, Any]]
    handlers: tuple[Rule, ...]
    transitions: tuple[Rule, ...]
    protocol: tuple[Mapping[str, Any], ...]
    enrolment: Mapping[str, Any]
    events: frozenset[str]  # every kind a rule listens to
    timepoints: tuple[str, ...]
    metrics: tuple[Metric, ...]
    mdt_recommendations: tuple[str, ...]
    kpis: tuple[str, ...]
    raw: Mapping[str, Any] = field(repr=False)
    # The rules that listen to each kind (in file order), so the engine looks only at those.
    handlers_for: Mapping[str, tuple[Rule, ...]] = field(default_factory=dict, repr=False)
    transitions_for: Mapping[str, tuple[Rule, ...]] = field(default_factory=dict, repr=False)

    def param(self, dotted: str) -> Any:
        return _resolve_param(self.parameters, dotted)

    def stage(self, state: str) -> str:
        return str(self.states[state]["stage"])

    def terminal(self, state: str) -> bool:
        return bool(self.states[state].get("terminal", False))

    def screening_rules(self) -> list[tuple[str, tuple[str, ...]]]:
        return [(r["model"], tuple(r["categories"])) for r in self.enrolment.get("screening", [])]

    def alert_rules(self) -> tuple[str, ...]:
        return tuple(self.enrolment.get("device_alerts", []))

    def summary(self) -> dict[str, Any]:
        """A plain description for the API (no compiled parts)."""
        return {
            "id": self.id,
            "version": self.version,
            "title": self.title,
            "source": self.source,
            "states": {k: dict(v) for k, v in self.states.items()},
            "stages": sorted({self.stage(s) for s in self.states}, key=STAGES.index),
            "parameters": {k: dict(v) for k, v in self.parameters.items()},
            "protocol": [dict(s) for s in self.protocol],
            "enrolment": dict(self.enrolment),
            "events": sorted(self.events),
            "timepoints": list(self.timepoints),
            "metrics": [m.__dict__ for m in self.metrics],
            "mdt_recommendations": list(self.mdt_recommendations),
            "kpis": list(self.kpis),
        }


# --- loading -----------------------------------------------------------------------------------


class _Lines:
    """Line numbers of the nodes of one YAML document, by path (1-based)."""

    def __init__(self, root: yaml.Node) -> None:
        self.root = root

    def of(self, path: Sequence[str | int]) -> int:
        """The line of the deepest node on the path that exists: for a mapping entry, the line of
        its key (where the thing is named)."""
        node, mark = self.root, self.root.start_mark
        for part in path:
            found = _child(node, part)
            if found is None:
                break
            key, node = found
            mark = (key or node).start_mark
        return int(mark.line) + 1


def _child(node: yaml.Node, part: str | int) -> tuple[yaml.Node | None, yaml.Node] | None:
    """(key node, value node) of a mapping entry, or (None, item) of a sequence item."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == part:
                return key, value
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        return None, node.value[part]
    return None


def _duplicate_keys(node: yaml.Node, path: Path_ = ()) -> Iterator[tuple[yaml.Node, Path_, str]]:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if key.value in seen:
                yield key, path, str(key.value)
            seen.add(key.value)
            yield from _duplicate_keys(value, (*path, key.value))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*path, i))


def _where(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_definition(text: str, file: str) -> Definition:
    """Validate and compile one definition document; `file` names it in errors."""
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        context = (
            f" ({exc.context} on line {exc.context_mark.line + 1})"
            if exc.context and exc.context_mark
            else ""
        )
        raise DefinitionError(
            file, mark.line + 1 if mark else None, f"not valid YAML: {exc.problem}{context}"
        ) from None
    if root is None:
        raise DefinitionError(file, 1, "the file is empty")
    lines = _Lines(root)
    for key_node, path, key in _duplicate_keys(root):
        raise DefinitionError(
            file, key_node.start_mark.line + 1, f"{_where(path)}: key {key!r} appears twice"
        )
    doc = yaml.load(text, Loader=_Loader)
    errors = sorted(_VALIDATOR.iter_errors(doc), key=lambda e: (len(e.absolute_path), list(map(str, e.path))))
    if errors:
        # The deepest error says most; jsonschema's best_match picks the most relevant one.
        best = jsonschema.exceptions.best_match(errors)
        where = list(best.absolute_path)
        extra = _extra_keys(best)
        line = lines.of([*where, extra[0]] if extra else where)
        raise DefinitionError(file, line, f"{_where(where)}: {_schema_reason(best)}")
    return _Compiler(doc, file, lines).compile()


def _extra_keys(error: jsonschema.ValidationError) -> list[str]:
    """The keys an `additionalProperties: false` error is about."""
    if error.validator != "additionalProperties" or not isinstance(error.instance, dict):
        return []
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    allowed = set(schema.get("properties", {}))
    patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
    return [k for k in error.instance if k not in allowed and not any(p.search(k) for p in patterns)]


def _schema_reason(error: jsonschema.ValidationError) -> str:
    extra = _extra_keys(error)
    if extra:
        return f"unknown key(s) {', '.join(map(repr, extra))}"
    if error.validator == "additionalProperties":
        return str(error.message)
    if error.validator == "oneOf":
        return f"{error.message} (check the keys and value types)"
    return str(error.message)


@cache
def load_definitions(directory: str | None = None) -> dict[str, Definition]:
    """Every programme definition in `directory` (default: the packaged `definitions/`), by id."""
    folder = Path(directory) if directory else DEFINITIONS_DIR
    found: dict[str, Definition] = {}
    for path in sorted(folder.glob("*.yaml")):
        definition = parse_definition(path.read_text(encoding="utf-8"), path.name)
        if definition.id in found:
            raise DefinitionError(
                path.name, 1, f"programme id {definition.id!r} is also used by {found[definition.id].file}"
            )
        found[definition.id] = definition
    return found


def get_definition(programme: str) -> Definition:
    from medloop.errors import NotFound

    definitions = load_definitions()
    if programme not in definitions:
        raise NotFound(f"unknown programme {programme!r}; known: {', '.join(sorted(definitions))}")
    return definitions[programme]


def _resolve_param(parameters: Mapping[str, Mapping[str, Any]], dotted: str) -> Any:
    head, *rest = dotted.split(".")
    if head not in parameters:
        raise KeyError(head)
    value: Any = parameters[head]["value"]
    for part in rest:
        if not isinstance(value, Mapping) or part not in value:
            raise KeyError(dotted)
        value = value[part]
    return value


def _by_kind(rules: Sequence[Rule]) -> dict[str, tuple[Rule, ...]]:
    kinds = {k for r in rules for k in r.on}
    return {k: tuple(r for r in rules if k in r.on) for k in kinds}


def _all(parts: Sequence[Condition]) -> Condition:
    items = tuple(parts)

    def test(f: Facts) -> bool:
        for part in items:  # noqa: SIM110 (a loop runs for every event: faster than all(genexpr))
            if not part(f):
                return False
        return True

    return test


def _any(parts: Sequence[Condition]) -> Condition:
    items = tuple(parts)

    def test(f: Facts) -> bool:
        for part in items:  # noqa: SIM110 (as above)
            if part(f):
                return True
        return False

    return test


def _not(part: Condition) -> Condition:
    def test(f: Facts) -> bool:
        return not part(f)

    return test


def _exists(get: Getter, want: bool) -> Condition:
    def test(f: Facts) -> bool:
        return (get(f) is not None) == want

    return test


class _Compiler:
    def __init__(self, doc: dict[str, Any], file: str, lines: _Lines) -> None:
        self.doc, self.file, self.lines = doc, file, lines
        self.params: dict[str, Mapping[str, Any]] = doc.get("parameters", {})
        self.states: dict[str, Mapping[str, Any]] = doc["states"]
        self.kinds = set(COMMON_EVENTS) | set(doc.get("events", {}))
        self.timepoints = tuple(doc.get("timepoints", []))
        self.named: dict[str, Condition] = {}
        self.compiling: list[str] = []

    def fail(self, path: Sequence[str | int], reason: str) -> DefinitionError:
        return DefinitionError(self.file, self.lines.of(path), f"{_where(path)}: {reason}")

    def compile(self) -> Definition:
        doc = self.doc
        for name in doc.get("conditions", {}):
            self._named(name, ("conditions", name))
        handlers = tuple(
            self._rule(r, ("handlers", i), transition=False) for i, r in enumerate(doc.get("handlers", []))
        )
        transitions = tuple(
            self._rule(r, ("transitions", i), transition=True) for i, r in enumerate(doc["transitions"])
        )
        if not any("enrolled" in t.on for t in transitions):
            raise self.fail(
                ("transitions",), "no transition handles 'enrolled' (the enrolment's first event)"
            )
        metrics = tuple(self._metric(m, ("metrics", i)) for i, m in enumerate(doc.get("metrics", [])))
        recommendations = tuple(doc.get("mdt", {}).get("recommendations", []))
        self._check_reachable(transitions)
        self._check_enrolment()
        return Definition(
            id=doc["id"],
            version=doc["version"],
            title=doc["title"],
            source=doc["source"],
            file=self.file,
            parameters=self.params,
            states=self.states,
            handlers=handlers,
            transitions=transitions,
            protocol=tuple(doc.get("protocol", {}).get("steps", [])),
            enrolment=doc["enrolment"],
            events=frozenset(k for r in (*handlers, *transitions) for k in r.on) | BUILTIN_EVENTS,
            timepoints=self.timepoints,
            metrics=metrics,
            mdt_recommendations=recommendations,
            kpis=tuple(doc.get("kpis", [])),
            raw=doc,
            handlers_for=_by_kind(handlers),
            transitions_for=_by_kind(transitions),
        )

    # conditions

    def _named(self, name: str, path: Path_) -> Condition:
        if name in self.named:
            return self.named[name]
        if name in self.compiling:
            raise self.fail(
                path, f"condition {name!r} refers to itself ({' → '.join([*self.compiling, name])})"
            )
        spec = self.doc.get("conditions", {}).get(name)
        if spec is None:
            raise self.fail(path, f"unknown condition {name!r}")
        self.compiling.append(name)
        compiled = self._condition(spec, ("conditions", name))
        self.compiling.pop()
        self.named[name] = compiled
        return compiled

    def _condition(self, spec: Any, path: Path_) -> Condition:
        if isinstance(spec, str):
            negate = spec.startswith("not ")
            ref = self._named(spec[4:] if negate else spec, path)
            return _not(ref) if negate else ref
        parts: list[Condition] = []
        for key, value in spec.items():
            here = (*path, key)
            if key in ("all", "any"):
                subs = [self._condition(s, (*here, i)) for i, s in enumerate(value)]
                parts.append(_all(subs) if key == "all" else _any(subs))
            elif key == "not":
                parts.append(_not(self._condition(value, here)))
            else:
                parts.extend(self._comparisons(key, value, here))
        return parts[0] if len(parts) == 1 else _all(parts)

    def _comparisons(self, path_text: str, spec: Mapping[str, Any], path: Path_) -> list[Condition]:
        get = self._getter(path_text, path)
        out: list[Condition] = []
        for op, raw in spec.items():
            if op == "exists":
                out.append(_exists(get, bool(raw)))
                continue
            value = self._value(raw, (*path, op))
            if op in ("in", "not_in") and not isinstance(value, list | tuple):
                raise self.fail((*path, op), f"'{op}' needs a list, got {value!r}")
            compare = _OPS[op]

            def test(
                f: Facts, get: Getter = get, compare: Callable[[Any, Any], bool] = compare, value: Any = value
            ) -> bool:
                left = get(f)
                if left is None:
                    return False
                try:
                    return compare(left, value)
                except TypeError:
                    return False

            out.append(test)
        return out

    def _getter(self, text: str, path: Path_) -> Getter:
        scope, _, name = text.partition(".")
        if scope == "event":
            if name == "at":
                return lambda f: f.event_at
            if name == "kind":
                return lambda f: f.event_kind
            return lambda f: f.event_data.get(name)
        if scope == "state":
            if name == "step":
                return lambda f: f.step
            if name == "name":
                return lambda f: f.state_name
            return lambda f: f.vars.get(name)
        raise self.fail(path, f"{text!r}: a path starts with 'event.' or 'state.'")

    def _value(self, raw: Any, path: Path_) -> Any:
        """A literal, or `$parameter.path` resolved now (definitions are static)."""
        if isinstance(raw, str) and raw.startswith("$"):
            try:
                return _resolve_param(self.params, raw[1:])
            except KeyError:
                raise self.fail(path, f"unknown parameter {raw!r}") from None
        if isinstance(raw, list):
            return [self._value(v, (*path, i)) for i, v in enumerate(raw)]
        return raw

    def _value_getter(self, raw: Any, path: Path_) -> Getter:
        if isinstance(raw, str) and (raw.startswith("event.") or raw.startswith("state.")):
            return self._getter(raw, path)
        constant = self._value(raw, path)
        return lambda _f: constant

    def _due(self, text: str, path: Path_) -> Due:
        if text.startswith("event."):
            return Due(event_field=text[len("event.") :])
        value = text
        if text.startswith("$"):
            value = self._value(text, path)
            if not isinstance(value, str):
                raise self.fail(path, f"parameter {text!r} is not a duration: {value!r}")
        try:
            return Due(duration=parse_duration(value))
        except ValueError as exc:
            raise self.fail(path, str(exc)) from None

    # rules and actions

    def _rule(self, spec: Mapping[str, Any], path: Path_, *, transition: bool) -> Rule:
        on = [spec["on"]] if isinstance(spec["on"], str) else list(spec["on"])
        for i, kind in enumerate(on):
            if kind not in self.kinds:
                where = (*path, "on") if isinstance(spec["on"], str) else (*path, "on", i)
                raise self.fail(
                    where,
                    f"unknown event kind {kind!r}; declare it under 'events' or use one of "
                    f"{', '.join(sorted(COMMON_EVENTS))}",
                )
        key = "from" if transition else "in"
        states = spec.get(key)
        if states is not None:
            for i, name in enumerate(states):
                if name != ANY_STATE and name not in self.states:
                    raise self.fail((*path, key, i), f"unknown state {name!r}")
        to = spec.get("to")
        if to is not None and to not in self.states:
            raise self.fail((*path, "to"), f"unknown state {to!r}")
        when = self._condition(spec["when"], (*path, "when")) if "when" in spec else None
        actions = self._actions(spec.get("do", []), (*path, "do"))
        any_state = states is None or ANY_STATE in states
        return Rule(
            on=frozenset(on),
            states=None if any_state else frozenset(states or ()),
            when=when,
            actions=actions,
            to=to,
            where=_where(path),
        )

    def _actions(self, specs: Sequence[Mapping[str, Any]], path: Path_) -> tuple[Action, ...]:
        return tuple(self._action(a, (*path, i)) for i, a in enumerate(specs))

    def _action(self, spec: Mapping[str, Any], path: Path_) -> Action:
        ((op, arg),) = spec.items()
        here = (*path, op)
        if op == "open":
            return Action(op, task=self._task(arg, here))
        if op in ("close", "cancel", "unset"):
            return Action(op, keys=tuple(arg))
        if op == "reschedule":
            return Action(op, keys=tuple(arg["tasks"]), due=self._due(arg["due"], (*here, "due")))
        if op == "set":
            return Action(op, values=tuple((k, self._value_getter(v, (*here, k))) for k, v in arg.items()))
        if op == "count":
            return Action(op, name=arg)
        if op == "timepoint":
            if arg not in self.timepoints:
                raise self.fail(here, f"unknown timepoint {arg!r}; declare it under 'timepoints'")
            return Action(op, name=arg)
        if op == "timer":
            return Action(op, name=arg["name"], due=self._due(arg["in"], (*here, "in")))
        if op == "cancel_timer":
            return Action(op, name=arg)
        if op == "step_up":
            if not self.doc.get("protocol"):
                raise self.fail(here, "step_up needs a 'protocol' in the definition")
            return Action(
                op,
                due=self._due(arg.get("due", "now"), (*here, "due")),
                actions=self._actions(arg.get("at_last_step", []), (*here, "at_last_step")),
            )
        if op == "end":
            return Action(op, name=arg)
        raise self.fail(here, f"unknown action {op!r}")  # the schema makes this unreachable

    def _task(self, spec: Mapping[str, Any], path: Path_) -> TaskSpec:
        kind = spec["task"]
        if kind == "referral" and not spec.get("capability"):
            raise self.fail(path, "a referral task needs a 'capability'")
        if spec.get("capability"):
            from medloop.network.models import Capability

            known = {c.value for c in Capability}
            if spec["capability"] not in known:
                raise self.fail((*path, "capability"), f"unknown capability {spec['capability']!r}")
        detail = dict(spec.get("detail", {}))
        for extra in ("capability", "direction"):
            if extra in spec:
                detail[extra] = spec[extra]
        return TaskSpec(
            kind=kind,
            key=spec.get("key", kind),
            title=spec["title"],
            due=self._due(spec["due"], (*path, "due")),
            priority=spec.get("priority", "urgent" if kind == "urgent_review" else "routine"),
            detail=detail,
        )

    def _metric(self, spec: Mapping[str, Any], path: Path_) -> Metric:
        names = [spec.get("from"), spec.get("to"), *spec.get("numerator", []), *spec.get("denominator", [])]
        for name in names:
            if name is not None and name not in self.timepoints:
                raise self.fail(path, f"unknown timepoint {name!r} in metric {spec['id']!r}")
        return Metric(
            id=spec["id"],
            title=spec.get("title", spec["id"]),
            source=spec["source"],
            confirmed=spec["confirmed"],
            start=spec.get("from"),
            end=spec.get("to"),
            target_minutes=spec.get("target_minutes"),
            numerator=tuple(spec.get("numerator", [])),
            denominator=tuple(spec.get("denominator", [])),
            goal=spec.get("goal"),
        )

    def _check_reachable(self, transitions: Sequence[Rule]) -> None:
        reached = {"new"}
        grew = True
        while grew:
            grew = False
            for t in transitions:
                if t.to and t.to not in reached and (t.states is None or t.states & reached):
                    reached.add(t.to)
                    grew = True
        for name in self.states:
            if name not in reached:
                raise self.fail(("states", name), f"state {name!r} cannot be reached from 'new'")

    def _check_enrolment(self) -> None:
        from medloop.clinical.catalogue import MODELS
        from medloop.devices.alerts import load_rules

        for i, rule in enumerate(self.doc["enrolment"].get("screening", [])):
            model = MODELS.get(rule["model"])
            if model is None:
                raise self.fail(
                    ("enrolment", "screening", i, "model"), f"unknown screening model {rule['model']!r}"
                )
            for j, category in enumerate(rule["categories"]):
                if category not in model.categories:
                    raise self.fail(
                        ("enrolment", "screening", i, "categories", j),
                        f"{category!r} is not a category of {model.name} ({', '.join(model.categories)})",
                    )
        known = {r.id for r in load_rules()}
        for i, rule in enumerate(self.doc["enrolment"].get("device_alerts", [])):
            if rule not in known:
                raise self.fail(("enrolment", "device_alerts", i), f"unknown device alert rule {rule!r}")
