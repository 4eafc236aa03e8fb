"""The `make run` demo: start dossier and audit on SQLite, file a dossier, show its trail.

Keys for the demo identity provider are made in .state/dev-keys (never use them elsewhere).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from motcua.audit.v1 import audit_pb2, audit_pb2_grpc
from motcua.dossier.v1 import dossier_pb2, dossier_pb2_grpc
from motcua_kit.auth import generate_signing_key, mint_token

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".state"
SERVICES = {"dossier": 50051, "audit": 50054}
METRICS = {"dossier": 9101, "audit": 9104}


def _keys() -> tuple[bytes, Path]:
    folder = STATE / "dev-keys"
    folder.mkdir(parents=True, exist_ok=True)
    private, public = folder / "idp-private.pem", folder / "idp-public.pem"
    if not private.exists():
        priv_pem, pub_pem = generate_signing_key()
        private.write_bytes(priv_pem)
        private.chmod(0o600)
        public.write_bytes(pub_pem)
    return private.read_bytes(), public


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kafka", default="127.0.0.1:9092")
    parser.add_argument("--once", action="store_true", help="exit after the demo (no waiting)")
    args = parser.parse_args()
    private_pem, public_path = _keys()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, port in SERVICES.items():
            p = f"MOTCUA_{name.upper()}_"
            env = {
                **os.environ,
                p + "KAFKA_BOOTSTRAP": args.kafka,
                p + "JWT_PUBLIC_KEY_FILE": str(public_path),
                p + "GRPC_PORT": str(port),
                p + "METRICS_PORT": str(METRICS[name]),
                p + "DATABASE_URL": f"sqlite:///{STATE}/{name}.db",
            }
            log = open(STATE / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", f"motcua_{name}", "serve"], env=env, stdout=log, stderr=log
            )
            print(f"started {name} (pid {procs[name].pid}) gRPC :{port}, metrics :{METRICS[name]}")
        for name, port in SERVICES.items():
            _wait_serving(port, procs[name], name)

        citizen_id = "079203004567"
        citizen = mint_token(private_pem, "demo-citizen", ["citizen"], citizen_id=citizen_id)
        officer = mint_token(private_pem, "demo-officer", ["officer"], agency="PHOIAN")
        with grpc.insecure_channel(f"127.0.0.1:{SERVICES['dossier']}") as ch:
            response = dossier_pb2_grpc.DossierServiceStub(ch).SubmitDossier(
                dossier_pb2.SubmitDossierRequest(
                    procedure_code="HT-001",
                    applicant=dossier_pb2.Applicant(
                        full_name="Nguyễn Thị Thu Hà",
                        citizen_id=citizen_id,
                        phone="0905123456",
                        email="thuha@example.vn",
                        address="12 Trần Phú, phường Hội An, thành phố Đà Nẵng",
                    ),
                    documents=[
                        dossier_pb2.Document(
                            name="Tờ khai đăng ký khai sinh",
                            media_type="application/pdf",
                            size_bytes=48_213,
                            sha256="9f" * 32,
                        )
                    ],
                    channel=dossier_pb2.CHANNEL_ONLINE,
                    idempotency_key=f"demo-{uuid.uuid4()}",
                ),
                metadata=[("authorization", f"Bearer {citizen}")],
                timeout=30,
            )
            d = response.dossier
            print(f"\nfiled dossier {d.code} (Đăng ký khai sinh), appointment {d.appointment_date}")
            stub = dossier_pb2_grpc.DossierServiceStub(ch)
            for action in ("receive", "process", "approve", "return_result"):
                d = stub.TransitionDossier(
                    dossier_pb2.TransitionDossierRequest(
                        code=d.code, action=action, expected_version=d.version
                    ),
                    metadata=[("authorization", f"Bearer {officer}")],
                    timeout=30,
                ).dossier
                status = dossier_pb2.DossierStatus.Name(d.status)
                print(f"  officer: {action:<14} → {status} (version {d.version})")

        with grpc.insecure_channel(f"127.0.0.1:{SERVICES['audit']}") as ch:
            stub = audit_pb2_grpc.AuditServiceStub(ch)
            deadline = time.monotonic() + 60
            while True:
                trail = stub.GetDossierTrail(
                    audit_pb2.GetDossierTrailRequest(dossier_code=d.code),
                    metadata=[("authorization", f"Bearer {officer}")],
                    timeout=10,
                ).entries
                if len(trail) >= 5 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        if not trail:
            sys.exit("the audit service did not record the event; see .state/audit.log")
        for e in trail:
            digest = e.payload_sha256[:16]
            print(f"audit entry #{e.index}: {e.event_type} id={e.event_id} sha256={digest}…")
        print("\nevery step went dossier → outbox → Kafka (motcua.dossier.v1) → audit.")
        if not args.once:
            print("services keep running; Ctrl-C stops everything.")
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


if __name__ == "__main__":
    main()
