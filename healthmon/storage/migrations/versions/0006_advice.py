"""advice drafts and decisions; patient demographics for the advice rules

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: Union[str, Sequence[str], None] = "0005"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("patients") as batch:
        batch.add_column(sa.Column("birth_date", sa.Date(), nullable=True))
        batch.add_column(sa.Column("sex", sa.String(10), nullable=True))
    op.create_table(
        "advice_items",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("patient_id", sa.Integer(), sa.ForeignKey("patients.id"), nullable=False),
        sa.Column("note_id", sa.Integer(), sa.ForeignKey("notes.id"), nullable=True),
        sa.Column("model_version_id", sa.Integer(), sa.ForeignKey("model_versions.id"), nullable=True),
        sa.Column("rule_id", sa.String(80), nullable=False),
        sa.Column("finding_key", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("urgency", sa.String(20), nullable=False),
        sa.Column("follow_up_days", sa.Integer(), nullable=False),
        sa.Column("triggers", sa.JSON(), nullable=False),
        sa.Column("draft_text", sa.Text(), nullable=False),
        sa.Column("final_text", sa.Text(), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("decided_by", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("decided_at", TZ, nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(120), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.UniqueConstraint("patient_id", "fingerprint", name="uq_advice_items_fingerprint"),
    )
    op.create_index("ix_advice_items_patient_status", "advice_items", ["patient_id", "status"])
    op.create_index("ix_advice_items_patient_rule", "advice_items", ["patient_id", "rule_id"])


def downgrade() -> None:
    op.drop_index("ix_advice_items_patient_rule", table_name="advice_items")
    op.drop_index("ix_advice_items_patient_status", table_name="advice_items")
    op.drop_table("advice_items")
    # In place (SQLite >= 3.35 drops a column itself): batch mode's default copies the table and
    # drops the original, which the foreign keys of notes, readings and advice refuse.
    with op.batch_alter_table("patients", recreate="never") as batch:
        batch.drop_column("sex")
        batch.drop_column("birth_date")
