"""jobs.lease_epoch: the fencing token of a worker's lease on a job.

`claim()` increments it in the same UPDATE that takes the lease, and every write a worker makes
for the job requires the value it got (core/jobs/lifecycle.py), so a worker whose job was taken over
while it was silent cannot write anything more for it.

Upgrade: SQLite adds the column in place (a plain string default keeps batch mode from
recreating the table). Downgrade: SQLite (3.35+) drops the column in place too, because batch
mode's copy-and-move would DROP TABLE jobs, which with foreign keys on deletes every event, metric
and checkpoint row through ON DELETE CASCADE.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 09:12:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_epoch", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE jobs DROP COLUMN lease_epoch")
        return
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("lease_epoch")
