"""Alembic environment of the creditops service store.

Run migrations through :mod:`creditops.store.migrations_api` (``upgrade_database`` etc.),
which opens the connection with creditops' engine settings and passes it in
``config.attributes``; the ``alembic`` command line and offline (``--sql``) mode are not
supported.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from creditops.store.migrations_api import VERSION_TABLE
from creditops.store.tables import metadata


def _run() -> None:
    if context.is_offline_mode():
        raise RuntimeError("creditops migrations do not support offline (--sql) mode")
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError("run creditops migrations through creditops.store.migrations_api")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        # The caller's transaction wraps the whole upgrade, also on SQLite (its DDL is
        # transactional once BEGIN is emitted, which creditops' engine does).
        transactional_ddl=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


_run()
