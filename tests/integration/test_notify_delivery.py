"""Notify as a process when things go wrong: provider failover, retries up to the bound, a kill
in the middle of a send, signed webhooks, and a template refused at start."""

from __future__ import annotations

import copy
import itertools
import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from harness import Kafka, ServiceProcess, header, wait_for
from motcua.notify.v1 import events_pb2, notify_pb2
from motcua_notify.domain.templates import DEFAULT_FILE
from notify_providers import (
    SMS_A_KEY,
    SMS_B_KEY,
    SmsProviderServer,
    WebhookReceiver,
    dossier,
    fresh_group,
    metric,
    notify_env,
    notify_records,
    produce,
    rows,
    signature_of,
    status_changed,
    submitted,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("failure", ["answers 500", "is slower than the timeout"])
def test_when_provider_a_fails_sms_go_through_provider_b(
    failure: str,
    kafka: Kafka,
    tmp_path: Path,
    service_factory: Callable[..., ServiceProcess],
) -> None:
    with SmsProviderServer("sms-a", SMS_A_KEY) as a, SmsProviderServer("sms-b", SMS_B_KEY) as b:
        if failure == "answers 500":
            a.behave(status=500)
        else:
            a.behave(delay=5.0)
        url = f"sqlite:///{tmp_path}/notify.db"
        env = notify_env(
            None, a, b, CONSUMER_GROUP=fresh_group(kafka.bootstrap), SMS_TIMEOUT_SECONDS="0.5"
        )
        notify = service_factory("notify", url, **env).start()
        batch = [dossier(email_address="", phone=f"09{i:08d}") for i in range(3)]
        for d in batch:
            produce(kafka.bootstrap, submitted(d))
        wait_for(lambda: len(b.messages) == 3, 60, 0.1, "three SMS through provider B")
        assert a.received("/messages")  # A was tried first
        for d in batch:
            (row,) = rows(url, d.code)
            assert (row.provider, row.state) == ("sms-b", "sending")
            assert any(d.code in m["text"] for m in b.messages)
        # A failing provider is benched for a while, so not every message pays for it.
        assert (
            metric(
                notify.metrics_port,
                "motcua_notify_provider_failovers_total",
                channel="sms",
                provider="sms-a",
            )
            >= 1
        )
        assert notify.terminate() == 0


def test_temporary_failures_are_retried_with_growing_delays_then_fail_permanently(
    kafka: Kafka,
    tmp_path: Path,
    service_factory: Callable[..., ServiceProcess],
) -> None:
    with SmsProviderServer("sms-a", SMS_A_KEY) as a, SmsProviderServer("sms-b", SMS_B_KEY) as b:
        a.behave(status=503)
        b.behave(status=502)
        url = f"sqlite:///{tmp_path}/notify.db"
        env = notify_env(
            None,
            a,
            b,
            CONSUMER_GROUP=fresh_group(kafka.bootstrap),
            RETRY_MAX_ATTEMPTS="4",
            RETRY_BASE_SECONDS="0.4",
            RETRY_JITTER="0.25",
            RETRY_MAX_DELAY_SECONDS="10",
        )
        notify = service_factory("notify", url, **env).start()
        d = dossier(email_address="")
        produce(kafka.bootstrap, submitted(d))
        wait_for(lambda: notify_records(kafka.bootstrap, d.code), 60, 0.3, "the failed event")

        (record,) = notify_records(kafka.bootstrap, d.code)
        assert header(record, "ce_type") == b"vn.motcua.notify.failed.v1"
        failed = events_pb2.NotificationFailed.FromString(record.value)
        assert failed.notification.status == notify_pb2.DELIVERY_STATUS_PERMANENT_FAILURE
        assert failed.notification.attempts == 4
        assert failed.notification.recipient == "*******456"
        assert "gave up after 4 attempts" in failed.reason
        assert b"0905123456" not in record.value
        (row,) = rows(url, d.code)
        assert row.state == "permanent-failure"
        # Four attempts on each provider; the gaps between attempts grow: at least
        # base·2ⁿ⁻¹·(1 − jitter) = 0.3 s, 0.6 s, 1.2 s.
        times = [r.at for r in a.received("/messages")]
        assert len(times) == 4 and len(b.received("/messages")) == 4
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert [g >= floor for g, floor in zip(gaps, (0.3, 0.6, 1.2), strict=True)] == [True] * 3
        assert gaps[2] > gaps[0]
        # Visible in the metrics.
        port = notify.metrics_port
        assert metric(port, "motcua_notify_retries_total", channel="sms") == 3
        assert (
            metric(port, "motcua_notify_messages_total", channel="sms", outcome="permanent-failure")
            == 1
        )
        assert (
            metric(
                port,
                "motcua_notify_provider_latency_seconds_count",
                channel="sms",
                provider="sms-a",
                outcome="temporary",
            )
            == 4
        )
        assert notify.terminate() == 0


def test_killed_mid_send_the_retry_reuses_the_reference_and_the_provider_sends_once(
    kafka: Kafka,
    postgres,
    service_factory: Callable[..., ServiceProcess],
) -> None:
    with SmsProviderServer("sms-a", SMS_A_KEY) as a:
        a.behave(delay=30.0)  # the provider takes the message, then is slow to answer
        url = postgres.create_database("notify")
        env = notify_env(
            None,
            a,
            None,
            CONSUMER_GROUP=fresh_group(kafka.bootstrap),
            SMS_TIMEOUT_SECONDS="3",  # longer than it takes to kill the process mid-send
            SEND_LEASE_SECONDS="4",
        )
        notify = service_factory("notify", url, **env).start()
        d = dossier(email_address="")
        produce(kafka.bootstrap, submitted(d))
        wait_for(lambda: a.received("/messages"), 60, 0.05, "the send in flight")
        assert rows(url, d.code)[0].state == "sending"
        notify.kill9()  # between "sending" and the provider's answer

        a.behave()  # the provider answers at once now
        notify.start()
        wait_for(lambda: len(a.received("/messages")) == 2, 60, 0.1, "the resend")
        wait_for(lambda: rows(url, d.code)[0].provider_ref, 30, 0.1, "the answer recorded")
        first, second = a.received("/messages")
        assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
        assert first.json()["client_ref"] == second.json()["client_ref"]
        assert len(a.messages) == 1  # the provider sent one SMS
        (row,) = rows(url, d.code)
        assert (row.state, row.attempts, row.provider_ref) == ("sending", 1, "sms-a-1")

        def sent() -> list:
            records = notify_records(kafka.bootstrap, d.code)
            return [r for r in records if header(r, "ce_type") == b"vn.motcua.notify.sent.v1"]

        wait_for(sent, 30, 0.2, "the sent event")
        assert len(sent()) == 1
        assert notify.terminate() == 0


def test_killed_after_failing_over_the_resend_goes_to_the_provider_that_took_it(
    kafka: Kafka,
    postgres,
    service_factory: Callable[..., ServiceProcess],
) -> None:
    """A refuses, B takes the SMS but is slow to answer, notify dies: after the restart A is
    healthy again and first in line, yet the resend must go to B — only B knows the key."""
    with SmsProviderServer("sms-a", SMS_A_KEY) as a, SmsProviderServer("sms-b", SMS_B_KEY) as b:
        a.behave(status=503)
        b.behave(delay=30.0)
        url = postgres.create_database("notify")
        env = notify_env(
            None,
            a,
            b,
            CONSUMER_GROUP=fresh_group(kafka.bootstrap),
            SMS_TIMEOUT_SECONDS="3",
            SEND_LEASE_SECONDS="7",
        )
        notify = service_factory("notify", url, **env).start()
        d = dossier(email_address="")
        produce(kafka.bootstrap, submitted(d))
        wait_for(lambda: b.received("/messages"), 60, 0.05, "the send in flight at B")
        assert rows(url, d.code)[0].provider == "sms-b"  # written before B was called
        notify.kill9()

        a.behave()
        b.behave()
        notify.start()
        wait_for(lambda: rows(url, d.code)[0].provider_ref, 60, 0.1, "the resend answered")
        first, second = b.received("/messages")
        assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
        assert a.messages == []  # A refused the first try and was not asked again
        assert len(b.messages) == 1  # one SMS reached the citizen
        (row,) = rows(url, d.code)
        assert (row.state, row.attempts, row.provider, row.provider_ref) == (
            "sending",
            1,
            "sms-b",
            "sms-b-1",
        )
        assert notify.terminate() == 0


def test_webhooks_are_signed_with_the_subscriber_secret_and_tampering_shows(
    kafka: Kafka,
    tmp_path: Path,
    service_factory: Callable[..., ServiceProcess],
) -> None:
    secret = "whsec-" + uuid.uuid4().hex
    with WebhookReceiver() as portal, WebhookReceiver() as other:
        subscriptions = tmp_path / "webhooks.yaml"
        subscriptions.write_text(
            yaml.safe_dump(
                {
                    "subscriptions": [
                        {
                            "id": "hoian-portal",
                            "agency": "PHOIAN",
                            "url": f"{portal.url}/hook",
                            "secret": secret,
                        },
                        {
                            "id": "stp-stats",
                            "agency": "STP",
                            "url": f"{other.url}/hook",
                            "secret": "another-secret-0123456789",
                        },
                    ]
                }
            )
        )
        portal.behave(status=503)  # the subscriber is down at first: the webhook is retried
        url = f"sqlite:///{tmp_path}/notify.db"
        env = notify_env(
            None,
            None,
            None,
            CONSUMER_GROUP=fresh_group(kafka.bootstrap),
            WEBHOOK_SUBSCRIPTIONS_FILE=str(subscriptions),
            RETRY_BASE_SECONDS="1",
        )
        notify = service_factory("notify", url, **env).start()
        d = dossier()
        produce(kafka.bootstrap, submitted(d))
        wait_for(lambda: portal.received("/hook"), 60, 0.05, "the first try")
        portal.behave()
        produce(
            kafka.bootstrap, status_changed(d, "vn.motcua.dossier.rejected.v1", "Thiếu tờ khai")
        )
        wait_for(
            lambda: (
                len({r.headers["motcua-notification-id"] for r in portal.received("/hook")}) == 2
            ),
            60,
            0.1,
            "both",
        )
        wait_for(lambda: {r.state for r in rows(url, d.code)} == {"delivered"}, 30, 0.1, "done")

        hooks = {r.json()["event_type"]: r for r in portal.received("/hook")}
        submitted_hook = hooks["vn.motcua.dossier.submitted.v1"]
        rejected_hook = hooks["vn.motcua.dossier.rejected.v1"]
        for hook in (submitted_hook, rejected_hook):
            signature = hook.headers["motcua-signature"]
            # The subscriber checks the body it received with its own secret…
            assert signature == signature_of(secret, hook.body)
            # …and a body changed on the way no longer matches.
            tampered = hook.body.replace(d.code.encode(), b"PHOIAN-261129-9999")
            assert tampered != hook.body
            assert signature != signature_of(secret, tampered)
            assert signature != signature_of("not-the-secret-0123456789", hook.body)
            assert hook.headers["idempotency-key"] == hook.headers["motcua-notification-id"]
        body = json.loads(rejected_hook.body)
        assert body["dossier_code"] == d.code and body["agency_code"] == "PHOIAN"
        assert body["data"]["comment"] == "Thiếu tờ khai"
        for personal in (b"0905123456", b"079203004567", d.applicant.email.encode()):
            assert personal not in submitted_hook.body
        # The retry carried the same notification id (subscribers dedupe on it).
        ids = [r.headers["motcua-notification-id"] for r in portal.received("/hook")]
        assert len(ids) == 3 and len(set(ids)) == 2
        assert other.received() == []  # another agency's subscriber hears nothing
        assert notify.terminate() == 0


def test_a_too_long_sms_template_stops_the_service_at_start_naming_it(
    kafka: Kafka,
    tmp_path: Path,
    service_factory: Callable[..., ServiceProcess],
) -> None:
    doc = yaml.safe_load(DEFAULT_FILE.read_text(encoding="utf-8"))
    doc = copy.deepcopy(doc)
    doc["templates"]["late_apology"]["sms"]["body"] += " Chúng tôi rất lấy làm tiếc." * 8
    templates = tmp_path / "templates.yaml"
    templates.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    notify = service_factory(
        "notify", f"sqlite:///{tmp_path}/notify.db", TEMPLATES_FILE=str(templates)
    ).start(wait=False)
    assert notify.proc is not None
    assert notify.proc.wait(60) != 0
    log = notify.log_tail(200)
    assert "'late_apology.sms' is too long" in log
    assert "over the limit of 2" in log
