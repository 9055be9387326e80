"""Single sign-on identities on accounts, and opaque ids for dashboard links

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: Union[str, Sequence[str], None] = "0009"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # A plain ADD COLUMN plus a unique index: SQLite cannot add a UNIQUE column in place, and a
    # batch rebuild of ``users`` is refused while other tables' foreign keys point at it.
    op.add_column("users", sa.Column("external_id", sa.String(400), nullable=True))
    op.create_index("uq_users_external_id", "users", ["external_id"], unique=True)
    op.create_table(
        "link_refs",
        sa.Column("ref", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("kind", "target", name="uq_link_refs_kind_target"),
    )


def downgrade() -> None:
    op.drop_table("link_refs")
    op.drop_index("uq_users_external_id", table_name="users")
    # SQLite 3.35+ drops a column in place; a rebuild of ``users`` would break its foreign keys.
    with op.batch_alter_table("users", recreate="never") as batch:
        batch.drop_column("external_id")
