"""Producer side, notify: every event type the service emits, published by its real outbox
relay to the real broker, matches the catalogue — headers, key and payload.

The real notify service class runs in-process (ServiceHost, SQLite) against a real SMTP server
and HTTP SMS providers on 127.0.0.1 (tests/integration/notify_providers.py); dossier events are
handed to its handler in a transaction, as the consumer runner does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from producer_contract import assert_topic_matches_catalogue

from harness import Kafka
from motcua.dossier.v1 import events_pb2 as dossier_events
from motcua_kit.db import transaction
from motcua_kit.service import ServiceHost
from motcua_notify.service import NotifyService
from motcua_notify.settings import NotifySettings
from notify_providers import SMS_A_KEY, SMS_B_KEY, SmtpSink, dossier, providers, submitted
from tools.eventdocs.conformance import publish_outbox

pytestmark = pytest.mark.integration

TOPIC = "motcua.notify.v1"


@pytest.fixture
def notify(kafka: Kafka, tmp_path: Path) -> Iterator[tuple[ServiceHost, NotifyService, SmtpSink]]:
    with providers() as (smtp, sms_a, sms_b):
        settings = NotifySettings(
            database_url=f"sqlite:///{tmp_path}/notify.db",
            kafka_bootstrap=kafka.bootstrap,
            smtp_host="127.0.0.1",
            smtp_port=smtp.port,
            smtp_sender="motcua@hoian.example.vn",
            sms_provider_a_url=sms_a.url,
            sms_provider_a_api_key=SMS_A_KEY,
            sms_provider_b_url=sms_b.url,
            sms_provider_b_api_key=SMS_B_KEY,
            sms_timeout_seconds=1.0,
            receipts_port=0,
            quiet_hours="",  # the test runs at any hour
        )
        host = ServiceHost(NotifyService, settings)
        host.migrate()
        service = host.service
        assert isinstance(service, NotifyService)
        try:
            yield host, service, smtp
        finally:
            service.close()
            host.engine.dispose()


def test_every_notify_event_on_the_topic_matches_the_catalogue(
    kafka: Kafka, notify: tuple[ServiceHost, NotifyService, SmtpSink]
) -> None:
    host, service, smtp = notify
    # Email delivered (the SMTP relay accepted it) and SMS sent (the provider accepted it).
    accepted = submitted(dossier("PHOIAN-261201-0001"))
    with transaction(host.sessions) as session:
        service.on_dossier_event(accepted, accepted.parse(dossier_events.DossierSubmitted), session)
    service.dispatch()
    # Email refused for good: permanent failure.
    smtp.reply_with = "554 5.7.1 rejected"
    refused = submitted(dossier("PHOIAN-261201-0002", phone=""))
    with transaction(host.sessions) as session:
        service.on_dossier_event(refused, refused.parse(dossier_events.DossierSubmitted), session)
    service.dispatch()

    assert_topic_matches_catalogue(kafka, TOPIC, publish_outbox(host))
