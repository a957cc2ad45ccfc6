"""Errors that reach clients. Services raise `Problem` subclasses; the application turns them into
RFC 9457 problem bodies (`application/problem+json`), or OperationOutcome under /fhir."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


class Problem(Exception):
    """A client-facing error with an HTTP status, a short title and a specific detail."""

    status: int = 400
    title: str = "Bad request"
    code: str = "invalid"  # FHIR issue type, used when rendered as OperationOutcome

    def __init__(self, detail: str, *, errors: list[dict[str, Any]] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []
        self.extra = extra

    def body(self, instance: str | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": f"https://medloop.dev/problems/{self.title.lower().replace(' ', '-')}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            doc["instance"] = instance
        if self.errors:
            doc["errors"] = self.errors
        doc.update(self.extra)
        return doc


class BadRequest(Problem):
    pass


class Unauthorized(Problem):
    status, title, code = 401, "Unauthorized", "login"


class Forbidden(Problem):
    status, title, code = 403, "Forbidden", "forbidden"


class NotFound(Problem):
    status, title, code = 404, "Not found", "not-found"


class Conflict(Problem):
    status, title, code = 409, "Conflict", "duplicate"


class PreconditionFailed(Problem):
    status, title, code = 412, "Precondition failed", "conflict"


class PayloadTooLarge(Problem):
    status, title, code = 413, "Payload too large", "too-costly"


class Unprocessable(Problem):
    status, title, code = 422, "Unprocessable content", "invalid"


def field_errors(errors: Iterable[Mapping[str, Any]], *, drop: str | None = None) -> list[dict[str, Any]]:
    """Pydantic's validation errors as a problem's `errors`: `loc` a dotted path (without the
    `drop` part, e.g. FastAPI's "body"), `msg` and `type`."""
    return [
        {
            "loc": ".".join(str(p) for p in e.get("loc", ()) if p != drop),
            "msg": e.get("msg", ""),
            "type": e.get("type", ""),
        }
        for e in errors
    ]


def error_summary(errors: Sequence[Mapping[str, Any]], limit: int | None = 5, *, whole: str = "") -> str:
    """The first `limit` (None: all) of `field_errors` as "loc: msg; …"; `whole` names an error
    about the whole input (no loc)."""
    return "; ".join(f"{e['loc'] or whole}: {e['msg']}" for e in errors[:limit])
