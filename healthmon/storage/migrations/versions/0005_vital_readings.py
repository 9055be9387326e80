"""device vitals: uploads and readings

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: Union[str, Sequence[str], None] = "0004"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "vitals_uploads",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("source", sa.String(300), nullable=False),
        sa.Column("format", sa.String(40), nullable=False),
        sa.Column("uploaded_by", sa.String(120), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("readings_stored", sa.Integer(), nullable=False),
        sa.Column("readings_duplicate", sa.Integer(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "vital_readings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("patient_id", sa.Integer(), sa.ForeignKey("patients.id"), nullable=False),
        sa.Column("upload_id", sa.Integer(), sa.ForeignKey("vitals_uploads.id"), nullable=False, index=True),
        sa.Column("time", TZ, nullable=False),
        sa.Column("parameter", sa.String(300), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("artefact", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(300), nullable=False),
        sa.UniqueConstraint("patient_id", "parameter", "time", "value", name="uq_vital_readings_value"),
    )
    op.create_index("ix_vital_readings_patient_time", "vital_readings", ["patient_id", "time"])


def downgrade() -> None:
    op.drop_index("ix_vital_readings_patient_time", table_name="vital_readings")
    op.drop_table("vital_readings")
    op.drop_table("vitals_uploads")
