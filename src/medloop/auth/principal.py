"""Who is acting: the authenticated user or service, their roles, and their facility scope."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from medloop.auth.models import Role
from medloop.errors import Forbidden

PURPOSES = frozenset({"treatment", "operations", "public_health", "research", "emergency", "patient_request"})


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID | None
    username: str
    roles: frozenset[str]
    # Organisations the user works at, and those plus everything below them. `scope is None` means
    # unrestricted (admins and the local CLI operator).
    facilities: frozenset[uuid.UUID] = frozenset()
    scope: frozenset[uuid.UUID] | None = frozenset()
    smart_scopes: frozenset[str] = frozenset()
    source: str | None = None  # client address, or "cli"
    purpose: str = "treatment"
    token_id: str | None = field(default=None, compare=False)

    @property
    def unrestricted(self) -> bool:
        return self.scope is None

    def has_role(self, *roles: str | Role) -> bool:
        return bool(self.roles & {str(r) for r in roles})

    def require_role(self, *roles: str | Role) -> None:
        if not self.has_role(Role.ADMIN, *roles):
            allowed = ", ".join(sorted(str(r) for r in roles))
            raise Forbidden(f"this action needs one of the roles: {allowed}")

    def can_see_facility(self, organisation_id: uuid.UUID) -> bool:
        return self.scope is None or organisation_id in self.scope

    def with_purpose(self, purpose: str) -> Principal:
        from dataclasses import replace

        return replace(self, purpose=purpose)


def system_principal(purpose: str = "operations", roles: Iterable[str] = (Role.ADMIN,)) -> Principal:
    """The local operator (CLI, background jobs): unrestricted, audited as 'system'."""
    return Principal(
        None, "system", frozenset(str(r) for r in roles), scope=None, source="cli", purpose=purpose
    )
