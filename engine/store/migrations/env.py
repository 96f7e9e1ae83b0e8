"""Alembic environment: runs on the connection RelayDesk hands it (see engine.store.db.upgrade)."""

from __future__ import annotations

from alembic import context

from engine.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through 'relaydesk db upgrade', not the alembic script")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
