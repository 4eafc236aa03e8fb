"""Alembic environment of the notify service (the body lives in the kit)."""

from motcua_kit.migrations import run_migrations
from motcua_notify.adapters.db import metadata

run_migrations(metadata)
