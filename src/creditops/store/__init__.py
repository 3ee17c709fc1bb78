"""The service store: creditops' own relational database (SQLAlchemy 2 + Alembic).

It owns the decision log (every decision the service returned, written by the group-commit
:class:`~creditops.store.decision_log.DecisionLogWriter`), observed outcomes, manual reviews,
API keys, the audit trail and per-model controls (suspension). SQLite in WAL mode under
``CREDITOPS_HOME`` is the embedded default; PostgreSQL is the production store.

Modules:

- :mod:`creditops.store.engine`: engines with the right SQLite pragmas / Postgres pooling,
  session factories, health check, transient-error retries.
- :mod:`creditops.store.tables`: the ORM rows (``*Row``) and ``metadata``.
- :mod:`creditops.store.migrations_api`: Alembic migrations driven from code (no alembic.ini).
- :mod:`creditops.store.repositories`: query helpers (they never commit) of the decision
  log: decisions, outcomes, reviews, labelled windows; the helpers all repositories share.
- :mod:`creditops.store.admin_repositories`: API keys, the audit trail, model controls.
- :mod:`creditops.store.monitoring_repositories`: monitoring reports and worker state.
- :mod:`creditops.store.decision_log`: the group-commit decision writer.

This package must not import fastapi, mlflow or typer (it is used by the API, the CLI and
batch jobs alike), and nothing here connects to a database at import time.
"""
