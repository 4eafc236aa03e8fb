"""The notify service in-process, with time in the test's hands: the real database (SQLite and
PostgreSQL), a real SMTP server and local HTTP providers — but no Kafka: events are handed to
the consumer's handler directly, in a transaction as the consumer runner does.

The clock is the service's ``clock`` dependency, replaced by a :class:`FakeClock`, so quiet
hours, rate limits and retry delays are checked without waiting for them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from motcua.dossier.v1 import events_pb2
from motcua.notify.v1 import events_pb2 as notify_events
from motcua.notify.v1 import notify_pb2
from motcua.payment.v1 import events_pb2 as payment_events
from motcua_kit.auth import Principal
from motcua_kit.db import transaction
from motcua_kit.envelope import Event
from motcua_kit.errors import InvalidArgument, NotFound, PermissionDenied
from motcua_kit.service import ServiceHost
from motcua_notify.adapters.db import notification_history, notifications, outbox
from motcua_notify.domain.states import Channel, State
from motcua_notify.service import NotifyService
from motcua_notify.settings import NotifySettings
from notify_providers import (
    CITIZEN_ID,
    EMAIL,
    SMS_A_KEY,
    SMS_B_KEY,
    ZALO_TOKEN,
    SmsProviderServer,
    SmtpSink,
    ZaloServer,
    dossier,
    payment_event,
    post_signed,
    providers,
    status_changed,
    submitted,
)

pytestmark = pytest.mark.integration

# 22:30 in Đà Nẵng (UTC+7): inside the default quiet hours 21:00–07:00.
EVENING = datetime(2026, 11, 29, 15, 30, tzinfo=UTC)
NOON = datetime(2026, 11, 30, 5, 0, tzinfo=UTC)


class FakeClock:
    """The service's clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def stand_ins() -> Iterator[tuple[SmtpSink, SmsProviderServer, SmsProviderServer]]:
    with providers() as servers:
        yield servers


@pytest.fixture
def notify(
    database: Callable[[str], str], stand_ins: tuple[SmtpSink, SmsProviderServer, SmsProviderServer]
) -> Iterator[Callable[..., tuple[NotifyService, FakeClock, ServiceHost]]]:
    """Build an in-process notify wired to the stand-ins: ``notify(now, **settings)``."""
    smtp, a, b = stand_ins
    hosts: list[ServiceHost] = []
    url = database("notify")

    def make(now: datetime = NOON, **overrides: Any) -> tuple[Any, FakeClock, ServiceHost]:
        values: dict[str, Any] = {
            "database_url": url,
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp.port,
            "smtp_sender": "motcua@hoian.example.vn",
            "sms_provider_a_url": a.url,
            "sms_provider_a_api_key": SMS_A_KEY,
            "sms_provider_b_url": b.url,
            "sms_provider_b_api_key": SMS_B_KEY,
            "sms_timeout_seconds": 1.0,
            "receipts_port": 0,
            "retry_base_seconds": 10,
            "retry_max_delay_seconds": 600,
            "retry_jitter": 0.5,
            "retry_max_attempts": 4,
        }
        values.update(overrides)
        clock = FakeClock(now)
        host = ServiceHost(NotifyService, NotifySettings(**values), overrides={"clock": clock})
        host.migrate()
        hosts.append(host)
        service = host.service
        assert isinstance(service, NotifyService)
        return service, clock, host

    yield make
    for host in hosts:
        host.service.close()
        host.engine.dispose()


def deliver(host: ServiceHost, event: Event) -> None:
    """Hand an event to notify's handler in one transaction, as the consumer runner does."""
    service = host.service
    assert isinstance(service, NotifyService)
    if event.type.startswith("vn.motcua.payment."):
        with transaction(host.sessions) as session:
            service.on_payment_event(event, event.parse(payment_events.PaymentEvent), session)
        return
    message_type = (
        events_pb2.DossierSubmitted
        if event.type.endswith("submitted.v1")
        else events_pb2.DossierStatusChanged
    )
    with transaction(host.sessions) as session:
        service.on_dossier_event(event, event.parse(message_type), session)


def table(host: ServiceHost, code: str) -> list[Any]:
    with host.sessions() as session:
        return list(
            session.execute(
                select(notifications)
                .where(notifications.c.dossier_code == code)
                .order_by(notifications.c.seq)
            ).all()
        )


def published(host: ServiceHost, code: str) -> list[tuple[str, Any]]:
    """(type, decoded message) of the notify events in the outbox for one dossier."""
    kinds = {
        "vn.motcua.notify.sent.v1": notify_events.NotificationSent,
        "vn.motcua.notify.delivered.v1": notify_events.NotificationDelivered,
        "vn.motcua.notify.failed.v1": notify_events.NotificationFailed,
    }
    with host.sessions() as session:
        got = session.execute(
            select(outbox.c.event_type, outbox.c.payload, outbox.c.topic)
            .where(outbox.c.event_key == code)
            .order_by(outbox.c.id)
        ).all()
    assert {r.topic for r in got} <= {"motcua.notify.v1"}
    return [(r.event_type, kinds[r.event_type].FromString(r.payload)) for r in got]


ADMIN = Principal("admin-1", frozenset({"admin"}))


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# -- exactly one message ------------------------------------------------------------------------
def test_the_same_event_recorded_five_times_is_one_row_per_channel_even_without_the_inbox(
    notify, stand_ins
) -> None:
    service, _clock, host = notify()
    d = dossier()
    event = submitted(d)
    for _ in range(5):
        deliver(host, event)  # no inbox in this path: only the UNIQUE key stands in the way
    got = table(host, d.code)
    assert sorted(r.channel for r in got) == ["email", "sms"]
    service.dispatch()
    service.dispatch()
    smtp, a, b = stand_ins
    assert len(smtp.to(EMAIL)) == 1
    assert len(a.messages) + len(b.messages) == 1


def test_the_unique_key_is_in_the_database(notify) -> None:
    _service, _clock, host = notify()
    d = dossier()
    deliver(host, submitted(d))
    (row, *_) = table(host, d.code)
    with pytest.raises(Exception, match=r"(?i)unique"), transaction(host.sessions) as session:
        session.execute(
            notifications.insert().values(
                # Same event, channel and recipient under another id.
                {**{k: v for k, v in row._mapping.items() if k != "seq"}, "id": "another-id"}
            )
        )


# -- quiet hours ----------------------------------------------------------------------------------
def test_quiet_hours_hold_sms_while_email_goes_and_the_sms_goes_after(notify, stand_ins) -> None:
    smtp, a, _b = stand_ins
    service, clock, host = notify(EVENING, quiet_hours="21:00-07:00")
    d = dossier()
    deliver(host, submitted(d))

    service.dispatch()
    assert len(smtp.to(EMAIL)) == 1
    assert a.messages == []
    sms = next(r for r in table(host, d.code) if r.channel == "sms")
    assert sms.state == State.CREATED
    _, history = service.get_notification(ADMIN, sms.id)
    assert "held for quiet hours until 07:00" in history[-1].detail

    clock.now = datetime(2026, 11, 29, 23, 59, tzinfo=UTC)  # 06:59 local: still quiet
    service.dispatch()
    assert a.messages == []

    clock.now = datetime(2026, 11, 30, 0, 0, 1, tzinfo=UTC)  # 07:00:01 local
    service.dispatch()
    assert len(a.messages) == 1
    assert d.code in a.messages[0]["text"]


def test_the_queue_age_metric_reports_the_oldest_waiting_message(notify) -> None:
    service, clock, host = notify(EVENING, quiet_hours="21:00-07:00")
    deliver(host, submitted(dossier()))
    service.dispatch()  # the email goes, the SMS is held
    clock.advance(3600)
    service.update_queue_gauges()
    assert sample("motcua_notify_queue_oldest_seconds", channel="sms") == 3600
    assert sample("motcua_notify_queue_oldest_seconds", channel="email") == 0


def test_quiet_hours_do_not_hold_email(notify, stand_ins) -> None:
    smtp, _a, _b = stand_ins
    service, _clock, host = notify(EVENING, quiet_hours="21:00-07:00")
    d = dossier()
    deliver(host, status_changed(d, "vn.motcua.dossier.received.v1"))  # an email-only notice
    service.dispatch()
    assert len(smtp.to(EMAIL)) == 1


# -- rate limits ----------------------------------------------------------------------------------
def test_a_token_bucket_paces_each_channel(notify, stand_ins) -> None:
    smtp, a, _b = stand_ins
    service, clock, host = notify(
        rate_limits={
            "sms": {"per_second": 0.5, "burst": 2},
            "email": {"per_second": 100, "burst": 100},
        },
    )
    codes = []
    for _ in range(5):
        d = dossier()
        codes.append(d.code)
        deliver(host, submitted(d))

    service.dispatch()
    assert len(smtp.to(EMAIL)) == 5  # email has room
    assert len(a.messages) == 2  # the burst
    held = sample("motcua_notify_held_total", channel="sms", reason="rate_limit")
    service.dispatch()
    assert len(a.messages) == 2
    assert sample("motcua_notify_held_total", channel="sms", reason="rate_limit") == held + 1
    clock.advance(1.9)
    service.dispatch()
    assert len(a.messages) == 2  # not yet a whole token
    clock.advance(0.2)
    service.dispatch()
    assert len(a.messages) == 3
    clock.advance(10)
    service.dispatch()
    assert len(a.messages) == 5
    # Oldest first (a batch is sent concurrently, so only batches are ordered).
    sent = [m["text"].split()[3] for m in a.messages]
    assert set(sent[:2]) == set(codes[:2]) and sent[2] == codes[2]


# -- opt-outs -------------------------------------------------------------------------------------
def test_a_citizen_opted_out_of_sms_gets_email_only(notify, stand_ins) -> None:
    smtp, a, b = stand_ins
    service, _clock, host = notify()
    citizen = Principal("c", frozenset({"citizen"}), citizen_id=CITIZEN_ID)
    assert service.set_opt_out(citizen, CITIZEN_ID, Channel.SMS, True).keys() == {Channel.SMS}
    d = dossier()
    deliver(host, submitted(d))
    service.dispatch()
    assert [r.channel for r in table(host, d.code)] == ["email"]
    assert len(smtp.to(EMAIL)) == 1
    assert a.messages == [] and b.messages == []

    assert service.set_opt_out(citizen, CITIZEN_ID, Channel.SMS, False) == {}
    d2 = dossier()
    deliver(host, submitted(d2))
    assert sorted(r.channel for r in table(host, d2.code)) == ["email", "sms"]


def test_opt_outs_are_validated_and_only_the_citizen_sets_theirs(notify) -> None:
    service, _clock, _host = notify()
    other = Principal("c", frozenset({"citizen"}), citizen_id="001099000001")
    officer = Principal("o", frozenset({"officer"}), agency_code="PHOIAN")
    with pytest.raises(PermissionDenied):
        service.set_opt_out(other, CITIZEN_ID, Channel.SMS, True)
    with pytest.raises(PermissionDenied):
        service.set_opt_out(officer, CITIZEN_ID, Channel.SMS, True)
    with pytest.raises(InvalidArgument) as info:
        service.set_opt_out(ADMIN, "12345", Channel.SMS, True)
    assert info.value.field == "citizen_id"
    with pytest.raises(InvalidArgument) as info:
        service.set_opt_out(ADMIN, CITIZEN_ID, Channel.WEBHOOK, True)
    assert info.value.field == "channel"
    assert service.list_opt_outs(ADMIN, CITIZEN_ID) == {}


# -- retries --------------------------------------------------------------------------------------
def test_temporary_failures_retry_with_growing_delays_then_fail_permanently(
    notify, stand_ins
) -> None:
    _smtp, a, b = stand_ins
    a.behave(status=503)
    b.behave(status=500)
    service, clock, host = notify()
    d = dossier()
    deliver(host, submitted(d))
    retries_before = sample("motcua_notify_retries_total", channel="sms")
    failed_before = sample(
        "motcua_notify_messages_total", channel="sms", outcome="permanent-failure"
    )

    delays = []
    for attempt in range(1, 5):
        service.dispatch()
        sms = next(r for r in table(host, d.code) if r.channel == "sms")
        assert sms.attempts == attempt
        if attempt < 4:
            assert sms.state == State.TEMPORARY_FAILURE
            due = sms.next_attempt_at.replace(tzinfo=UTC)
            delays.append((due - clock.now).total_seconds())
            clock.now = due - timedelta(milliseconds=1)
            service.dispatch()  # not due yet: nothing is sent
            assert len(a.received()) == attempt
            clock.now = due
    assert sms.state == State.PERMANENT_FAILURE
    assert "gave up after 4 attempts" in sms.detail
    # Each attempt tried A, then failed over to B.
    assert len(a.received()) == 4 and len(b.received()) == 4
    # Exponential backoff with jitter: each delay in [ceiling/2, ceiling], ceilings 10, 20, 40.
    assert [c / 2 <= x <= c for c, x in zip([10, 20, 40], delays, strict=True)] == [True] * 3
    assert delays == sorted(delays)
    # The failure is visible: an event and the metrics.
    failed = [m for t, m in published(host, d.code) if t == "vn.motcua.notify.failed.v1"]
    assert len(failed) == 1
    assert failed[0].notification.status == notify_pb2.DELIVERY_STATUS_PERMANENT_FAILURE
    assert failed[0].notification.recipient == "*******456"
    assert "gave up" in failed[0].reason
    assert sample("motcua_notify_retries_total", channel="sms") == retries_before + 3
    assert (
        sample("motcua_notify_messages_total", channel="sms", outcome="permanent-failure")
        == failed_before + 1
    )
    # The history tells the story.
    _, history = service.get_notification(ADMIN, sms.id)
    assert [h.state.value for h in history].count("temporary-failure") == 3
    assert history[-1].state is State.PERMANENT_FAILURE


def test_a_smtp_refusal_4xx_is_retried_and_5xx_is_permanent(notify, stand_ins) -> None:
    smtp, _a, _b = stand_ins
    service, clock, host = notify()
    smtp.reply_with = "451 4.3.0 mailbox busy"
    d = dossier(phone="")
    deliver(host, submitted(d))
    service.dispatch()
    (row,) = table(host, d.code)
    assert row.state == State.TEMPORARY_FAILURE and "451" in row.detail
    smtp.reply_with = ""
    clock.now = row.next_attempt_at.replace(tzinfo=UTC)
    service.dispatch()
    assert table(host, d.code)[0].state == State.DELIVERED
    assert len(smtp.to(EMAIL)) == 1

    smtp.reply_with = "554 5.7.1 rejected"
    d2 = dossier(phone="")
    deliver(host, submitted(d2))
    service.dispatch()
    assert table(host, d2.code)[0].state == State.PERMANENT_FAILURE


def test_a_message_for_a_channel_no_longer_configured_fails_technically(notify) -> None:
    _service, _clock, host = notify()
    d = dossier()
    deliver(host, submitted(d))  # email and SMS recorded while both are configured
    without_sms, _clock2, host2 = notify(sms_provider_a_url="", sms_provider_b_url="")
    without_sms.dispatch()
    assert {r.channel: r.state for r in table(host2, d.code)} == {
        "email": State.DELIVERED,
        "sms": State.TECHNICAL_FAILURE,
    }
    failed = [m for t, m in published(host2, d.code) if t.endswith("failed.v1")]
    assert [m.notification.status for m in failed] == [notify_pb2.DELIVERY_STATUS_TECHNICAL_FAILURE]
    assert "not configured" in failed[0].reason


# -- email content --------------------------------------------------------------------------------
def test_the_email_is_vietnamese_utf8_with_a_stable_message_id(notify, stand_ins) -> None:
    smtp, _a, _b = stand_ins
    service, _clock, host = notify()
    d = dossier(phone="")
    deliver(host, submitted(d))
    service.dispatch()
    (message,) = smtp.to(EMAIL)
    (row,) = table(host, d.code)
    assert message["Subject"] == f"Tiếp nhận hồ sơ {d.code} — hẹn trả kết quả ngày 07/12/2026"
    assert message["Message-ID"] == f"<{row.id}@hoian.example.vn>"
    assert message["From"].addresses[0].addr_spec == "motcua@hoian.example.vn"
    body = message.get_content()
    assert "Kính gửi Ông/Bà Nguyễn Thị Thu Hà" in body
    assert "07/12/2026" in body


# -- delivery receipts ---------------------------------------------------------------------------
def test_delivery_receipts_move_sms_to_delivered_or_permanent_failure(notify, stand_ins) -> None:
    _smtp, a, _b = stand_ins
    service, _clock, host = notify()
    receipts = f"http://127.0.0.1:{service.start_receipts().port}"
    d1, d2 = dossier(email_address=""), dossier(email_address="")
    deliver(host, submitted(d1))
    deliver(host, submitted(d2))
    service.dispatch()
    assert [r.state for r in table(host, d1.code)] == [State.SENDING]  # awaiting the receipt
    # Sent concurrently: find each dossier's message by its code.
    m1, m2 = (next(m for m in a.messages if d.code in m["text"]) for d in (d1, d2))

    assert a.send_receipt(receipts, m1, "DELIVRD").json() == {"result": "applied"}
    assert a.send_receipt(receipts, m2, "UNDELIV").json() == {"result": "applied"}
    (r1,), (r2,) = table(host, d1.code), table(host, d2.code)
    assert (
        r1.state == State.DELIVERED
        and r1.provider == "sms-a"
        and r1.provider_ref == m1["message_id"]
    )
    assert r2.state == State.PERMANENT_FAILURE
    # A repeated receipt changes nothing; a forged or unknown one is refused.
    assert a.send_receipt(receipts, m1, "UNDELIV").json() == {"result": "ignored"}
    assert table(host, d1.code)[0].state == State.DELIVERED
    assert a.send_receipt(receipts, m1, "DELIVRD", sign_with="not-the-key").status_code == 401
    unknown = {**m1, "message_id": "nope", "client_ref": "nope.1"}
    assert a.send_receipt(receipts, unknown, "DELIVRD").status_code == 404
    body = json.dumps({"message_id": m1["message_id"], "status": "DELIVRD"}).encode()
    assert post_signed(f"{receipts}/receipts/zalo", body, ZALO_TOKEN).status_code == 404
    assert httpx.post(f"{receipts}/receipts/sms-a", content=b"{}").status_code == 401
    kinds = [t.rsplit(".", 2)[-2] for t, _ in published(host, d1.code)]
    assert kinds == ["sent", "delivered"]
    kinds = [t.rsplit(".", 2)[-2] for t, _ in published(host, d2.code)]
    assert kinds == ["sent", "failed"]


def test_a_temporary_failure_receipt_is_retried_with_a_new_reference(notify, stand_ins) -> None:
    _smtp, a, _b = stand_ins
    service, clock, host = notify()
    receipts = f"http://127.0.0.1:{service.start_receipts().port}"
    d = dossier(email_address="")
    deliver(host, submitted(d))
    service.dispatch()
    (m1,) = a.messages
    assert a.send_receipt(receipts, m1, "EXPIRED").json() == {"result": "applied"}
    (row,) = table(host, d.code)
    assert row.state == State.TEMPORARY_FAILURE
    clock.now = row.next_attempt_at.replace(tzinfo=UTC)
    service.dispatch()
    assert len(a.messages) == 2  # a new attempt, a new reference: the provider sends again
    assert a.messages[0]["client_ref"] != a.messages[1]["client_ref"]


def test_an_sms_whose_receipt_never_comes_is_given_up_after_the_timeout_not_resent(
    notify, stand_ins
) -> None:
    _smtp, a, _b = stand_ins
    service, clock, host = notify(receipt_timeout_hours=72)
    late, answered = dossier(email_address=""), dossier(email_address="")
    deliver(host, submitted(late))
    deliver(host, submitted(answered))
    service.dispatch()
    receipts = f"http://127.0.0.1:{service.start_receipts().port}"
    (m2,) = (m for m in a.messages if answered.code in m["text"])
    assert a.send_receipt(receipts, m2, "DELIVRD").json() == {"result": "applied"}

    clock.advance(71.9 * 3600)
    assert service.time_out_receipts() == 0  # not yet
    assert table(host, late.code)[0].state == State.SENDING
    clock.advance(0.2 * 3600)
    assert service.time_out_receipts() == 1
    (row,) = table(host, late.code)
    assert row.state == State.PERMANENT_FAILURE
    assert row.detail == "no delivery receipt from sms-a within 72 h"
    assert table(host, answered.code)[0].state == State.DELIVERED  # its receipt came
    kinds = [t.rsplit(".", 2)[-2] for t, _ in published(host, late.code)]
    assert kinds == ["sent", "failed"]
    service.dispatch()
    assert len(a.messages) == 2  # given up, not sent again
    assert service.time_out_receipts() == 0  # and only once


# -- Zalo -----------------------------------------------------------------------------------------
def test_zalo_template_message_with_tracking_id(notify) -> None:
    with ZaloServer(ZALO_TOKEN) as zalo:
        service, _clock, host = notify(
            zalo_api_url=zalo.url,
            zalo_access_token=ZALO_TOKEN,
            sms_provider_a_url="",
            sms_provider_b_url="",
        )
        d = dossier()
        deliver(host, submitted(d))
        service.dispatch()
        (sent,) = zalo.messages
        assert sent["phone"] == "84905123456"
        assert sent["template_id"] == "motcua-receipt-v1"
        assert sent["template_data"]["dossier_code"] == d.code
        assert sent["template_data"]["appointment_date"] == "07/12/2026"
        zalo_row = next(r for r in table(host, d.code) if r.channel == "zalo")
        assert sent["tracking_id"] == zalo_row.reference
        assert zalo_row.state == State.SENDING and zalo_row.provider_ref == "zalo-1"

        zalo.behave(error_code=-118)  # no Zalo account for the phone: permanent
        d2 = dossier()
        deliver(host, submitted(d2))
        service.dispatch()
        assert next(r for r in table(host, d2.code) if r.channel == "zalo").state == (
            State.PERMANENT_FAILURE
        )


# -- payment notices ------------------------------------------------------------------------------
def test_payment_required_carries_amount_and_link_and_payment_received_the_receipt(
    notify, stand_ins
) -> None:
    smtp, a, _b = stand_ins
    service, _clock, host = notify()
    d = dossier()
    deliver(host, submitted(d))
    link = "https://pay.example.vn/p/8f3a2c"
    deliver(host, payment_event(d, "vn.motcua.payment.requested.v1", link=link))
    deliver(
        host,
        payment_event(d, "vn.motcua.payment.succeeded.v1", receipt_number="PHOIAN-2026-000042"),
    )
    service.dispatch()
    mails = {m["Subject"]: m for m in smtp.to(EMAIL)}
    required = mails[f"Hồ sơ {d.code}: đề nghị nộp phí 1.250.000 đồng"]
    assert link in required.get_content()
    received = mails[f"Hồ sơ {d.code}: đã nhận thanh toán 1.250.000 đồng"]
    assert "PHOIAN-2026-000042" in received.get_content()
    texts = [m["text"] for m in a.messages]
    assert any("1.250.000 dong" in t and link in t for t in texts)
    assert any("So bien lai: PHOIAN-2026-000042" in t for t in texts)


def test_a_payment_event_without_a_payer_is_addressed_from_the_dossier(notify, stand_ins) -> None:
    smtp, _a, _b = stand_ins
    service, _clock, host = notify()
    d = dossier()
    deliver(host, submitted(d))
    deliver(
        host, payment_event(d, "vn.motcua.payment.requested.v1", link="https://p/x", payer=False)
    )
    service.dispatch()
    assert len(smtp.to(EMAIL)) == 2


# -- queries --------------------------------------------------------------------------------------
def test_list_and_get_respect_who_may_see(notify) -> None:
    service, _clock, host = notify()
    d = dossier()
    deliver(host, submitted(d))
    service.dispatch()
    citizen = Principal("c", frozenset({"citizen"}), citizen_id=CITIZEN_ID)
    stranger = Principal("s", frozenset({"citizen"}), citizen_id="001099000001")
    officer = Principal("o", frozenset({"officer"}), agency_code="PHOIAN")
    other_officer = Principal("o2", frozenset({"officer"}), agency_code="STP")

    mine, token = service.list_notifications(citizen, d.code, 0, "")
    assert len(mine) == 2 and token == ""
    assert len(service.list_notifications(officer, d.code, 0, "")[0]) == 2
    assert service.list_notifications(stranger, d.code, 0, "")[0] == []
    assert service.list_notifications(other_officer, d.code, 0, "")[0] == []
    with pytest.raises(NotFound):
        service.get_notification(stranger, mine[0].id)

    first, token = service.list_notifications(ADMIN, d.code, 1, "")
    second, last = service.list_notifications(ADMIN, d.code, 1, token)
    assert len(first) == len(second) == 1 and first[0].id != second[0].id and last == ""

    for kwargs, field in (
        ({"dossier_code": " "}, "dossier_code"),
        ({"page_size": 101}, "page_size"),
        ({"page_token": "x"}, "page_token"),
    ):
        args = {"dossier_code": d.code, "page_size": 0, "page_token": "", **kwargs}
        with pytest.raises(InvalidArgument) as info:
            service.list_notifications(ADMIN, **args)
        assert info.value.field == field


def test_history_records_each_step(notify) -> None:
    service, _clock, host = notify()
    d = dossier(phone="")
    deliver(host, submitted(d))
    service.dispatch()
    (row,) = table(host, d.code)
    _, history = service.get_notification(ADMIN, row.id)
    assert [h.state for h in history] == [State.CREATED, State.SENDING, State.DELIVERED]
    with host.sessions() as session:
        count = session.execute(
            select(notification_history).where(notification_history.c.notification_id == row.id)
        ).all()
    assert len(count) == 3
