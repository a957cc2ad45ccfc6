"""The pathway engine: a pure state machine, (state, event) → (state, task changes).

No I/O, no clock, no randomness: the same definition, seed and events always give the same state
and tasks, whatever order the events were delivered in. Events are applied in effective-time
order (time, then id); the service keeps the stored events and, when one arrives that belongs
before events already applied, replays the enrolment from its seed (`run`). Re-delivering an
event is a no-op (the store ignores a known id; `run` ignores a repeated id).

Timers are the passing of time: an action arms a named timer; before any event is applied, every
timer due at or before the event's time fires first (as an internal `timer` event at its due
time), so a `tick` event at a given time is all that "time passes" needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from medloop.programs.definitions import FOLLOW_UP_KINDS, Action, Definition, Due, Facts, Rule

SEED_PREFIX = "enrolled:"
CALL_OUTCOMES = ("reached_rescheduled", "not_reached", "moved_away", "died")
_RESCHEDULED_TO = Due(event_field="rescheduled_to")


@dataclass(frozen=True)
class Event:
    id: str
    kind: str
    at: datetime  # effective time, timezone-aware
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[datetime, str]:
        return (self.at, self.id)


@dataclass(frozen=True)
class Task:
    """One occurrence of a task: `ref` is `<key>#<n>`, unique within the enrolment and the same on
    every replay."""

    ref: str
    key: str
    kind: str
    title: str
    priority: str
    status: str  # open | done | cancelled
    due_at: datetime
    opened_at: datetime
    closed_at: datetime | None
    event_id: str
    detail: Mapping[str, Any]


@dataclass
class State:
    name: str = "new"
    step: int = 0
    vars: dict[str, Any] = field(default_factory=dict)
    open: dict[str, Task] = field(default_factory=dict)  # open tasks by key
    counts: dict[str, int] = field(default_factory=dict)  # occurrences opened, by key
    timers: dict[str, datetime] = field(default_factory=dict)
    timepoints: dict[str, datetime] = field(default_factory=dict)
    ended: str | None = None
    ended_at: datetime | None = None
    since: datetime | None = None  # the seed's time: earlier events do not belong to the enrolment
    cursor: tuple[datetime, str] | None = None  # the last event applied
    applied: int = 0

    def copy(self) -> State:
        return replace(
            self,
            vars=dict(self.vars),
            open=dict(self.open),
            counts=dict(self.counts),
            timers=dict(self.timers),
            timepoints=dict(self.timepoints),
        )

    # What worklists and KPIs read, derived from the state.

    @property
    def critical(self) -> bool:
        return any(t.priority == "urgent" for t in self.open.values())

    @property
    def next_due_at(self) -> datetime | None:
        dues = [t.due_at for t in self.open.values() if t.kind in FOLLOW_UP_KINDS]
        return min(dues) if dues else None

    @property
    def next_timer_at(self) -> datetime | None:
        return min(self.timers.values()) if self.timers else None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "step": self.step,
            "vars": self.vars,
            "open": {k: _task_json(t) for k, t in self.open.items()},
            "counts": self.counts,
            "timers": {k: v.isoformat() for k, v in self.timers.items()},
            "timepoints": {k: v.isoformat() for k, v in self.timepoints.items()},
            "ended": self.ended,
            "ended_at": _iso(self.ended_at),
            "since": _iso(self.since),
            "cursor": [self.cursor[0].isoformat(), self.cursor[1]] if self.cursor else None,
            "applied": self.applied,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> State:
        cursor = doc.get("cursor")
        return cls(
            name=doc["name"],
            step=doc["step"],
            vars=dict(doc["vars"]),
            open={k: _task_from_json(v) for k, v in doc["open"].items()},
            counts=dict(doc["counts"]),
            timers={k: datetime.fromisoformat(v) for k, v in doc["timers"].items()},
            timepoints={k: datetime.fromisoformat(v) for k, v in doc["timepoints"].items()},
            ended=doc.get("ended"),
            ended_at=_parse(doc.get("ended_at")),
            since=_parse(doc.get("since")),
            cursor=(datetime.fromisoformat(cursor[0]), cursor[1]) if cursor else None,
            applied=doc.get("applied", 0),
        )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _task_json(t: Task) -> dict[str, Any]:
    return {
        "ref": t.ref,
        "key": t.key,
        "kind": t.kind,
        "title": t.title,
        "priority": t.priority,
        "status": t.status,
        "due_at": t.due_at.isoformat(),
        "opened_at": t.opened_at.isoformat(),
        "closed_at": _iso(t.closed_at),
        "event_id": t.event_id,
        "detail": dict(t.detail),
    }


def _task_from_json(d: Mapping[str, Any]) -> Task:
    return Task(
        ref=d["ref"],
        key=d["key"],
        kind=d["kind"],
        title=d["title"],
        priority=d["priority"],
        status=d["status"],
        due_at=datetime.fromisoformat(d["due_at"]),
        opened_at=datetime.fromisoformat(d["opened_at"]),
        closed_at=_parse(d.get("closed_at")),
        event_id=d["event_id"],
        detail=dict(d.get("detail", {})),
    )


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


class _Step:
    """Applies one event to a working copy of the state, recording every task that changes."""

    def __init__(self, definition: Definition, state: State) -> None:
        self.d = definition
        self.s = state
        self.changes: dict[str, Task] = {}

    # tasks

    def _put(self, task: Task) -> None:
        self.changes[task.ref] = task
        if task.status == "open":
            self.s.open[task.key] = task
        else:
            self.s.open.pop(task.key, None)

    def open_task(
        self,
        kind: str,
        key: str,
        title: str,
        due: datetime,
        priority: str,
        event: Event,
        detail: Mapping[str, Any],
    ) -> None:
        current = self.s.open.get(key)
        if current is not None:  # opening an open task keeps it, due at the earlier time
            if due < current.due_at:
                self._put(replace(current, due_at=due))
            return
        n = self.s.counts.get(key, 0) + 1
        self.s.counts[key] = n
        self._put(
            Task(f"{key}#{n}", key, kind, title, priority, "open", due, event.at, None, event.id, detail)
        )

    def close(self, keys: Iterable[str], status: str, at: datetime) -> None:
        for key in keys:
            task = self.s.open.get(key)
            if task is not None:
                self._put(replace(task, status=status, closed_at=at))

    def end(self, reason: str, at: datetime) -> None:
        self.close(list(self.s.open), "cancelled", at)
        self.s.timers.clear()
        self.s.ended, self.s.ended_at = reason, at

    # events

    def apply(self, event: Event) -> None:
        if self.s.ended is None:
            for name, due in sorted(self.s.timers.items(), key=lambda kv: (kv[1], kv[0])):
                if due <= event.at and name in self.s.timers and self.s.ended is None:
                    del self.s.timers[name]
                    self._event(Event(f"timer:{name}:{due.isoformat()}", "timer", due, {"name": name}))
            if self.s.ended is None:
                self._event(event)
        if event.kind == "enrolled":
            self.s.since = event.at
            self.s.cursor = (event.at, "")  # events at the same instant come after the seed
        else:
            self.s.cursor = event.key
        self.s.applied += 1

    def _event(self, event: Event) -> None:
        self._builtin(event)
        facts = Facts(event.kind, event.at, event.data, self.s.name, self.s.step, self.s.vars)
        for rule in self.d.handlers_for.get(event.kind, ()):
            if self.s.ended is not None:
                return
            if self._matches(rule, event, facts):
                self._run(rule.actions, event, facts)
        if self.s.ended is not None:
            return
        for rule in self.d.transitions_for.get(event.kind, ()):
            if self._matches(rule, event, facts):
                self._run(rule.actions, event, facts)
                if self.s.ended is None and rule.to is not None:
                    self.s.name = facts.state_name = rule.to
                    if self.d.terminal(rule.to):
                        self.end(rule.to, event.at)
                return

    def _matches(self, rule: Rule, event: Event, facts: Facts) -> bool:
        return (rule.states is None or self.s.name in rule.states) and (rule.when is None or rule.when(facts))

    def _builtin(self, event: Event) -> None:
        """What every programme does with task completions and call outcomes."""
        data = event.data
        if event.kind == "task_completed":
            status = "cancelled" if data.get("status") == "cancelled" else "done"
            self.close([str(data.get("task"))], status, event.at)
        elif event.kind == "referral_outcome" and data.get("task"):
            status = "done" if data.get("outcome") == "completed" else "cancelled"
            self.close([str(data["task"])], status, event.at)
        elif event.kind == "call_outcome":
            outcome = data.get("outcome")
            self.s.vars["calls"] = self.s.vars.get("calls", 0) + 1
            self.s.vars["last_call_outcome"] = outcome
            self.close([k for k, t in self.s.open.items() if t.kind == "call_patient"], "done", event.at)
            if outcome == "reached_rescheduled":
                new_due = _RESCHEDULED_TO.at(Facts(event.kind, event.at, data, "", 0, {}))
                if new_due is not None:
                    for task in [t for t in self.s.open.values() if t.kind in FOLLOW_UP_KINDS]:
                        self._put(replace(task, due_at=new_due))
            elif outcome == "not_reached":
                self.s.vars["unreached_calls"] = self.s.vars.get("unreached_calls", 0) + 1
            elif outcome in ("moved_away", "died"):
                self.end(str(outcome), event.at)

    def _run(self, actions: Sequence[Action], event: Event, facts: Facts) -> None:
        for action in actions:
            if self.s.ended is not None:
                return
            self._action(action, event, facts)

    def _action(self, a: Action, event: Event, facts: Facts) -> None:
        s = self.s
        if a.op == "open" and a.task is not None:
            spec = a.task
            due = spec.due.at(facts) or event.at
            self.open_task(spec.kind, spec.key, spec.title, due, spec.priority, event, spec.detail)
        elif a.op == "close":
            self.close(a.keys, "done", event.at)
        elif a.op == "cancel":
            self.close(a.keys, "cancelled", event.at)
        elif a.op == "reschedule" and a.due is not None:
            moved = a.due.at(facts)
            if moved is not None:
                for key in a.keys:
                    if key in s.open:
                        self._put(replace(s.open[key], due_at=moved))
        elif a.op == "set":
            for name, get in a.values:
                value = get(facts)
                if value is not None:
                    s.vars[name] = _json_value(value)
        elif a.op == "unset":
            for name in a.keys:
                s.vars.pop(name, None)
        elif a.op == "count":
            s.vars[a.name] = s.vars.get(a.name, 0) + 1
        elif a.op == "timepoint":
            s.timepoints.setdefault(a.name, event.at)
        elif a.op == "timer" and a.due is not None:
            fires = a.due.at(facts)
            if fires is not None:
                s.timers[a.name] = fires
        elif a.op == "cancel_timer":
            s.timers.pop(a.name, None)
        elif a.op == "step_up":
            self._step_up(a, event, facts)
        elif a.op == "end":
            self.end(a.name, event.at)

    def _step_up(self, a: Action, event: Event, facts: Facts) -> None:
        protocol = self.d.protocol
        if self.s.step >= len(protocol):
            self._run(a.actions, event, facts)
            return
        self.s.step = facts.step = self.s.step + 1
        step = protocol[self.s.step - 1]
        self.close(["medication_review"], "cancelled", event.at)  # the previous step's review is moot
        due = a.due.at(facts) if a.due is not None else None
        self.open_task(
            "medication_review",
            "medication_review",
            f"Treatment step {self.s.step}: {step['title']}",
            due or event.at,
            "routine",
            event,
            {"step": self.s.step, "medications": list(step["medications"])},
        )


def step(definition: Definition, state: State, event: Event) -> tuple[State, dict[str, Task]]:
    """Apply one event (the caller guarantees effective-time order). The input state is not
    changed; returns the new state and the tasks that changed, by ref."""
    work = _Step(definition, state.copy())
    work.apply(event)
    return work.s, work.changes


def seed_event(enrolment_id: str, at: datetime, data: Mapping[str, Any]) -> Event:
    return Event(f"{SEED_PREFIX}{enrolment_id}", "enrolled", at, data)


def ordered(events: Iterable[Event], since: datetime | None = None) -> list[Event]:
    """Events without repeated ids (the first delivery wins), in effective-time order, from `since`."""
    unique: dict[str, Event] = {}
    for e in events:
        unique.setdefault(e.id, e)
    return sorted((e for e in unique.values() if since is None or e.at >= since), key=lambda e: e.key)


@dataclass
class Outcome:
    state: State
    tasks: dict[str, Task]  # every task touched, by ref (after `run`: every task of the enrolment)
    replayed: bool = False


def run(definition: Definition, seed: Event, events: Iterable[Event]) -> Outcome:
    """The enrolment from its seed through `events` (any order, repeats allowed)."""
    work = _Step(definition, State())
    work.apply(seed)
    for event in ordered(events, seed.at):
        if event.kind != "enrolled":
            work.apply(event)
    return Outcome(work.s, work.changes, replayed=True)


def advance(definition: Definition, state: State, events: Iterable[Event]) -> Outcome | None:
    """Apply new events after those already applied. Returns None when one of them belongs
    before the last event applied (a late arrival): the caller replays with `run` instead.
    Events before the enrolment began are ignored; a repeat of the last event is a no-op."""
    fresh = ordered(events, state.since)
    if state.cursor is not None:
        if any(e.key < state.cursor for e in fresh):
            return None
        fresh = [e for e in fresh if e.key != state.cursor]
    work = _Step(definition, state.copy())
    for event in fresh:
        work.apply(event)
    return Outcome(work.s, work.changes)


class Journal:
    """An in-memory event store for one enrolment, delivering events the way the service does
    with the database (ignore known ids; apply in order; replay on a late arrival). Used by tests
    and benchmarks; the service is the same decision over stored rows."""

    def __init__(self, definition: Definition, seed: Event) -> None:
        self.definition, self.seed = definition, seed
        self.events: dict[str, Event] = {}
        outcome = run(definition, seed, [])
        self.state, self.tasks = outcome.state, dict(outcome.tasks)
        self.replays = 0

    def deliver(self, events: Iterable[Event]) -> None:
        new = [e for e in events if e.id not in self.events]
        for e in new:
            self.events.setdefault(e.id, e)
        if not new:
            return
        outcome = advance(self.definition, self.state, new)
        if outcome is None:
            outcome = run(self.definition, self.seed, self.events.values())
            self.tasks = {}
            self.replays += 1
        self.state = outcome.state
        self.tasks.update(outcome.tasks)
