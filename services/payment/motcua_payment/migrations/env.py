"""Alembic environment of the payment service (the body lives in the kit)."""

from motcua_kit.migrations import run_migrations
from motcua_payment.adapters.db import metadata

run_migrations(metadata)
