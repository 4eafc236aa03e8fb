"""Local stand-ins for notify's providers, and small helpers to drive notify in tests.

Every stand-in is a real server on 127.0.0.1 (a free port) that records what it receives and
can be told to fail or be slow:

* :class:`SmsProviderServer` — an HTTP SMS provider API (``POST /messages``) that honours the
  ``Idempotency-Key`` header as real providers do (a repeated key is answered with the first
  message id and not sent again) and can post signed delivery receipts back to notify;
* :class:`ZaloServer` — a Zalo-style template-message API (``POST /message/template``);
* :class:`WebhookReceiver` — a subscribing system receiving signed webhooks;
* :class:`SmtpSink` — a real SMTP server (aiosmtpd) that keeps the messages it accepts.

An HTTP stand-in can also be told to :meth:`~RecordingServer.hold` its answers until the test
:meth:`~RecordingServer.release` them: a provider as slow as the test needs, with no clock
in the assertions. Use them as context managers; they stop their threads on exit.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import grpc
import httpx
from aiosmtpd.controller import Controller
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata
from sqlalchemy import create_engine, select

from harness import free_port, read_topic
from motcua.dossier.v1 import dossier_pb2, events_pb2
from motcua.notify.v1 import notify_pb2, notify_pb2_grpc
from motcua.payment.v1 import events_pb2 as payment_events
from motcua.payment.v1 import payment_pb2
from motcua_kit.envelope import Event, encode

SMS_A_KEY = "sms-a-api-key-0123456789"
SMS_B_KEY = "sms-b-api-key-9876543210"
ZALO_TOKEN = "zalo-access-token-0123456789"
CITIZEN_ID = "079203004567"
PHONE = "0905123456"
EMAIL = "thuha@example.vn"


# -- recording HTTP servers ---------------------------------------------------------------------
@dataclass
class Recorded:
    """One request a stand-in received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Behaviour:
    """How a stand-in answers: ``status`` ≠ 2xx fails, ``delay`` seconds before answering."""

    status: int = 200
    delay: float = 0.0
    error_code: int = 0  # Zalo-style refusal code in a 200 answer


class RecordingServer:
    """A threaded HTTP server that records requests and answers per its :class:`Behaviour`."""

    name = "server"

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.behaviour = Behaviour()
        self.answered = 0  # answers written back (a held answer is not yet one)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._gate = threading.Event()
        self._gate.set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Recorded(
                    "POST",
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                    time.monotonic(),
                )
                with outer._lock:
                    outer.requests.append(request)
                    behaviour = outer.behaviour
                status, answer = outer.answer(request, behaviour)
                outer._gate.wait()
                if behaviour.delay:
                    outer._stop.wait(behaviour.delay)
                body = json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (timeout) or died
                with outer._lock:
                    outer.answered += 1

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self, request: Recorded, behaviour: Behaviour) -> tuple[int, dict[str, Any]]:
        if behaviour.status >= 300:
            return behaviour.status, {"error": "told to fail"}
        return behaviour.status, {}

    def behave(self, status: int = 200, delay: float = 0.0, error_code: int = 0) -> None:
        with self._lock:
            self.behaviour = Behaviour(status, delay, error_code)

    def hold(self) -> None:
        """Take requests as usual (a provider accepts a message when it arrives), but answer
        none of them until :meth:`release`: the sends stay in flight as long as the test needs."""
        self._gate.clear()

    def release(self) -> None:
        """Answer the held requests, and every later one at once."""
        self._gate.set()

    def received(self, path: str = "") -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith(path)]

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._gate.set()
        self._server.shutdown()
        self._server.server_close()


class SmsProviderServer(RecordingServer):
    """An SMS provider: accepts ``POST /messages`` with a bearer key, once per idempotency key.

    The message is accepted when the request arrives — before a slow answer, as at a real
    provider — so a client that times out or dies and retries with the same key is answered
    with the first message id and nothing is sent twice. ``messages`` is what was "sent".
    """

    def __init__(self, name: str, api_key: str) -> None:
        super().__init__()
        self.name = name
        self.api_key = api_key
        self.messages: list[dict[str, Any]] = []
        self._by_key: dict[str, str] = {}

    def answer(self, request: Recorded, behaviour: Behaviour) -> tuple[int, dict[str, Any]]:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, {"error": "bad api key"}
        if behaviour.status >= 300:
            return behaviour.status, {"error": "told to fail"}
        doc = request.json()
        key = request.headers.get("idempotency-key", "")
        with self._lock:
            if key and key in self._by_key:
                return 200, {"message_id": self._by_key[key], "status": "accepted", "replay": True}
            message_id = f"{self.name}-{len(self.messages) + 1}"
            self.messages.append({**doc, "message_id": message_id, "idempotency_key": key})
            if key:
                self._by_key[key] = message_id
        return 202, {"message_id": message_id, "status": "accepted"}

    def messages_to(self, phone_international: str) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.messages if m["to"] == phone_international]

    def send_receipt(
        self, receipts_url: str, message: dict[str, Any], status: str, *, sign_with: str = ""
    ) -> httpx.Response:
        """Post a delivery receipt for ``message`` to notify, signed with this provider's key."""
        body = json.dumps(
            {
                "message_id": message["message_id"],
                "client_ref": message["client_ref"],
                "status": status,
            }
        ).encode()
        return post_signed(f"{receipts_url}/receipts/{self.name}", body, sign_with or self.api_key)


class ZaloServer(RecordingServer):
    """A Zalo-style API: ``POST /message/template`` with an ``access_token`` header."""

    name = "zalo"

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token
        self.messages: list[dict[str, Any]] = []

    def answer(self, request: Recorded, behaviour: Behaviour) -> tuple[int, dict[str, Any]]:
        if request.headers.get("access_token") != self.token:
            return 200, {"error": -124, "message": "access token invalid"}
        if behaviour.status >= 300:
            return behaviour.status, {"error": -1, "message": "told to fail"}
        if behaviour.error_code:
            return 200, {"error": behaviour.error_code, "message": "refused"}
        doc = request.json()
        with self._lock:
            msg_id = f"zalo-{len(self.messages) + 1}"
            self.messages.append({**doc, "msg_id": msg_id})
        return 200, {"error": 0, "message": "Success", "data": {"msg_id": msg_id}}


class WebhookReceiver(RecordingServer):
    """A subscribing system: records signed webhooks, answers per its behaviour."""

    name = "subscriber"


def signature_of(secret: str, body: bytes) -> str:
    """What a subscriber computes: hex HMAC-SHA256 of the raw body (independent of notify)."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_signed(url: str, body: bytes, secret: str) -> httpx.Response:
    return httpx.post(
        url,
        content=body,
        headers={"Content-Type": "application/json", "X-Signature": signature_of(secret, body)},
        timeout=10,
    )


# -- SMTP --------------------------------------------------------------------------------------
class _SmtpHandler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.sink.lock:
            if self.sink.reply_with:
                return self.sink.reply_with
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            self.sink.messages.append((list(envelope.rcpt_tos), message))
            self.sink.raw.append((list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 OK"


class SmtpSink:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 keeping what it accepts.

    ``reply_with = "451 4.3.0 try later"`` makes it refuse messages (temporary failure).
    ``raw`` keeps each message's bytes as received, for tests that read them as a mail client.
    """

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self.raw: list[tuple[list[str], bytes]] = []
        self.lock = threading.Lock()
        self.reply_with = ""
        self.port = free_port()
        self._controller = Controller(_SmtpHandler(self), hostname="127.0.0.1", port=self.port)

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for rcpts, m in self.messages if address in rcpts]

    def raw_to(self, address: str) -> list[bytes]:
        """The messages to ``address`` as the bytes the SMTP client sent (DATA, unstuffed)."""
        with self.lock:
            return [raw for rcpts, raw in self.raw if address in rcpts]

    def __enter__(self) -> SmtpSink:
        self._controller.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._controller.stop()


@contextmanager
def providers() -> Iterator[tuple[SmtpSink, SmsProviderServer, SmsProviderServer]]:
    """An SMTP sink and SMS providers A and B, started and stopped together."""
    with (
        SmtpSink() as smtp,
        SmsProviderServer("sms-a", SMS_A_KEY) as a,
        SmsProviderServer("sms-b", SMS_B_KEY) as b,
    ):
        yield smtp, a, b


def notify_env(
    smtp: SmtpSink | None = None,
    sms_a: SmsProviderServer | None = None,
    sms_b: SmsProviderServer | None = None,
    **extra: str,
) -> dict[str, str]:
    """Environment (without the MOTCUA_NOTIFY_ prefix) wiring notify to the stand-ins.

    Quiet hours are off unless a test sets them: tests run at any hour.
    """
    env = {
        "QUIET_HOURS": "",
        "DISPATCH_INTERVAL_SECONDS": "0.05",
        "SMS_TIMEOUT_SECONDS": "1",
        "RECEIPTS_PORT": str(free_port()),
        "RETRY_BASE_SECONDS": "0.2",
        "RETRY_MAX_DELAY_SECONDS": "2",
    }
    if smtp is not None:
        env |= {
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp.port),
            "SMTP_SENDER": "motcua@hoian.example.vn",
        }
    if sms_a is not None:
        env |= {"SMS_PROVIDER_A_URL": sms_a.url, "SMS_PROVIDER_A_API_KEY": sms_a.api_key}
    if sms_b is not None:
        env |= {"SMS_PROVIDER_B_URL": sms_b.url, "SMS_PROVIDER_B_API_KEY": sms_b.api_key}
    env.update(extra)
    return env


# -- dossier events ------------------------------------------------------------------------------
def dossier(
    code: str | None = None,
    *,
    agency: str = "PHOIAN",
    phone: str = PHONE,
    email_address: str = EMAIL,
    citizen_id: str = CITIZEN_ID,
    appointment: str = "2026-12-07",
    status: int = dossier_pb2.DOSSIER_STATUS_NEW,
) -> dossier_pb2.Dossier:
    """A dossier as the dossier service publishes it (a unique code unless given)."""
    msg = dossier_pb2.Dossier(
        code=code or f"{agency}-261129-{uuid.uuid4().int % 10_000:04d}{uuid.uuid4().hex[:4]}",
        procedure_code="HT-001",
        agency_code=agency,
        applicant=dossier_pb2.Applicant(
            full_name="Nguyễn Thị Thu Hà",
            citizen_id=citizen_id,
            phone=phone,
            email=email_address,
            address="12 Trần Phú, phường Hội An, thành phố Đà Nẵng",
        ),
        channel=dossier_pb2.CHANNEL_ONLINE,
        status=status,
        version=1,
        appointment_date=appointment,
    )
    msg.submitted_at.FromSeconds(int(time.time()))
    return msg


def submitted(d: dossier_pb2.Dossier) -> Event:
    return Event.new(
        source="/motcua/dossier",
        type="vn.motcua.dossier.submitted.v1",
        subject=d.code,
        message=events_pb2.DossierSubmitted(dossier=d),
    )


def status_changed(d: dossier_pb2.Dossier, event_type: str, comment: str = "") -> Event:
    return Event.new(
        source="/motcua/dossier",
        type=event_type,
        subject=d.code,
        message=events_pb2.DossierStatusChanged(dossier=d, comment=comment, action="x"),
    )


def payment_event(
    d: dossier_pb2.Dossier,
    event_type: str,
    *,
    amount_vnd: int = 1_250_000,
    link: str = "",
    receipt_number: str = "",
    payer: bool = True,
) -> Event:
    """A payment service event for dossier ``d`` (its applicant as the payer, unless not)."""
    a = d.applicant
    payment = payment_pb2.Payment(
        id=uuid.uuid4().hex,
        dossier_code=d.code,
        agency_code=d.agency_code,
        amount_vnd=amount_vnd,
        currency="VND",
        state=payment_pb2.PAYMENT_STATE_PENDING,
        redirect_url=link,
    )
    if payer:
        payment.payer.CopyFrom(
            payment_pb2.Payer(
                full_name=a.full_name, citizen_id=a.citizen_id, phone=a.phone, email=a.email
            )
        )
    if receipt_number:
        payment.state = payment_pb2.PAYMENT_STATE_SUCCEEDED
        payment.receipt.number = receipt_number
    return Event.new(
        source="/motcua/payment",
        type=event_type,
        subject=d.code,
        message=payment_events.PaymentEvent(payment=payment),
    )


def produce(bootstrap: str, event: Event, times: int = 1, topic: str = "motcua.dossier.v1") -> None:
    """Put ``event`` on the topic ``times`` times (the same record: same ``ce_id``)."""
    record = encode(event)
    producer = KafkaProducer(bootstrap_servers=[bootstrap], api_version=(4, 0))
    try:
        for _ in range(times):
            producer.send(topic, key=record.key, value=record.value, headers=record.headers)
        producer.flush(30)
    finally:
        producer.close()


def produce_all(bootstrap: str, events: list[Event], topic: str = "motcua.dossier.v1") -> None:
    """Put ``events`` on the topic in order, with one producer (a burst)."""
    producer = KafkaProducer(bootstrap_servers=[bootstrap], api_version=(4, 0), linger_ms=5)
    try:
        for event in events:
            record = encode(event)
            producer.send(topic, key=record.key, value=record.value, headers=record.headers)
        producer.flush(30)
    finally:
        producer.close()


def fresh_group(
    bootstrap: str, topics: tuple[str, ...] = ("motcua.dossier.v1", "motcua.payment.v1")
) -> str:
    """A consumer group for notify positioned at the current end of ``topics``.

    The broker lives for the whole session and other tests' dossier events stay on it; a
    notify started with this group (``CONSUMER_GROUP=…``) sees only what comes after.
    """
    group = f"motcua-notify-{uuid.uuid4().hex[:10]}"
    consumer = KafkaConsumer(
        bootstrap_servers=[bootstrap],
        group_id=group,
        api_version=(4, 0),
        enable_auto_commit=False,
    )
    try:
        existing = consumer.topics()
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            if topic in existing
            for p in consumer.partitions_for_topic(topic) or ()
        ]
        if partitions:
            ends = consumer.end_offsets(partitions)
            consumer.commit({tp: OffsetAndMetadata(end, "", -1) for tp, end in ends.items()})
    finally:
        consumer.close()
    return group


def notify_records(bootstrap: str, dossier_code: str, since_ms: int = 0) -> list[Any]:
    """Records notify published for one dossier since ``since_ms`` (epoch milliseconds).

    Codes made by :func:`dossier` are unique; codes from a dossier service with a fresh
    database repeat across tests, so those tests pass the time they started.
    """
    return [
        r
        for r in read_topic(bootstrap, "motcua.notify.v1")
        if r.key == dossier_code.encode() and r.timestamp >= since_ms
    ]


def rows(database_url: str, dossier_code: str) -> list[Any]:
    """The notifications table's rows of one dossier (read straight from notify's database)."""
    from motcua_notify.adapters.db import notifications

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    select(notifications)
                    .where(notifications.c.dossier_code == dossier_code)
                    .order_by(notifications.c.seq)
                ).all()
            )
    finally:
        engine.dispose()


def states(database_url: str, dossier_code: str) -> dict[str, str]:
    return {r.channel: r.state for r in rows(database_url, dossier_code)}


# -- gRPC ----------------------------------------------------------------------------------------
class NotifyClient:
    """ListNotifications / GetNotification / SetOptOut with a bearer token."""

    def __init__(self, target: str, token: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.stub = notify_pb2_grpc.NotifyServiceStub(self.channel)
        self.metadata = [("authorization", f"Bearer {token}")]

    def list(self, dossier_code: str, **kw: Any) -> notify_pb2.ListNotificationsResponse:
        return self.stub.ListNotifications(
            notify_pb2.ListNotificationsRequest(dossier_code=dossier_code, **kw),
            metadata=self.metadata,
            timeout=10,
        )

    def get(self, notification_id: str) -> notify_pb2.GetNotificationResponse:
        return self.stub.GetNotification(
            notify_pb2.GetNotificationRequest(id=notification_id),
            metadata=self.metadata,
            timeout=10,
        )

    def set_opt_out(
        self, citizen_id: str, channel: int, opted_out: bool = True
    ) -> notify_pb2.SetOptOutResponse:
        return self.stub.SetOptOut(
            notify_pb2.SetOptOutRequest(
                citizen_id=citizen_id, channel=channel, opted_out=opted_out
            ),
            metadata=self.metadata,
            timeout=10,
        )

    def close(self) -> None:
        self.channel.close()


def metric(metrics_port: int, name: str, **labels: str) -> float:
    """One sample of a Prometheus metric from a service's /metrics (0 when absent)."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        series, _, rest = head.partition("{")
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if series == name and got == want:
            return float(value)
    return 0.0
