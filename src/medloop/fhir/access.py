"""SMART-style scopes on top of roles and facility scope.

A token carries scopes such as `user/*.read`, `system/*.read`, `user/Observation.write` or the
SMART v2 form `user/Observation.rs` (c create, r read, u update, d delete, s search). An
interaction needs a scope that names its resource type (or `*`) and its permission; then the
role rules of the type apply (e.g. only admins create Organizations); then, for patient data,
the facility scope filters every query.

- `system/` scopes: a backend service; still limited by the user's facility scope (admins: none).
- `user/` scopes: what the user may do, within their facility scope.
- `patient/` scopes: medloop has no patient-facing launch context, so a `patient/` scope grants
  the patient-compartment types only (Patient, Observation, Condition, ...), within the facility
  scope; it never grants Organization, Practitioner, Device or AuditEvent.
"""

from __future__ import annotations

from medloop.auth.models import Role
from medloop.auth.principal import Principal
from medloop.errors import Forbidden
from medloop.fhir.handler import Handler

# What each interaction needs, in SMART v2 letters; v1 `read` = r+s, `write` = c+u+d, `*` = all.
LETTERS = {"read": "r", "vread": "r", "search-type": "s", "create": "c", "update": "u", "delete": "d"}
V1 = {"read": "rs", "write": "cud", "*": "cruds"}
# Device tokens (medloop's own `mldt.` credentials) carry no OAuth scopes: they may create
# Observations for their own device, nothing else.
DEVICE_TOKEN_SCOPES = frozenset({"user/Observation.c"})
# The local operator (CLI, background jobs: `system_principal`) has no token and may do anything.
OPERATOR_SCOPES = frozenset({"system/*.*"})


def scopes_of(principal: Principal) -> frozenset[str]:
    if principal.smart_scopes:
        return principal.smart_scopes
    if principal.username.startswith("device:"):
        return DEVICE_TOKEN_SCOPES
    if principal.user_id is None and principal.unrestricted and principal.source == "cli":
        return OPERATOR_SCOPES
    return frozenset()


def permits(scopes: frozenset[str], resource_type: str, letter: str, compartment: bool) -> bool:
    for scope in scopes:
        context, _, rest = scope.partition("/")
        kind, _, permission = rest.rpartition(".")
        if context not in ("patient", "user", "system") or kind not in ("*", resource_type):
            continue
        if context == "patient" and not compartment:
            continue
        if letter in V1.get(permission, permission):
            return True
    return False


def authorise(principal: Principal, handler: Handler, interaction: str) -> None:
    letter = LETTERS[interaction]
    if not permits(scopes_of(principal), handler.type, letter, handler.compartment):
        raise Forbidden(
            f"the access token's scopes do not allow {interaction} on {handler.type} "
            f"(needs e.g. user/{handler.type}.{'read' if letter in 'rs' else 'write'})"
        )
    roles = handler.read_roles if letter in "rs" else handler.write_roles
    if roles and not principal.has_role(Role.ADMIN, *roles):
        raise Forbidden(f"{interaction} on {handler.type} needs one of the roles: {', '.join(roles)}")


def can_export(principal: Principal, resource_type: str, compartment: bool) -> bool:
    return permits(scopes_of(principal), resource_type, "r", compartment)
