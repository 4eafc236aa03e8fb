"""Alembic environment of the audit service (the body lives in the kit)."""

from motcua_audit.adapters.db import metadata
from motcua_kit.migrations import run_migrations

run_migrations(metadata)
