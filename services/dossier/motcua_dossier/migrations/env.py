"""Alembic environment of the dossier service (the body lives in the kit)."""

from motcua_dossier.adapters.db import metadata
from motcua_kit.migrations import run_migrations

run_migrations(metadata)
