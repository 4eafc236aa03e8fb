"""The body of every service's Alembic ``env.py``: online migrations on the configured URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import MetaData

from motcua_kit.db import make_engine


def run_migrations(metadata: MetaData) -> None:
    """Run the pending migrations in one transaction (SQLite in batch mode for ALTERs)."""
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("sqlalchemy.url is not set")
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
