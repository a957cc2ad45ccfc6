"""Users, roles, tokens, facility scope and the audit trail."""
