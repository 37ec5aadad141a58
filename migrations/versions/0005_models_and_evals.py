"""model_records, jobs.kind, jobs.fine_tuned_model, users.is_admin: the model lifecycle (pull, export, evaluate).

- `model_records`: one row per model the platform put into the models root (pulled from a hub,
  or exported from a job's checkpoint). `owner_id` NULL means shared (an admin pulled it); an
  export belongs to the user whose job made it. Directories dropped into a models root by hand stay
  listed from the directory scan (core/services/catalog.py) without a row.
- `jobs.kind`: "train" or "eval". An evaluation is a second kind of work on the same lifecycle
  (claim, lease, events, cancel, retry), so it is a `jobs` row, not a copy of the table.
- `jobs.fine_tuned_model`: the model name exported from a succeeded job's final checkpoint.
- `users.is_admin`: admins may pull shared models (POST /v1/models) and delete them.

The `jobs` columns are added and dropped in place on both backends (SQLite 3.35+ has DROP
COLUMN): batch mode's copy-and-move would DROP TABLE jobs, which with foreign keys on deletes every
event, metric and checkpoint row through ON DELETE CASCADE (see 0002).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 15:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "model_records",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("owner_id", sa.String(length=40), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("source_ref", sa.String(length=512), nullable=False),
        sa.Column("revision", sa.String(length=64), nullable=True),
        sa.Column("base_model", sa.String(length=512), nullable=True),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("architecture", sa.String(length=128), nullable=True),
        sa.Column("parameter_count", sa.BigInteger(), nullable=True),
        sa.Column("chat_template", sa.Boolean(), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_model_records_owner_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_records")),
        sa.UniqueConstraint("name", name=op.f("uq_model_records_name")),
    )
    op.create_index(op.f("ix_model_records_owner_id"), "model_records", ["owner_id"], unique=False)
    op.add_column(
        "jobs", sa.Column("kind", sa.String(length=16), nullable=False, server_default="train")
    )
    op.add_column("jobs", sa.Column("fine_tuned_model", sa.String(length=255), nullable=True))
    op.create_index(op.f("ix_jobs_kind"), "jobs", ["kind"], unique=False)
    op.add_column(
        "users", sa.Column("is_admin", sa.Boolean(), nullable=False, server_default=sa.false())
    )


def downgrade() -> None:
    op.execute("ALTER TABLE users DROP COLUMN is_admin")
    op.drop_index(op.f("ix_jobs_kind"), table_name="jobs")
    op.execute("ALTER TABLE jobs DROP COLUMN fine_tuned_model")
    op.execute("ALTER TABLE jobs DROP COLUMN kind")
    op.drop_index(op.f("ix_model_records_owner_id"), table_name="model_records")
    op.drop_table("model_records")
