"""rollout_samples: a few rollouts of each training step (prompt, completion, reward, advantage).

Written by the worker's sink in the step's transaction, upserted on (job_id, step, index); old
steps are pruned by the sink (BASIS_WORKER_SAMPLE_KEEP_STEPS). Rows cascade with their job.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 13:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rollout_samples",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True,
                  nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("prompt_id", sa.String(length=256), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("completion", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("reward", sa.Double(), nullable=True),
        sa.Column("advantage", sa.Double(), nullable=False),
        sa.Column("baseline", sa.Double(), nullable=True),
        sa.Column("finish_reason", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_rollout_samples_job_id_jobs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollout_samples")),
        sa.UniqueConstraint("job_id", "step", "index", name=op.f("uq_rollout_samples_job_id_step_index")),
    )


def downgrade() -> None:
    op.drop_table("rollout_samples")
