"""``python -m motcua_payment serve | migrate``."""

from motcua_kit.cli import service_cli
from motcua_payment.service import PaymentService

app = service_cli(PaymentService)

if __name__ == "__main__":
    app()
