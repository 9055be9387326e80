"""reviews.label_key: the labels as one sorted "|"-joined string

The agreement summary reads every review; decoding 20,000 JSON label lists cost most of
its time (storage benchmark). A plain string column, filled from the JSON for existing
rows, is read without decoding.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import json
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: Union[str, Sequence[str], None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("reviews") as batch_op:
        batch_op.add_column(sa.Column("label_key", sa.String(length=1000), nullable=False, server_default=""))
    reviews = sa.table("reviews", sa.column("id", sa.Integer), sa.column("labels", sa.JSON),
                       sa.column("label_key", sa.String))
    connection = op.get_bind()
    for review_id, labels in connection.execute(sa.select(reviews.c.id, reviews.c.labels)).all():
        if isinstance(labels, str):
            labels = json.loads(labels)
        connection.execute(reviews.update().where(reviews.c.id == review_id)
                           .values(label_key="|".join(sorted(labels or []))))


def downgrade() -> None:
    with op.batch_alter_table("reviews") as batch_op:
        batch_op.drop_column("label_key")
