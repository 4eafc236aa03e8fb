"""``python -m motcua_audit serve | migrate``."""

from motcua_audit.service import AuditService
from motcua_kit.cli import service_cli

app = service_cli(AuditService)

if __name__ == "__main__":
    app()
