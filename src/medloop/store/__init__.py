"""Storage: engine, sessions, the declarative base, bulk loading and Alembic migrations."""
