"""Deployments, the serving processes' reports, shadow decisions, and the deployment of
each logged decision.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("deployment_id", sa.String(36), nullable=True))
    op.create_table(
        "deployments",
        sa.Column("deployment_id", sa.String(36), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("strategy", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("stable_version", sa.String(64), nullable=True),
        sa.Column("candidate_version", sa.String(64), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("traffic_share", sa.Double(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.Column("started_by", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("step_started_at", _utc(), nullable=True),
        sa.Column("finished_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("deployment_id", name="pk_deployments"),
    )
    op.create_index(
        "ix_deployments_model_name_created_at", "deployments", ["model_name", "created_at"]
    )
    active = sa.text("state IN ('pending', 'progressing', 'paused')")
    op.create_index(
        "uq_deployments_active_model",
        "deployments",
        ["model_name"],
        unique=True,
        sqlite_where=active,
        postgresql_where=active,
    )
    op.create_table(
        "serving_processes",
        sa.Column("process_id", sa.String(64), nullable=False),
        sa.Column("started_at", _utc(), nullable=False),
        sa.Column("seen_at", _utc(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("process_id", name="pk_serving_processes"),
    )
    op.create_index("ix_serving_processes_seen_at", "serving_processes", ["seen_at"])
    op.create_table(
        "shadow_decisions",
        sa.Column("decision_id", sa.String(36), nullable=False),
        sa.Column("primary_decision_id", sa.String(36), nullable=False),
        sa.Column("deployment_id", sa.String(36), nullable=False),
        sa.Column("application_id", sa.String(128), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("pd", sa.Double(), nullable=False),
        sa.Column("score", sa.Double(), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("decision_id", name="pk_shadow_decisions"),
    )
    op.create_index(
        "ix_shadow_decisions_primary_decision_id", "shadow_decisions", ["primary_decision_id"]
    )
    op.create_index("ix_shadow_decisions_deployment_id", "shadow_decisions", ["deployment_id"])


def downgrade() -> None:
    op.drop_index("ix_shadow_decisions_deployment_id", table_name="shadow_decisions")
    op.drop_index("ix_shadow_decisions_primary_decision_id", table_name="shadow_decisions")
    op.drop_table("shadow_decisions")
    op.drop_index("ix_serving_processes_seen_at", table_name="serving_processes")
    op.drop_table("serving_processes")
    op.drop_index("uq_deployments_active_model", table_name="deployments")
    op.drop_index("ix_deployments_model_name_created_at", table_name="deployments")
    op.drop_table("deployments")
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("deployment_id")
