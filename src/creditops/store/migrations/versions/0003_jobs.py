"""Jobs (retraining), the retraining triggers as they were observed, and a report level
long enough for ``insufficient_data``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("monitoring_reports") as batch:
        batch.alter_column(
            "level", existing_type=sa.String(16), type_=sa.String(32), existing_nullable=False
        )
    op.create_table(
        "jobs",
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("trigger_kind", sa.String(32), nullable=False),
        sa.Column("trigger_reason", sa.Text(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("requested_by", sa.String(128), nullable=False),
        sa.Column("force", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("stage", sa.String(32), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("started_at", _utc(), nullable=True),
        sa.Column("finished_at", _utc(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("worker", sa.String(128), nullable=True),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("log", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", name="pk_jobs"),
    )
    op.create_index("ix_jobs_model_name_created_at", "jobs", ["model_name", "created_at"])
    op.create_index("ix_jobs_state", "jobs", ["state"])
    active = sa.text("state IN ('queued', 'running')")
    op.create_index(
        "uq_jobs_active_model",
        "jobs",
        ["model_name"],
        unique=True,
        sqlite_where=active,
        postgresql_where=active,
    )
    op.create_table(
        "retrain_triggers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("job_id", sa.String(36), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_retrain_triggers"),
    )
    op.create_index("ix_retrain_triggers_model_name_at", "retrain_triggers", ["model_name", "at"])


def downgrade() -> None:
    op.drop_index("ix_retrain_triggers_model_name_at", table_name="retrain_triggers")
    op.drop_table("retrain_triggers")
    op.drop_index("uq_jobs_active_model", table_name="jobs")
    op.drop_index("ix_jobs_state", table_name="jobs")
    op.drop_index("ix_jobs_model_name_created_at", table_name="jobs")
    op.drop_table("jobs")
    # 0002's column holds 16 characters: shorten the one longer level first.
    op.execute(
        "UPDATE monitoring_reports SET level = 'insufficient' WHERE level = 'insufficient_data'"
    )
    with op.batch_alter_table("monitoring_reports") as batch:
        batch.alter_column(
            "level", existing_type=sa.String(32), type_=sa.String(16), existing_nullable=False
        )
