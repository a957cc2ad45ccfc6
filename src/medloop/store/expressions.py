"""SQL expressions the two databases need written differently.

`among(column, ids)` is `column IN (ids)` with the whole set bound as ONE parameter: a
PostgreSQL `uuid[]` (`column = ANY(:ids)`), or a JSON array on SQLite
(`column IN (SELECT value FROM json_each(:ids))`). A plain `IN` with an expanding parameter
renders one placeholder per id; for a region-wide facility scope (a thousand or more
facilities) building, sending and parsing that statement cost more than running it."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import orjson
from sqlalchemy import Boolean, ColumnElement, String, TypeDecorator, Uuid, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeEngine


class UuidSet(TypeDecorator[list[uuid.UUID]]):
    """A list of UUIDs bound as one parameter: `uuid[]` on PostgreSQL, a JSON array of the
    32-digit hex form (how `Uuid` is stored there) elsewhere."""

    impl = String
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(ARRAY(Uuid()))
        return dialect.type_descriptor(String())

    def process_bind_param(self, value: list[uuid.UUID] | None, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value
        return orjson.dumps([u.hex for u in value]).decode()


class _Among(FunctionElement[bool]):
    type = Boolean()
    name = "among"
    inherit_cache = True


@compiles(_Among)
def _among_default(element: _Among, compiler: SQLCompiler, **kw: Any) -> str:
    column, ids = element.clauses
    return f"{compiler.process(column, **kw)} IN (SELECT value FROM json_each({compiler.process(ids, **kw)}))"


@compiles(_Among, "postgresql")
def _among_postgresql(element: _Among, compiler: SQLCompiler, **kw: Any) -> str:
    column, ids = element.clauses
    return f"{compiler.process(column, **kw)} = ANY({compiler.process(ids, **kw)})"


def among(column: ColumnElement[uuid.UUID] | Any, ids: Iterable[uuid.UUID]) -> ColumnElement[bool]:
    """`column IN ids`, the ids bound as a single parameter (see the module's docstring)."""
    return _Among(column, bindparam(None, list(ids), type_=UuidSet()))
