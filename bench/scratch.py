"""A scratch PostgreSQL database for one benchmark run, next to an admin URL's database.

Every benchmark that needs PostgreSQL uses this (`from bench.scratch import scratch_database`).
The database is dropped afterwards unless `keep`. The drop is a plain DROP DATABASE, retried:
PostgreSQL stops an autovacuum worker that is still in the database by itself, while
`WITH (FORCE)` would try to terminate it and fail for a role that is not a superuser."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from medloop.store import migrate
from medloop.store.engine import make_engine

DROP_ATTEMPTS = 10


def drop_database(admin: Engine, name: str) -> None:
    for attempt in range(DROP_ATTEMPTS):
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            return
        except OperationalError:  # still in use (a worker on its way out)
            if attempt == DROP_ATTEMPTS - 1:
                raise
            time.sleep(1.0)


@contextmanager
def scratch_database(
    admin_url: str, *, prefix: str = "medloop_bench", keep: bool = False
) -> Iterator[Engine]:
    """A fresh, migrated database; its URL (with password) is `engine.url`."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(make_url(admin_url).set(database=name).render_as_string(hide_password=False))
    try:
        migrate.upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        if keep:
            print(f"kept the database: {engine.url.render_as_string(hide_password=True)}", flush=True)
        else:
            drop_database(admin, name)
        admin.dispose()
