"""What every resource type's mapping provides, and the common implementation for types that are
rows of a medloop table.

A handler maps one FHIR resource type onto medloop's storage both ways. The service layer
(`medloop.fhir.service`) does authorisation, auditing and bundling around it; a handler only
reads and writes, always through the facility scope for patient data (`patient_in_scope`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import ColumnElement, Select, func, select

from medloop.auth.scope import patient_in_scope
from medloop.errors import NotFound, Problem, Unprocessable
from medloop.fhir.common import Ctx, NotSupported, parse_uuid
from medloop.fhir.search import COUNT_LIMIT, Param, Query, date_param, id_param
from medloop.people.models import Patient

EXPORT_BATCH = 2000
# Any SELECT, whatever its columns (SQLAlchemy 2.1 types a Select by its row's types).
AnySelect = Select[*tuple[Any, ...]]


@dataclass
class Found:
    resource: dict[str, Any]
    patient_id: uuid.UUID | None = None

    @property
    def id(self) -> str:
        return str(self.resource["id"])

    @property
    def version(self) -> str:
        return str(self.resource.get("meta", {}).get("versionId", "1"))


@dataclass
class Written:
    found: Found
    created: bool  # False: an existing resource (update, or an idempotent repeat of a create)


@dataclass
class Page:
    found: list[Found]
    total: int | None


def require_patient(ctx: Ctx, patient_id: uuid.UUID, where: str) -> None:
    """A write that names a patient: the patient must exist in the caller's facility scope."""
    found = ctx.session.scalar(
        select(Patient.id).where(Patient.id == patient_id, patient_in_scope(ctx.principal, Patient.id))
    )
    if found is None:
        raise Unprocessable(f"{where}: Patient/{patient_id} does not exist in your facility scope")


class Handler:
    """A FHIR resource type. Subclasses set the class attributes and implement what they support."""

    type: ClassVar[str]
    compartment: ClassVar[bool] = False  # patient data: facility scope and patient/ SMART scopes apply
    profile: ClassVar[str | None] = None
    interactions: ClassVar[tuple[str, ...]] = ("read", "search-type")
    read_roles: ClassVar[tuple[str, ...]] = ()  # roles needed besides the SMART scope (admin passes)
    write_roles: ClassVar[tuple[str, ...]] = ()
    includes: ClassVar[dict[str, str]] = {}  # search parameter -> type it includes (subject -> Patient)
    sort_names: ClassVar[tuple[str, ...]] = ()
    doc: ClassVar[str] = ""
    audits_writes: ClassVar[bool] = False  # True: the write path audits itself (the devices pipeline)

    def params(self) -> dict[str, Param]:
        return {}

    def read(self, ctx: Ctx, rid: str) -> Found:
        raise NotSupported(f"read is not supported for {self.type}")

    def search(self, ctx: Ctx, query: Query) -> Page:
        raise NotSupported(f"search is not supported for {self.type}")

    def create(self, ctx: Ctx, resource: dict[str, Any]) -> Written:
        raise NotSupported(f"create is not supported for {self.type}")

    def create_many(self, ctx: Ctx, resources: Sequence[dict[str, Any]]) -> list[Written | Exception]:
        """Several creates at once (the bundle and import fast path); default: one by one."""
        out: list[Written | Exception] = []
        for resource in resources:
            try:
                out.append(self.create(ctx, resource))
            except Exception as exc:  # reported per entry by the caller
                out.append(exc)
        return out

    def update(self, ctx: Ctx, rid: str, resource: dict[str, Any], if_match: str | None) -> Written:
        raise NotSupported(f"update is not supported for {self.type}")

    def delete(self, ctx: Ctx, rid: str, if_match: str | None) -> uuid.UUID | None:
        raise NotSupported(f"delete is not supported for {self.type}")

    def exists(self, ctx: Ctx, rid: str) -> bool:
        try:
            self.read(ctx, rid)
        except Problem as exc:
            if exc.status in (404, 410):
                return False
            raise
        return True

    def stream(self, ctx: Ctx, patients: AnySelect | None, since: datetime | None) -> Iterator[list[Found]]:
        """Everything visible (of these patients, changed since), in batches: for bulk export."""
        raise NotSupported(f"export is not supported for {self.type}")


class TableHandler(Handler):
    """A resource type backed by one medloop table (plus joins). Subclasses give the columns and
    `to_fhir`; reading, searching, paging, sorting and streaming are shared."""

    id_column: ClassVar[Any]
    patient_column: ClassVar[Any] = None
    updated_column: ClassVar[Any] = None
    sort_columns: ClassVar[dict[str, Any]] = {}

    @property
    def sort_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self.sort_columns)

    def base(self, ctx: Ctx) -> AnySelect:
        """The rows this principal may see (facility scope for patient data)."""
        raise NotImplementedError

    def to_fhir(self, row: Any) -> Found:
        raise NotImplementedError

    def hydrate(self, ctx: Ctx, rows: Sequence[Any]) -> list[Found]:
        return [self.to_fhir(r) for r in rows]

    def scoped(self, ctx: Ctx, stmt: AnySelect) -> AnySelect:
        if type(self).patient_column is None:
            return stmt
        return stmt.where(patient_in_scope(ctx.principal, type(self).patient_column))

    def common_params(self) -> dict[str, Param]:
        params = {"_id": id_param(type(self).id_column)}
        if type(self).updated_column is not None:
            params["_lastUpdated"] = date_param(
                "_lastUpdated", type(self).updated_column, "When last changed"
            )
        return params

    def parse_id(self, rid: str) -> Any:
        found = parse_uuid(rid)
        if found is None:
            raise NotFound(f"{self.type}/{rid} not found")
        return found

    def read(self, ctx: Ctx, rid: str) -> Found:
        row = ctx.session.execute(self.base(ctx).where(type(self).id_column == self.parse_id(rid))).first()
        if row is None:
            scope = " in your facility scope" if self.compartment else ""
            raise NotFound(f"{self.type}/{rid} not found{scope}")
        return self.hydrate(ctx, [row])[0]

    def filtered(self, ctx: Ctx, query: Query) -> AnySelect:
        stmt = self.base(ctx)
        for param, modifier, values in query.filters:
            stmt = stmt.where(param.build(values, modifier))
        return stmt

    def search(self, ctx: Ctx, query: Query) -> Page:
        stmt = self.filtered(ctx, query)
        total = None
        if query.summary_count or query.total != "none":
            limit = None if query.summary_count or query.total == "accurate" else COUNT_LIMIT + 1
            matches = stmt.order_by(None).limit(limit).subquery()
            total = ctx.session.scalar(select(func.count()).select_from(matches)) or 0
            if limit is not None and total >= limit:
                total = None  # more than COUNT_LIMIT: not counted further (ask for _total=accurate)
        if query.summary_count or query.count == 0:
            return Page([], total)
        order: list[ColumnElement[Any]] = []
        for name, descending in query.sort:
            column = self.sort_columns[name]
            order.append(column.desc() if descending else column.asc())
        order.append(type(self).id_column.asc())
        rows = ctx.session.execute(stmt.order_by(*order).limit(query.count).offset(query.offset)).all()
        return Page(self.hydrate(ctx, rows), total)

    def stream(self, ctx: Ctx, patients: AnySelect | None, since: datetime | None) -> Iterator[list[Found]]:
        stmt = self.base(ctx)
        if patients is not None:
            if type(self).patient_column is None:
                return
            stmt = stmt.where(type(self).patient_column.in_(patients))
        if since is not None and type(self).updated_column is not None:
            stmt = stmt.where(type(self).updated_column >= since)
        result = ctx.session.execute(
            stmt.order_by(type(self).id_column).execution_options(yield_per=EXPORT_BATCH)
        )
        for rows in result.partitions():
            yield self.hydrate(ctx, rows)
