"""The `make run` demo: the four services on SQLite, the sandbox gateway, a local SMTP server,
and one fee-bearing dossier walked from submission to "result returned".

Keys for the demo identity provider and the gateway secret are made in .state/ (never use them
elsewhere). Everything listens on 127.0.0.1; Ctrl-C stops what was started.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
from aiosmtpd.controller import Controller
from grpc_health.v1 import health_pb2, health_pb2_grpc

from motcua.audit.v1 import audit_pb2, audit_pb2_grpc
from motcua.dossier.v1 import dossier_pb2, dossier_pb2_grpc
from motcua.payment.v1 import payment_pb2, payment_pb2_grpc
from motcua_kit.auth import generate_signing_key, mint_token
from motcua_payment.sandbox.client import SandboxClient

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".state"
GRPC = {"dossier": 50051, "notify": 50052, "payment": 50053, "audit": 50054}
METRICS = {"dossier": 9101, "notify": 9102, "payment": 9103, "audit": 9104}
SANDBOX_PORT, CALLBACK_PORT, RECEIPTS_PORT, SMTP_PORT = 8090, 8103, 9112, 8025
CITIZEN_ID = "079203004567"


class Inbox:
    """A real SMTP server standing in for the citizen's mailbox."""

    def __init__(self) -> None:
        self.subjects: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        import email
        import email.policy

        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.subjects.append(str(message["Subject"]))
        return "250 OK"


def _secret_files() -> tuple[bytes, Path, Path]:
    folder = STATE / "dev-keys"
    folder.mkdir(parents=True, exist_ok=True)
    private, public = folder / "idp-private.pem", folder / "idp-public.pem"
    if not private.exists():
        priv_pem, pub_pem = generate_signing_key()
        private.write_bytes(priv_pem)
        private.chmod(0o600)
        public.write_bytes(pub_pem)
    gateway = folder / "payment-gateway.secret"
    if not gateway.exists():
        gateway.write_text(secrets.token_urlsafe(32))
        gateway.chmod(0o600)
    return private.read_bytes(), public, gateway


def _wait_serving(port: int, proc: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{name} exited with {proc.returncode}; see .state/{name}.log")
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                status = (
                    health_pb2_grpc.HealthStub(ch)
                    .Check(health_pb2.HealthCheckRequest(), timeout=1)
                    .status
                )
            if status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        time.sleep(0.2)
    sys.exit(f"{name} did not become ready; see .state/{name}.log")


def _until(what: str, check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    sys.exit(f"gave up waiting for {what}; see the logs in .state/")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kafka", default="127.0.0.1:9092")
    parser.add_argument("--once", action="store_true", help="exit after the demo (no waiting)")
    args = parser.parse_args()
    private_pem, public_path, gateway_secret = _secret_files()
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=SMTP_PORT)
    smtp.start()
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(name: str, argv: list[str], env: dict[str, str]) -> None:
        log = open(STATE / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        procs[name] = subprocess.Popen(argv, env={**os.environ, **env}, stdout=log, stderr=log)

    try:
        spawn(
            "sandbox",
            [
                sys.executable,
                "-m",
                "motcua_payment.sandbox",
                "--port",
                str(SANDBOX_PORT),
                "--secret-file",
                str(gateway_secret),
                "--ipn-url",
                f"http://127.0.0.1:{CALLBACK_PORT}/payment/sandbox/ipn",
            ],
            {},
        )
        extra = {
            "payment": {"GATEWAY_HASH_SECRET_FILE": str(gateway_secret)},
            "notify": {
                "SMTP_HOST": "127.0.0.1",
                "SMTP_PORT": str(SMTP_PORT),
                "QUIET_HOURS": "",
                "DISPATCH_INTERVAL_SECONDS": "0.2",
            },
        }
        for name, port in GRPC.items():
            p = f"MOTCUA_{name.upper()}_"
            env = {
                p + "KAFKA_BOOTSTRAP": args.kafka,
                p + "JWT_PUBLIC_KEY_FILE": str(public_path),
                p + "GRPC_PORT": str(port),
                p + "METRICS_PORT": str(METRICS[name]),
                p + "DATABASE_URL": f"sqlite:///{STATE}/{name}.db",
                **{p + k: v for k, v in extra.get(name, {}).items()},
            }
            spawn(name, [sys.executable, "-m", f"motcua_{name}", "serve"], env)
            print(f"started {name} (pid {procs[name].pid}) gRPC :{port}, metrics :{METRICS[name]}")
        for name, port in GRPC.items():
            _wait_serving(port, procs[name], name)

        citizen = mint_token(private_pem, "demo-citizen", ["citizen"], citizen_id=CITIZEN_ID)
        officer = mint_token(private_pem, "demo-officer", ["officer"], agency="STP")
        as_citizen = [("authorization", f"Bearer {citizen}")]
        as_officer = [("authorization", f"Bearer {officer}")]
        with grpc.insecure_channel(f"127.0.0.1:{GRPC['dossier']}") as ch:
            dossiers = dossier_pb2_grpc.DossierServiceStub(ch)
            d = dossiers.SubmitDossier(
                dossier_pb2.SubmitDossierRequest(
                    procedure_code="HT-004",
                    applicant=dossier_pb2.Applicant(
                        full_name="Nguyễn Thị Thu Hà",
                        citizen_id=CITIZEN_ID,
                        phone="0905123456",
                        email="thuha@example.vn",
                        address="12 Trần Phú, phường Hội An, thành phố Đà Nẵng",
                    ),
                    documents=[
                        dossier_pb2.Document(
                            name="Tờ khai cấp bản sao trích lục hộ tịch",
                            media_type="application/pdf",
                            size_bytes=48_213,
                            sha256="9f" * 32,
                        )
                    ],
                    channel=dossier_pb2.CHANNEL_ONLINE,
                    idempotency_key=f"demo-{uuid.uuid4()}",
                ),
                metadata=as_citizen,
                timeout=30,
            ).dossier
            print(f"\nfiled dossier {d.code}: Cấp bản sao trích lục hộ tịch, fee {d.fee_vnd} VND")

            def act(d: dossier_pb2.Dossier, action: str) -> dossier_pb2.Dossier:
                d = dossiers.TransitionDossier(
                    dossier_pb2.TransitionDossierRequest(
                        code=d.code, action=action, expected_version=d.version
                    ),
                    metadata=as_officer,
                    timeout=30,
                ).dossier
                status = dossier_pb2.DossierStatus.Name(d.status)
                print(f"  officer: {action:<16} → {status}")
                return d

            d = act(d, "receive")
            d = act(d, "request_payment")
            with grpc.insecure_channel(f"127.0.0.1:{GRPC['payment']}") as pch:
                payments = payment_pb2_grpc.PaymentServiceStub(pch)

                def pending() -> payment_pb2.Payment | None:
                    listed = payments.ListPayments(
                        payment_pb2.ListPaymentsRequest(dossier_code=d.code),
                        metadata=as_citizen,
                        timeout=10,
                    ).payments
                    return next((p for p in listed if p.redirect_url), None)

                payment = _until("the payment request", pending)
                print(f"  citizen pays {payment.amount_vnd} VND at {payment.redirect_url[:60]}…")
                with SandboxClient(f"http://127.0.0.1:{SANDBOX_PORT}") as gateway:
                    gateway.pay(payment.redirect_url)
                _until(
                    "the dossier to leave payment required",
                    lambda: (
                        dossiers.GetDossier(
                            dossier_pb2.GetDossierRequest(code=d.code), metadata=as_officer
                        ).dossier.status
                        == dossier_pb2.DOSSIER_STATUS_PROCESSING
                    ),
                )
                paid = payments.GetPayment(
                    payment_pb2.GetPaymentRequest(payment_id=payment.id), metadata=as_citizen
                ).payment
                print(f"  payment succeeded, receipt {paid.receipt.number}; dossier → PROCESSING")
            d = dossiers.GetDossier(
                dossier_pb2.GetDossierRequest(code=d.code), metadata=as_officer
            ).dossier
            d = act(d, "approve")
            d = act(d, "return_result")

        _until("the citizen's emails", lambda: len(inbox.subjects) >= 6)
        print("\nthe citizen was told, by email:")
        for subject in inbox.subjects:
            print(f"  ✉ {subject}")
        with grpc.insecure_channel(f"127.0.0.1:{GRPC['audit']}") as ch:
            stub = audit_pb2_grpc.AuditServiceStub(ch)

            def trail() -> Any:
                entries = stub.GetDossierTrail(
                    audit_pb2.GetDossierTrailRequest(dossier_code=d.code),
                    metadata=as_officer,
                    timeout=10,
                ).entries
                return entries if len(entries) >= 10 else None

            entries = _until("the audit trail", trail)
        print(f"\naudit trail of {d.code}: {len(entries)} entries")
        for e in entries:
            print(f"  #{e.index:<4} {e.event_type}")
        if not args.once:
            print("\nservices keep running; Ctrl-C stops everything.")
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in procs.items():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
            print(f"stopped {name}")
        smtp.stop()


if __name__ == "__main__":
    main()
