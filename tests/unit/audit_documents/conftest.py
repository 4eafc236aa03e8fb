"""The audit service in-process on SQLite: the audit tests' fixtures (tests/unit/audit)."""

from unit.audit.conftest import as_principal, host, key_files, service, settings

__all__ = ["as_principal", "host", "key_files", "service", "settings"]
