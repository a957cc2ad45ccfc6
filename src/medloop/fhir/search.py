"""Search parameters: parsing a query string into filters, and the SQL conditions of the common
parameter types (token, string, date, reference).

Semantics (FHIR R4 search): a parameter repeated is AND, comma-separated values are OR. Unknown
parameters are ignored and reported (`Prefer: handling=lenient`, the default) or refused with 400
(`Prefer: handling=strict`). A known parameter with a value that cannot be parsed is always 400.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, false, not_, or_, true

from medloop.errors import BadRequest
from medloop.fhir.common import UnknownParameter, parse_uuid

DEFAULT_COUNT = 20
MAX_COUNT = 1000
RESULT_PARAMS = frozenset(
    {"_count", "_offset", "_sort", "_include", "_total", "_summary", "_format", "_pretty"}
)
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")
# Bundle.total without `_total=accurate`: counted up to this many matches; beyond, left out
# (counting millions of rows costs seconds, and a total is never a guess).
COUNT_LIMIT = 10_000
TOTALS = ("none", "estimate", "accurate")

# A builder turns the OR-list of one parameter occurrence into one SQL condition.
Builder = Callable[[list[str], str], ColumnElement[bool]]


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # token, string, date, reference, uri
    doc: str
    build: Builder
    modifiers: frozenset[str] = frozenset()


@dataclass
class Query:
    filters: list[tuple[Param, str, list[str]]] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    offset: int = 0
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (parameter, descending)
    include: list[str] = field(default_factory=list)
    total: str = "estimate"  # none | estimate (counted up to COUNT_LIMIT) | accurate
    summary_count: bool = False
    used: list[tuple[str, str]] = field(default_factory=list)  # as echoed in Bundle.link self
    ignored: list[str] = field(default_factory=list)


def parse_query(
    items: Sequence[tuple[str, str]],
    params: dict[str, Param],
    sorts: Sequence[str],
    includes: Sequence[str],
    resource_type: str,
    *,
    strict: bool,
) -> Query:
    query = Query()
    for key, value in items:
        name, _, modifier = key.partition(":")
        if key in RESULT_PARAMS:
            _result_param(query, key, value, sorts, includes, resource_type, strict)
            continue
        param = params.get(name)
        if param is None or (modifier and modifier not in param.modifiers and param.type != "reference"):
            if strict:
                raise UnknownParameter(
                    f"unknown search parameter {key!r} for {resource_type}; "
                    f"supported: {', '.join(sorted(params))}",
                )
            query.ignored.append(key)
            continue
        if param.type == "reference" and modifier and modifier not in param.modifiers:
            # a type modifier (subject:Patient): only the types the parameter can point at
            if modifier not in param.modifiers | {"Patient"}:
                raise BadRequest(f"{key}: {modifier} is not a type this parameter can reference")
            modifier = ""
        values = [v for v in value.split(",") if v != ""]
        if not values:
            raise BadRequest(f"search parameter {key!r} has no value")
        query.filters.append((param, modifier, values))
        query.used.append((key, value))
    return query


def _result_param(
    query: Query,
    key: str,
    value: str,
    sorts: Sequence[str],
    includes: Sequence[str],
    resource_type: str,
    strict: bool,
) -> None:
    if key == "_count":
        query.count = max(0, min(_int(key, value), MAX_COUNT))
        query.used.append((key, str(query.count)))
    elif key == "_offset":
        query.offset = max(0, _int(key, value))
    elif key == "_sort":
        for part in value.split(","):
            name = part.lstrip("-")
            if name not in sorts:
                raise BadRequest(
                    f"cannot sort {resource_type} by {name!r}; supported: {', '.join(sorts) or 'none'}"
                )
            query.sort.append((name, part.startswith("-")))
        query.used.append((key, value))
    elif key == "_include":
        if value not in includes:
            if strict:
                raise UnknownParameter(
                    f"unsupported _include {value!r}; supported: {', '.join(includes) or 'none'}",
                )
            query.ignored.append(f"_include={value}")
            return
        query.include.append(value)
        query.used.append((key, value))
    elif key == "_total":
        if value not in TOTALS:
            raise BadRequest(f"_total must be one of {', '.join(TOTALS)}")
        query.total = value
    elif key == "_summary":
        query.summary_count = value == "count"
        if value == "count":
            query.used.append((key, value))


def _int(key: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"{key} must be an integer") from None


# --- value parsing ----------------------------------------------------------------------------


def token(value: str) -> tuple[str | None, str]:
    """`system|code` → (system, code); `|code` → ("", code); `code` → (None, code)."""
    if "|" in value:
        system, _, code = value.partition("|")
        return system, code
    return None, value


def reference(value: str, resource_type: str) -> uuid.UUID | None:
    """`Type/id`, an absolute URL ending in it, or a bare id → the id (None if not one of ours)."""
    parts = value.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] != resource_type:
        return None
    return parse_uuid(parts[-1])


_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def date_range(value: str) -> tuple[str, datetime, datetime]:
    """A FHIR date search value → (prefix, start, end) of the period it denotes (end exclusive)."""
    prefix = value[:2] if value[:2] in PREFIXES else "eq"
    text = value[2:] if value[:2] in PREFIXES else value
    m = _DATE.match(text)
    try:
        if m:
            year, month, day = int(m.group(1)), m.group(2), m.group(3)
            if day:
                start = datetime(year, int(month or 1), int(day), tzinfo=UTC)
                return prefix, start, start + timedelta(days=1)
            if month:
                start = datetime(year, int(month), 1, tzinfo=UTC)
                nxt = datetime(year + (int(month) == 12), int(month) % 12 + 1, 1, tzinfo=UTC)
                return prefix, start, nxt
            return prefix, datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{value!r} is not a FHIR date search value (e.g. ge2024-01-31)") from None
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    precision = timedelta(seconds=1) if at.microsecond == 0 else timedelta(microseconds=1)
    return prefix, at, at + precision


def date_condition(column: Any, value: str, *, is_date: bool = False) -> ColumnElement[bool]:
    """The condition for one date value on a column holding a point in time (or a date)."""
    prefix, start, end = date_range(value)
    lo: Any = start
    hi: Any = end
    if is_date:  # a date column: whole days
        lo = start.date()
        hi = max(end.date(), lo + timedelta(days=1))
    conditions: dict[str, ColumnElement[bool]] = {
        "eq": and_(column >= lo, column < hi),
        "ne": not_(and_(column >= lo, column < hi)),
        "gt": column >= hi,
        "sa": column >= hi,
        "lt": column < lo,
        "eb": column < lo,
        "ge": column >= lo,
        "le": column < hi,
    }
    return conditions[prefix]


# --- builders ---------------------------------------------------------------------------------


def any_of(conditions: list[ColumnElement[bool]]) -> ColumnElement[bool]:
    if not conditions:
        return false()
    return conditions[0] if len(conditions) == 1 else or_(*conditions)


def id_param(column: Any, doc: str = "The resource id") -> Param:
    def build(values: list[str], _modifier: str) -> ColumnElement[bool]:
        ids = [u for u in (parse_uuid(v) for v in values) if u is not None]
        return column.in_(ids) if ids else false()

    return Param("_id", "token", doc, build)


def string_param(name: str, columns: Sequence[Any], doc: str) -> Param:
    """Starts-with, case-insensitive, on any of `columns`; `:exact` and `:contains` too."""

    def build(values: list[str], modifier: str) -> ColumnElement[bool]:
        conditions: list[ColumnElement[bool]] = []
        for v in values:
            for col in columns:
                if modifier == "exact":
                    conditions.append(col == v)
                elif modifier == "contains":
                    conditions.append(col.ilike(f"%{_escape(v)}%", escape="\\"))
                else:
                    conditions.append(col.ilike(f"{_escape(v)}%", escape="\\"))
        return any_of(conditions)

    return Param(name, "string", doc, build, frozenset({"exact", "contains"}))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def date_param(name: str, column: Any, doc: str, *, is_date: bool = False) -> Param:
    def build(values: list[str], _modifier: str) -> ColumnElement[bool]:
        return any_of([date_condition(column, v, is_date=is_date) for v in values])

    return Param(name, "date", doc, build)


def token_param(name: str, doc: str, match: Callable[[str | None, str], ColumnElement[bool] | None]) -> Param:
    """`match(system, code)` gives the condition for one token (None: matches nothing)."""

    def build(values: list[str], modifier: str) -> ColumnElement[bool]:
        conditions = [c for c in (match(*token(v)) for v in values) if c is not None]
        return not_(any_of(conditions)) if modifier == "not" else any_of(conditions)

    return Param(name, "token", doc, build, frozenset({"not"}))


def enum_token(name: str, column: Any, doc: str, mapping: dict[str, str] | None = None) -> Param:
    """A token over a plain code column, optionally translating FHIR codes to stored ones."""

    def match(_system: str | None, code: str) -> ColumnElement[bool] | None:
        stored = mapping.get(code) if mapping is not None else code
        return column == stored if stored is not None else None

    return token_param(name, doc, match)


def bool_token(name: str, column: Any, doc: str) -> Param:
    def match(_system: str | None, code: str) -> ColumnElement[bool] | None:
        if code not in ("true", "false"):
            raise BadRequest(f"{name} must be true or false")
        return column.is_(code == "true")

    return token_param(name, doc, match)


def reference_param(name: str, column: Any, target: str, doc: str) -> Param:
    def build(values: list[str], _modifier: str) -> ColumnElement[bool]:
        ids = [u for u in (reference(v, target) for v in values) if u is not None]
        return column.in_(ids) if ids else false()

    return Param(name, "reference", doc, build, frozenset({target}))


def always(_values: list[str], _modifier: str) -> ColumnElement[bool]:
    return true()


def as_date(value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)
