"""Alembic's entry point for doorman's migrations.

doorman runs these itself (``doorman.db.engine.migrate``, ``doorman db migrate``),
passing an open connection; offline mode (``doorman db schema``) prints SQL.
"""

from __future__ import annotations

from typing import Any

from alembic import context

from doorman.db.engine import VERSION_TABLE
from doorman.db.schema import metadata

config = context.config
options: dict[str, Any] = {
    "target_metadata": metadata,
    "version_table": VERSION_TABLE,
    # SQLite alters tables by copying them; batch mode does that for us.
    "render_as_batch": True,
}
connection = config.attributes.get("connection")
if connection is None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **options,
    )
else:
    context.configure(connection=connection, **options)

with context.begin_transaction():
    context.run_migrations()
