"""sign-in abuse: escalating account locks (users.lockout_level) and failed sign-ins per client address

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: Union[str, Sequence[str], None] = "0008"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # A server default: accounts stored before this revision start at level 0 (never locked),
    # and adding a NOT NULL column with a default needs no table copy on SQLite or PostgreSQL.
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("lockout_level", sa.Integer(), nullable=False, server_default="0"))
    # A new table only: nothing existing is copied.
    op.create_table(
        "sign_in_failures",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("address", sa.String(100), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_sign_in_failures_address_at", "sign_in_failures", ["address", "at"])
    op.create_index("ix_sign_in_failures_at", "sign_in_failures", ["at"])


def downgrade() -> None:
    op.drop_table("sign_in_failures")
    # In place (SQLite >= 3.35 drops a column itself): batch mode's default copies the table and
    # drops the original, which the foreign keys of sessions, reviews and tokens refuse.
    with op.batch_alter_table("users", recreate="never") as batch:
        batch.drop_column("lockout_level")
