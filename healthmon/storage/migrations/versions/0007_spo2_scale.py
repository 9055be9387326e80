"""a patient's recorded NEWS2 SpO2 scale (a prescribed 88-92 % target), with who, when and why

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: Union[str, Sequence[str], None] = "0006"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # All nullable: patients stored before this revision have no recorded scale and keep
    # being scored on scale 1, as they were.
    with op.batch_alter_table("patients") as batch:
        batch.add_column(sa.Column("spo2_scale", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("spo2_scale_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("spo2_scale_set_by", sa.String(120), nullable=True))
        batch.add_column(sa.Column("spo2_scale_set_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # In place (SQLite >= 3.35 drops a column itself): batch mode's default copies the table and
    # drops the original, which the foreign keys of notes, readings and advice refuse.
    with op.batch_alter_table("patients", recreate="never") as batch:
        batch.drop_column("spo2_scale_set_at")
        batch.drop_column("spo2_scale_set_by")
        batch.drop_column("spo2_scale_reason")
        batch.drop_column("spo2_scale")
