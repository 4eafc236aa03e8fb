"""The `make run` demo: the four services on SQLite, the sandbox gateway, a local SMTP server,
and one fee-bearing dossier walked from submission to "result returned".

Keys for the demo identity provider and the gateway secret are made in .state/dev-keys/ (never
use them elsewhere; ``motcua dev token`` mints tokens with them). Everything listens on
127.0.0.1. SIGINT or SIGTERM stops, by PID, what was started; a run killed harder than that
leaves its PIDs in .state/demo.pids, and the next run stops those processes first.

Environment: ``MOTCUA_STATE_DIR`` (default .state), ``MOTCUA_DEMO_ONCE=1`` (exit after the
demo, as CI does), ``MOTCUA_DEMO_FREE_PORTS=1`` (free ports instead of the documented ones).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import demo_documents
import grpc
from aiosmtpd.controller import Controller
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from motcua.audit.v1 import audit_pb2, audit_pb2_grpc
from motcua.dossier.v1 import dossier_pb2, dossier_pb2_grpc
from motcua.notify.v1 import notify_pb2, notify_pb2_grpc
from motcua.payment.v1 import payment_pb2, payment_pb2_grpc
from motcua_dossier.events import ACTION_EVENTS
from motcua_kit.auth import mint_token
from motcua_ops.devkeys import ensure_dev_keys
from motcua_ops.money import format_vnd
from motcua_payment.sandbox.client import SandboxClient

ROOT = Path(__file__).resolve().parents[1]
STATE = Path(os.environ.get("MOTCUA_STATE_DIR") or ROOT / ".state").resolve()
PIDS = STATE / "demo.pids"
SERVICES = ("dossier", "notify", "payment", "audit")
CITIZEN_ID = "079203004567"
PROCEDURE = "HT-004"
# What the walk below makes: emails to the citizen (two with a signed paper attached: the
# receipt slip and the result), and audit entries (four of them the papers' hashes).
EMAILS, TRAIL = 8, 14
_STATE_MARK = "MOTCUA_DEMO_STATE"  # in each child's environment: whose leftover it is
T = TypeVar("T")


@dataclass
class Ports:
    """Where everything listens (all on 127.0.0.1)."""

    grpc: dict[str, int] = field(
        default_factory=lambda: {
            "dossier": 50051,
            "notify": 50052,
            "payment": 50053,
            "audit": 50054,
        }
    )
    metrics: dict[str, int] = field(
        default_factory=lambda: {"dossier": 9101, "notify": 9102, "payment": 9103, "audit": 9104}
    )
    sandbox: int = 8090
    callback: int = 8103
    receipts: int = 9112
    smtp: int = 8025

    @classmethod
    def free(cls) -> Ports:
        """Ports the kernel says are free, all different (held open until all are chosen)."""
        with contextlib.ExitStack() as stack:
            numbers = []
            for _ in range(12):
                s = stack.enter_context(socket.socket())
                s.bind(("127.0.0.1", 0))
                numbers.append(s.getsockname()[1])
        it = iter(numbers)
        return cls(
            grpc={name: next(it) for name in SERVICES},
            metrics={name: next(it) for name in SERVICES},
            sandbox=next(it),
            callback=next(it),
            receipts=next(it),
            smtp=next(it),
        )

    def named(self) -> Iterator[tuple[str, int]]:
        for name in SERVICES:
            yield f"{name} gRPC", self.grpc[name]
            yield f"{name} metrics", self.metrics[name]
        yield from [
            ("sandbox gateway", self.sandbox),
            ("payment callbacks", self.callback),
            ("notify receipts", self.receipts),
            ("SMTP inbox", self.smtp),
        ]


@dataclass
class Email:
    subject: str
    dossier_code: str
    notification_id: str
    attachments: dict[str, bytes] = field(default_factory=dict)


class Inbox:
    """A real SMTP server standing in for the citizen's mailbox."""

    def __init__(self) -> None:
        self.emails: list[Email] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        import email
        import email.policy

        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        attached = {
            str(part.get_filename()): bytes(part.get_content())
            for part in message.iter_attachments()
        }
        self.emails.append(
            Email(
                str(message["Subject"]),
                str(message["X-Motcua-Dossier"] or ""),
                str(message["X-Motcua-Notification-Id"] or ""),
                attached,
            )
        )
        return "250 OK"

    def of(self, dossier_code: str) -> list[Email]:
        """Only this dossier's mail: notify may still be sending an earlier run's."""
        return [e for e in self.emails if e.dossier_code == dossier_code]


def _pid_is_ours(pid: int) -> bool:
    """Whether ``pid`` is a live child of a demo on this state folder (not a reused PID)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{_STATE_MARK}={STATE}".encode() in environ.split(b"\0")


def _gone(pid: int, children: dict[int, subprocess.Popen[bytes]]) -> bool:
    child = children.get(pid)
    if child is not None:
        return child.poll() is not None  # also reaps it
    return not _pid_is_ours(pid)  # a leftover: init reaps it (a zombie's environ is empty)


def _stop(
    pids: dict[str, int], children: dict[int, subprocess.Popen[bytes]], grace: float = 20
) -> None:
    """SIGTERM each process, wait for all with one deadline, SIGKILL what is left."""
    alive = {name: pid for name, pid in pids.items() if not _gone(pid, children)}
    for pid in alive.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive and time.monotonic() < deadline:
        alive = {n: p for n, p in alive.items() if not _gone(p, children)}
        if alive:
            time.sleep(0.1)
    for name, pid in alive.items():
        print(f"{name} (pid {pid}) did not stop within {grace:.0f}s; killing it", flush=True)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in alive.values():
        if pid in children:
            children[pid].wait()


def _stop_leftovers() -> None:
    """Stop the processes of an earlier run that was killed before it could stop them."""
    try:
        pids = {str(k): int(v) for k, v in json.loads(PIDS.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return
    left = {name: pid for name, pid in pids.items() if _pid_is_ours(pid)}
    if left:
        print(f"stopping what an interrupted run left running: {left}", flush=True)
        _stop(left, {})
    PIDS.unlink(missing_ok=True)


def _check_ports_free(ports: Ports) -> None:
    for what, port in ports.named():
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                sys.exit(
                    f"port 127.0.0.1:{port} ({what}) is in use: is another `make run` running? "
                    "Stop it, or set MOTCUA_DEMO_FREE_PORTS=1"
                )


def _wait_serving(port: int, proc: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{name} exited with {proc.returncode}; see {STATE}/{name}.log")
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
    sys.exit(f"{name} did not become ready; see {STATE}/{name}.log")


def _until(what: str, check: Callable[[], T | None], timeout: float = 90) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    sys.exit(f"gave up waiting for {what}; see the logs in {STATE}/")


def _clock(ts: Timestamp) -> str:
    return ts.ToDatetime(tzinfo=UTC).astimezone().strftime("%H:%M:%S.%f")[:-3]


def _why_same_day(procedure: dossier_pb2.Procedure) -> str:
    """Why the appointment is the date it is; a newcomer asks when it is today."""
    days = procedure.processing_days
    if days:
        return f"{days} working day(s) after the receipt day, not counting weekends and holidays"
    return (
        f"the same day. {procedure.code} takes 0 working days, and the count starts on the\n"
        "  working day after receipt, so 0 days is the receipt day itself (a dossier filed after\n"
        "  office hours or on a day off is received, and due, on the next working day)"
    )


def _causal_emails(
    emails: list[Email],
    notifications: dict[str, notify_pb2.Notification],
    event_times: dict[str, Timestamp],
) -> list[tuple[str, Email]]:
    """Emails in the order of the events that caused them, not of their arrival: notify sends
    in parallel, so the "received" email can overtake the receipt."""

    def key(e: Email) -> tuple[datetime, str]:
        n = notifications.get(e.notification_id)
        cause = event_times.get(n.source_event_id) if n else None
        stamp = cause or (n.created_at if n else None)
        when = stamp.ToDatetime(tzinfo=UTC) if stamp else datetime.max.replace(tzinfo=UTC)
        return when, e.notification_id

    out = []
    for e in sorted(emails, key=key):
        n = notifications.get(e.notification_id)
        cause = event_times.get(n.source_event_id) if n else None
        out.append((_clock(cause) if cause else "", e))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kafka", default="127.0.0.1:9092")
    parser.add_argument(
        "--once",
        action="store_true",
        default=os.environ.get("MOTCUA_DEMO_ONCE") == "1",
        help="exit after the demo (no waiting); MOTCUA_DEMO_ONCE=1",
    )
    parser.add_argument(
        "--free-ports",
        action="store_true",
        default=os.environ.get("MOTCUA_DEMO_FREE_PORTS") == "1",
        help="listen on free ports rather than the documented ones; MOTCUA_DEMO_FREE_PORTS=1",
    )
    args = parser.parse_args()
    # run.sh forwards Ctrl-C as SIGTERM (a background job ignores SIGINT): both end the demo.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    STATE.mkdir(parents=True, exist_ok=True)
    _stop_leftovers()
    ports = Ports.free() if args.free_ports else Ports()
    _check_ports_free(ports)
    keys = ensure_dev_keys(STATE)
    private_pem = keys.private_key.read_bytes()
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=ports.smtp)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    papers = contextlib.ExitStack()

    def spawn(name: str, where: str, argv: list[str], env: dict[str, str]) -> None:
        log = open(STATE / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        procs[name] = subprocess.Popen(
            argv,
            env={**os.environ, _STATE_MARK: str(STATE), **env},
            stdout=log,
            stderr=log,
            process_group=0,  # Ctrl-C reaches the demo only; it stops the children in turn
        )
        PIDS.write_text(json.dumps({n: p.pid for n, p in procs.items()}))
        print(f"started {name} (pid {procs[name].pid}) {where}", flush=True)

    try:
        smtp.start()
        pki = demo_documents.make_pki(STATE, demo_documents.catalogue_agencies())
        tsa = papers.enter_context(demo_documents.local_tsa(pki))
        notify_token = STATE / "notify-dossier.token"
        notify_token.write_text(mint_token(private_pem, "notify", ["service"], ttl_seconds=86400))
        audit_key = STATE / "audit-signing-key.pem"
        spawn(
            "sandbox",
            f"http://127.0.0.1:{ports.sandbox}",
            [
                sys.executable,
                "-m",
                "motcua_payment.sandbox",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports.sandbox),
                "--secret-file",
                str(keys.gateway_secret),
                "--ipn-url",
                f"http://127.0.0.1:{ports.callback}/payment/sandbox/ipn",
            ],
            {},
        )
        extra = {
            "payment": {
                "GATEWAY_HASH_SECRET_FILE": str(keys.gateway_secret),
                "GATEWAY_BASE_URL": f"http://127.0.0.1:{ports.sandbox}",
                "CALLBACK_PORT": str(ports.callback),
            },
            "notify": {
                "SMTP_HOST": "127.0.0.1",
                "SMTP_PORT": str(ports.smtp),
                "RECEIPTS_PORT": str(ports.receipts),
                "QUIET_HOURS": "",
                "DISPATCH_INTERVAL_SECONDS": "0.2",
                "DOSSIER_GRPC_TARGET": f"127.0.0.1:{ports.grpc['dossier']}",
                "DOSSIER_TOKEN_FILE": str(notify_token),
            },
            # The signed papers: the agencies' keys in the SoftHSM2 token, B-T via the local TSA.
            "dossier": {
                "DOCUMENTS_KEYRING": str(pki.keyring),
                "DOCUMENTS_TSA_URL": tsa.url,
            },
            "audit": {"DEV_SIGNING_KEY_FILE": str(audit_key)},
        }
        plain = {"dossier": pki.env()}  # SoftHSM2's own variable, unprefixed
        for name in SERVICES:
            p = f"MOTCUA_{name.upper()}_"
            env = {
                p + "BIND_HOST": "127.0.0.1",
                p + "KAFKA_BOOTSTRAP": args.kafka,
                p + "JWT_PUBLIC_KEY_FILE": str(keys.public_key),
                p + "GRPC_PORT": str(ports.grpc[name]),
                p + "METRICS_PORT": str(ports.metrics[name]),
                p + "DATABASE_URL": f"sqlite:///{STATE}/{name}.db",
                **{p + k: v for k, v in extra.get(name, {}).items()},
                **plain.get(name, {}),
            }
            where = f"gRPC 127.0.0.1:{ports.grpc[name]}, metrics :{ports.metrics[name]}"
            spawn(name, where, [sys.executable, "-m", f"motcua_{name}", "serve"], env)
        for name in SERVICES:
            _wait_serving(ports.grpc[name], procs[name], name)
        _walk(ports, private_pem, inbox, pki, audit_key)
        if not args.once:
            print(
                "\nservices keep running; call them as README.md shows "
                f"(`motcua dev token --role citizen --citizen-id {CITIZEN_ID}`). "
                "Ctrl-C stops everything.",
                flush=True,
            )
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second Ctrl-C must not cut this short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _stop({n: p.pid for n, p in procs.items()}, {p.pid: p for p in procs.values()})
        for name, proc in procs.items():
            print(f"stopped {name} (pid {proc.pid})", flush=True)
        PIDS.unlink(missing_ok=True)
        with contextlib.suppress(Exception):
            smtp.stop()
        papers.close()


def _walk(
    ports: Ports,
    private_pem: bytes,
    inbox: Inbox,
    pki: demo_documents.devpki.DevPki,
    audit_key: Path,
) -> None:
    """File a dossier as the citizen, take it through to "result returned" as the officer,
    and check the signed receipt slip and result as a citizen's bank would."""
    citizen = mint_token(private_pem, "demo-citizen", ["citizen"], citizen_id=CITIZEN_ID)
    officer = mint_token(private_pem, "demo-officer", ["officer"], agency="STP")
    as_citizen = [("authorization", f"Bearer {citizen}")]
    as_officer = [("authorization", f"Bearer {officer}")]
    with grpc.insecure_channel(f"127.0.0.1:{ports.grpc['dossier']}") as ch:
        dossiers = dossier_pb2_grpc.DossierServiceStub(ch)
        procedure = dossiers.GetProcedure(
            dossier_pb2.GetProcedureRequest(code=PROCEDURE), metadata=as_citizen, timeout=30
        ).procedure
        d = dossiers.SubmitDossier(
            dossier_pb2.SubmitDossierRequest(
                procedure_code=PROCEDURE,
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
        print(
            f"\nfiled dossier {d.code}: {procedure.name} ({procedure.code}), "
            f"fee {format_vnd(d.fee_vnd)}"
        )
        print(f"  appointment {d.appointment_date}: {_why_same_day(procedure)}")

        def act(d: dossier_pb2.Dossier, action: str) -> dossier_pb2.Dossier:
            d = dossiers.TransitionDossier(
                dossier_pb2.TransitionDossierRequest(
                    code=d.code, action=action, expected_version=d.version
                ),
                metadata=as_officer,
                timeout=30,
            ).dossier
            status = dossier_pb2.DossierStatus.Name(d.status)
            print(f"  officer: {action:<16} → {status}", flush=True)
            return d

        d = act(d, "receive")
        papers = demo_documents.Papers(dossiers, as_citizen, STATE / "documents")
        receipt = papers.save(d.code, dossier_pb2.DOCUMENT_KIND_RECEIPT)
        d = act(d, "request_payment")
        with grpc.insecure_channel(f"127.0.0.1:{ports.grpc['payment']}") as pch:
            payments = payment_pb2_grpc.PaymentServiceStub(pch)

            def pending() -> payment_pb2.Payment | None:
                listed = payments.ListPayments(
                    payment_pb2.ListPaymentsRequest(dossier_code=d.code),
                    metadata=as_citizen,
                    timeout=10,
                ).payments
                return next((p for p in listed if p.redirect_url), None)

            payment = _until("the payment request", pending)
            page = urlsplit(payment.redirect_url)
            print(
                f"  citizen pays {format_vnd(payment.amount_vnd)} at the sandbox gateway "
                f"{page.scheme}://{page.netloc}{page.path}"
            )
            with SandboxClient(f"http://127.0.0.1:{ports.sandbox}") as gateway:
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
            print(
                f"  payment succeeded (gateway transaction {paid.gateway_transaction_id}), "
                f"receipt {paid.receipt.number}; dossier → PROCESSING"
            )
        d = dossiers.GetDossier(dossier_pb2.GetDossierRequest(code=d.code), metadata=as_officer)
        d = act(d.dossier, "approve")
        returned = demo_documents.return_result(
            dossiers,
            d,
            demo_documents.result_pdf(
                d.code,
                "BẢN SAO TRÍCH LỤC HỘ TỊCH",
                [f"Người yêu cầu: {d.applicant.full_name}", f"Thủ tục: {procedure.name}"],
            ),
            as_officer,
        )
        d = returned.dossier
        print(f"  officer: {'return_result':<16} → {dossier_pb2.DossierStatus.Name(d.status)}")
        result = papers.save(d.code, dossier_pb2.DOCUMENT_KIND_RESULT)

    code = d.code
    emails = _until(
        "the citizen's emails", lambda: inbox.of(code) if len(inbox.of(code)) >= EMAILS else None
    )
    with grpc.insecure_channel(f"127.0.0.1:{ports.grpc['audit']}") as ch:
        stub = audit_pb2_grpc.AuditServiceStub(ch)

        def trail() -> list[audit_pb2.AuditEntry] | None:
            entries = stub.GetDossierTrail(
                audit_pb2.GetDossierTrailRequest(dossier_code=d.code),
                metadata=as_officer,
                timeout=10,
            ).entries
            done = ACTION_EVENTS["return_result"] in {e.event_type for e in entries}
            return list(entries) if done and len(entries) >= TRAIL else None

        entries = _until("the audit trail", trail)
    with grpc.insecure_channel(f"127.0.0.1:{ports.grpc['notify']}") as ch:
        listed = notify_pb2_grpc.NotifyServiceStub(ch).ListNotifications(
            notify_pb2.ListNotificationsRequest(dossier_code=d.code, page_size=100),
            metadata=as_officer,
            timeout=10,
        )
    notifications = {n.id: n for n in listed.notifications}
    event_times = {e.event_id: e.event_time for e in entries}

    print("\nthe citizen was told, by email (in the order of the events that caused them):")
    for when, e in _causal_emails(emails, notifications, event_times):
        print(f"  {when:<12} ✉ {e.subject}")
    # The log's index is the order audit consumed the topics in; the event time is the order
    # things happened in (payment.succeeded before the dossier.paid it caused).
    entries.sort(key=lambda e: (e.event_time.ToDatetime(), e.index))
    print(f"\naudit trail of {d.code}: {len(entries)} entries, in event-time order")
    for e in entries:
        print(f"  {_clock(e.event_time)}  log #{e.index:<5} {e.event_type}")
    attached = {name for e in emails for name in e.attachments}
    print("\nthe signed papers (PAdES B-T, the agency's key in a SoftHSM2 token):")
    for meta, path in (receipt, result):
        mailed = "emailed" if meta.filename in attached else "NOT emailed"
        print(f"  {path}")
        print(f"    {meta.form_number or 'result'}, sha256 {meta.sha256[:16]}…, {mailed}")
        print(f"    pdfsig: {demo_documents.pdfsig(path, pki.nssdir)}")
        demo_documents.verify(path, pki, f"127.0.0.1:{ports.grpc['audit']}", officer, audit_key)
        if meta.filename not in attached:
            raise SystemExit(f"the citizen's email lacks {meta.filename}")
    print(f"\ndemo finished: dossier {d.code} result returned", flush=True)


if __name__ == "__main__":
    main()
