"""Producer side, payment: every event type the service emits, published by its real outbox
relay to the real broker, matches the catalogue — headers, key and payload.

The real payment service class runs in-process (ServiceHost, SQLite) with its clock shiftable,
against the sandbox gateway and its own callback endpoint as real HTTP servers on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from producer_contract import assert_topic_matches_catalogue

from harness import Kafka, free_port
from motcua.dossier.v1.events_pb2 import DossierStatusChanged
from motcua_kit.auth import Principal
from motcua_kit.db import transaction
from motcua_kit.service import ServiceHost
from motcua_payment.domain.payment import Payment
from motcua_payment.sandbox import Merchant, SandboxGateway
from motcua_payment.sandbox.client import SandboxClient
from motcua_payment.service import PaymentService
from motcua_payment.settings import PaymentSettings
from motcua_payment.testing import payment_requested_event
from tools.eventdocs.conformance import publish_outbox

pytestmark = pytest.mark.integration

TOPIC = "motcua.payment.v1"
SECRET = "contract-hash-secret-0123456789"
MERCHANT = "MOTCUA01"
SERVICE = Principal("portal", frozenset({"service"}))
OFFICER = Principal("officer-sxd", frozenset({"officer"}), agency_code="SXD")


class Clock:
    """Real time, shifted on demand (expiry)."""

    def __init__(self) -> None:
        self.shift = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.shift


@pytest.fixture
def payment(
    kafka: Kafka, tmp_path: Path
) -> Iterator[tuple[ServiceHost, PaymentService, SandboxClient, Clock]]:
    port = free_port()
    clock = Clock()
    sandbox = SandboxGateway(
        merchants=[
            Merchant(MERCHANT, SECRET.encode(), f"http://127.0.0.1:{port}/payment/sandbox/ipn")
        ],
        clock=clock,
    ).start()
    settings = PaymentSettings(
        database_url=f"sqlite:///{tmp_path}/payment.db",
        kafka_bootstrap=kafka.bootstrap,
        gateway_base_url=sandbox.url,
        gateway_merchant_code=MERCHANT,
        gateway_hash_secret=SECRET,
        callback_port=port,
        reconcile_after_seconds=0,
    )
    host = ServiceHost(PaymentService, settings, overrides={"clock": clock})
    host.migrate()
    service = host.service
    assert isinstance(service, PaymentService)
    service.start_callbacks()
    client = SandboxClient(sandbox.url)
    try:
        yield host, service, client, clock
    finally:
        client.close()
        service.stop_callbacks()
        sandbox.stop()
        host.engine.dispose()


def _create(service: PaymentService, n: int) -> Payment:
    """A payment for a dossier whose fee the dossier service asked for (its event)."""
    code = f"SXD-261201-{n:04d}"
    event = payment_requested_event(code, "SXD", 150_000)
    [handler] = [h for h in service.handlers() if h.event_type == event.type]
    with transaction(service.context.sessions) as session:
        handler.fn(event, event.parse(DossierStatusChanged), session)
    [payment] = service.list_payments(SERVICE, code)
    return payment


def test_every_payment_event_on_the_topic_matches_the_catalogue(
    kafka: Kafka, payment: tuple[ServiceHost, PaymentService, SandboxClient, Clock]
) -> None:
    host, service, client, clock = payment
    paid = _create(service, 1)  # requested
    client.pay(paid.redirect_url)  # succeeded (the IPN reaches the callback endpoint)
    service.refund_payment(OFFICER, paid.id, 10_000, "Thu thừa lệ phí", "refund-1")
    client.set_faults(refund="decline")
    service.refund_payment(OFFICER, paid.id, 10_000, "Thu thừa lệ phí", "refund-2")
    client.set_faults()
    client.pay(_create(service, 2).redirect_url, "cancel")  # failed
    service.cancel_payment(OFFICER, _create(service, 3).id, "Nộp nhầm hồ sơ")  # cancelled
    _create(service, 4)
    clock.shift = timedelta(seconds=901)
    assert service.expire() >= 1  # expired

    assert_topic_matches_catalogue(kafka, TOPIC, publish_outbox(host))
