"""``python -m motcua_payment.sandbox``: run the sandbox gateway until SIGTERM / Ctrl-C.

Every option also reads an environment variable (``MOTCUA_SANDBOX_<OPTION>``), so ``make run``
and the payment service can share one secret file::

    python -m motcua_payment.sandbox --port 8090 --merchant MOTCUA01 \\
        --secret-file .state/payment-gateway.secret \\
        --ipn-url http://127.0.0.1:8103/payment/sandbox/ipn
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from motcua_payment.sandbox.server import Merchant, SandboxGateway


def _env(name: str, default: str = "") -> str:
    return os.environ.get(f"MOTCUA_SANDBOX_{name}", default)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m motcua_payment.sandbox", description="The motcua sandbox payment gateway."
    )
    parser.add_argument("--host", default=_env("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(_env("PORT", "8090")))
    parser.add_argument("--merchant", default=_env("MERCHANT", "MOTCUA01"), help="vnp_TmnCode")
    parser.add_argument(
        "--secret-file",
        type=Path,
        default=Path(_env("SECRET_FILE")) if _env("SECRET_FILE") else None,
        help="file holding the merchant's hash secret (or set MOTCUA_SANDBOX_SECRET)",
    )
    parser.add_argument(
        "--ipn-url",
        default=_env("IPN_URL", "http://127.0.0.1:8103/payment/sandbox/ipn"),
        help="where the server-to-server notifications go",
    )
    args = parser.parse_args(argv)
    secret = (
        args.secret_file.read_text(encoding="utf-8").strip() if args.secret_file else _env("SECRET")
    )
    if len(secret) < 16:
        parser.error("a hash secret of at least 16 characters is required")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    gateway = SandboxGateway(
        args.host, args.port, [Merchant(args.merchant, secret.encode(), args.ipn_url)]
    ).start()
    print(f"sandbox gateway listening on {gateway.url} (merchant {args.merchant})", flush=True)
    done = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    done.wait()
    gateway.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
