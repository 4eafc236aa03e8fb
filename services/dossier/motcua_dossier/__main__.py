"""``python -m motcua_dossier serve | migrate``."""

from motcua_dossier.service import DossierService
from motcua_kit.cli import service_cli

app = service_cli(DossierService)

if __name__ == "__main__":
    app()
