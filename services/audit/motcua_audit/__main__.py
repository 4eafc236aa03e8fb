"""``python -m motcua_audit serve | migrate | verify | export | prove-consistency | keygen``."""

from motcua_audit.cli import register
from motcua_audit.service import AuditService
from motcua_kit.cli import service_cli

app = register(service_cli(AuditService))

if __name__ == "__main__":
    app()
