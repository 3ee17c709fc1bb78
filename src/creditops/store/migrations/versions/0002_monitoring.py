"""Monitoring: stored check reports and the worker's small persisted state.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "monitoring_reports",
        sa.Column("report_id", sa.String(36), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("window_start", _utc(), nullable=True),
        sa.Column("window_end", _utc(), nullable=True),
        sa.Column("n_current", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("should_retrain", sa.Boolean(), nullable=False),
        sa.Column("triggered_by", sa.String(32), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("report_id", name="pk_monitoring_reports"),
    )
    op.create_index(
        "ix_monitoring_reports_model_name_created_at",
        "monitoring_reports",
        ["model_name", "created_at"],
    )
    op.create_table(
        "monitor_state",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_monitor_state"),
    )


def downgrade() -> None:
    op.drop_table("monitor_state")
    op.drop_index("ix_monitoring_reports_model_name_created_at", table_name="monitoring_reports")
    op.drop_table("monitoring_reports")
