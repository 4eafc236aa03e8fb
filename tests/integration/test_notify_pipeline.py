"""Notify as a process against the real broker: dossier events in, messages out.

Runs once on SQLite and once on PostgreSQL. Each test's notify joins a fresh consumer group
positioned at the end of the dossier topic, so other tests' events (which stay on the shared
broker) are not re-notified.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from dossier_client import DossierClient, submit_request
from harness import Kafka, ServiceProcess, header, read_topic, wait_for
from motcua.notify.v1 import events_pb2, notify_pb2
from notify_providers import (
    CITIZEN_ID,
    NotifyClient,
    dossier,
    fresh_group,
    metric,
    notify_env,
    notify_records,
    payment_event,
    produce,
    providers,
    rows,
    submitted,
)

pytestmark = pytest.mark.integration


def _international(phone: str) -> str:
    return "84" + phone[1:]


def _dmy(iso: str) -> str:
    y, m, d = iso.split("-")
    return f"{d}/{m}/{y}"


def test_a_dossier_submitted_end_to_end_gets_one_email_and_one_sms(
    kafka: Kafka,
    database: Callable[[str], str],
    service_factory: Callable[..., ServiceProcess],
    token: Callable[..., str],
) -> None:
    started_ms = int(time.time() * 1000)
    with providers() as (smtp, sms_a, sms_b):
        notify_url = database("notify")
        env = notify_env(smtp, sms_a, sms_b, CONSUMER_GROUP=fresh_group(kafka.bootstrap))
        notify = service_factory("notify", notify_url, **env).start()
        dossier_svc = service_factory("dossier", database("dossier")).start()
        citizen = token("citizen", citizen_id=CITIZEN_ID)
        email = f"thuha.{uuid.uuid4().hex[:8]}@example.vn"
        client = DossierClient(dossier_svc.target, citizen)
        filed = client.submit(submit_request("HT-001", f"k-{uuid.uuid4()}", email=email)).dossier
        code, date = filed.code, _dmy(filed.appointment_date)
        phone = _international(filed.applicant.phone)

        wait_for(lambda: smtp.to(email) and sms_a.messages_to(phone), 60, 0.1, "email and SMS")
        # The notify events are published after the sends: once they are all there, nothing
        # more is coming from this event.
        wait_for(
            lambda: len(notify_records(kafka.bootstrap, code, started_ms)) == 3, 60, 0.3, "events"
        )

        (mail,) = smtp.to(email)
        assert code in mail["Subject"] and date in mail["Subject"]
        assert code in mail.get_content() and date in mail.get_content()
        (sms,) = sms_a.messages_to(phone)
        assert code in sms["text"] and date in sms["text"]
        assert sms["text"].isascii()  # sent without diacritics
        assert sms_b.messages == []
        assert sorted((r.channel, r.state) for r in rows(notify_url, code)) == [
            ("email", "delivered"),
            ("sms", "sending"),  # accepted by provider A; its receipt will say delivered
        ]

        # The provider's delivery receipt completes the SMS.
        receipts = f"http://127.0.0.1:{env['RECEIPTS_PORT']}"
        assert sms_a.send_receipt(receipts, sms, "DELIVRD").status_code == 200
        wait_for(
            lambda: len(notify_records(kafka.bootstrap, code, started_ms)) == 4,
            30,
            0.3,
            "delivered",
        )
        records = notify_records(kafka.bootstrap, code, started_ms)
        kinds = sorted(header(r, "ce_type").decode().split(".")[-2] for r in records)
        assert kinds == ["delivered", "delivered", "sent", "sent"]
        for record in records:
            assert header(record, "ce_source") == b"/motcua/notify"
            assert header(record, "ce_subject") == code.encode()
            # Masked recipients only: the audit log must not get the addresses.
            assert filed.applicant.phone.encode() not in record.value
            assert email.encode() not in record.value
        # One trace: the notify events continue the dossier event's trace.
        (cause,) = [
            r
            for r in read_topic(kafka.bootstrap, "motcua.dossier.v1")
            if r.key == code.encode() and r.timestamp >= started_ms
        ]
        trace_id = header(cause, "traceparent").split(b"-")[1]
        assert [header(r, "traceparent").split(b"-")[1] for r in records] == [trace_id] * 4
        delivered = [
            events_pb2.NotificationDelivered.FromString(r.value)
            for r in records
            if header(r, "ce_type") == b"vn.motcua.notify.delivered.v1"
        ]
        assert {d.notification.recipient for d in delivered} == {
            "*******" + filed.applicant.phone[-3:],
            email[0] + "***@example.vn",
        }

        # The citizen reads their dossier's notifications and one's history over gRPC.
        api = NotifyClient(notify.target, citizen)
        listed = api.list(code).notifications
        assert {(n.channel, n.status) for n in listed} == {
            (notify_pb2.CHANNEL_EMAIL, notify_pb2.DELIVERY_STATUS_DELIVERED),
            (notify_pb2.CHANNEL_SMS, notify_pb2.DELIVERY_STATUS_DELIVERED),
        }
        sms_note = next(n for n in listed if n.channel == notify_pb2.CHANNEL_SMS)
        assert sms_note.provider == "sms-a" and sms_note.sms_segments == 1
        history = api.get(sms_note.id).history
        assert [h.status for h in history] == [
            notify_pb2.DELIVERY_STATUS_CREATED,
            notify_pb2.DELIVERY_STATUS_SENDING,
            notify_pb2.DELIVERY_STATUS_SENDING,
            notify_pb2.DELIVERY_STATUS_DELIVERED,
        ]
        stranger = NotifyClient(notify.target, token("citizen", citizen_id="001099000001"))
        assert list(stranger.list(code).notifications) == []
        with pytest.raises(grpc.RpcError) as info:
            stranger.get(sms_note.id)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert (
            metric(
                notify.metrics_port,
                "motcua_notify_messages_total",
                channel="email",
                outcome="delivered",
            )
            == 1
        )
        api.close()
        stranger.close()
        client.close()
        assert notify.terminate() == 0
        dossier_svc.terminate()


def test_the_same_event_delivered_five_times_sends_one_message_per_channel(
    kafka: Kafka,
    database: Callable[[str], str],
    service_factory: Callable[..., ServiceProcess],
) -> None:
    with providers() as (smtp, sms_a, sms_b):
        notify_url = database("notify")
        group = fresh_group(kafka.bootstrap)
        d = dossier(email_address=f"five.{uuid.uuid4().hex[:8]}@example.vn")
        produce(kafka.bootstrap, submitted(d), times=5)  # one record, five copies, one ce_id
        marker = dossier()
        produce(kafka.bootstrap, submitted(marker))
        notify = service_factory(
            "notify", notify_url, **notify_env(smtp, sms_a, sms_b, CONSUMER_GROUP=group)
        ).start()
        # The marker came after all five copies: once it is recorded, they were all consumed.
        wait_for(lambda: len(rows(notify_url, marker.code)) == 2, 60, 0.2, "marker recorded")
        wait_for(
            lambda: (
                {r.state for r in rows(notify_url, d.code)} <= {"delivered", "sending"}
                and len(notify_records(kafka.bootstrap, d.code)) == 3
            ),
            60,
            0.3,
            "sent",
        )
        assert len(smtp.to(d.applicant.email)) == 1
        assert len(sms_a.messages_to("84905123456")) == 2  # the dossier's and the marker's
        assert sorted(r.channel for r in rows(notify_url, d.code)) == ["email", "sms"]
        assert (
            metric(
                notify.metrics_port,
                "motcua_events_consumed_total",
                service="notify",
                topic="motcua.dossier.v1",
                outcome="duplicate",
            )
            == 4
        )
        assert notify.terminate() == 0


def test_a_citizen_opted_out_of_sms_over_grpc_gets_email_only(
    kafka: Kafka,
    tmp_path,
    service_factory: Callable[..., ServiceProcess],
    token: Callable[..., str],
) -> None:
    with providers() as (smtp, sms_a, sms_b):
        url = f"sqlite:///{tmp_path}/notify.db"
        env = notify_env(smtp, sms_a, sms_b, CONSUMER_GROUP=fresh_group(kafka.bootstrap))
        notify = service_factory("notify", url, **env).start()
        citizen_id = "001203009876"
        api = NotifyClient(notify.target, token("citizen", citizen_id=citizen_id))
        got = api.set_opt_out(citizen_id, notify_pb2.CHANNEL_SMS).opt_outs
        assert [o.channel for o in got] == [notify_pb2.CHANNEL_SMS]
        with pytest.raises(grpc.RpcError) as info:
            api.set_opt_out("12345", notify_pb2.CHANNEL_SMS)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        status = rpc_status.from_call(info.value)
        assert status is not None
        detail = error_details_pb2.BadRequest()
        status.details[0].Unpack(detail)
        assert detail.field_violations[0].field == "citizen_id"
        with pytest.raises(grpc.RpcError) as info:
            api.set_opt_out(CITIZEN_ID, notify_pb2.CHANNEL_SMS)  # someone else's
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED

        d = dossier(citizen_id=citizen_id, email_address=f"opt.{uuid.uuid4().hex[:6]}@example.vn")
        produce(kafka.bootstrap, submitted(d))
        wait_for(lambda: smtp.to(d.applicant.email), 60, 0.1, "the email")
        wait_for(lambda: len(notify_records(kafka.bootstrap, d.code)) == 2, 30, 0.2, "events")
        assert [r.channel for r in rows(url, d.code)] == ["email"]
        assert sms_a.messages == [] and sms_b.messages == []
        assert (
            metric(
                notify.metrics_port,
                "motcua_notify_messages_total",
                channel="sms",
                outcome="opted_out",
            )
            == 1
        )
        api.close()
        assert notify.terminate() == 0


def test_payment_events_from_the_payment_topic_are_notified(
    kafka: Kafka,
    tmp_path,
    service_factory: Callable[..., ServiceProcess],
) -> None:
    with providers() as (smtp, sms_a, sms_b):
        url = f"sqlite:///{tmp_path}/notify.db"
        env = notify_env(smtp, sms_a, sms_b, CONSUMER_GROUP=fresh_group(kafka.bootstrap))
        notify = service_factory("notify", url, **env).start()
        d = dossier(email_address=f"pay.{uuid.uuid4().hex[:6]}@example.vn")
        produce(kafka.bootstrap, submitted(d))
        link = "https://pay.example.vn/p/" + uuid.uuid4().hex[:10]
        produce(
            kafka.bootstrap,
            payment_event(d, "vn.motcua.payment.requested.v1", link=link),
            topic="motcua.payment.v1",
        )
        wait_for(lambda: len(smtp.to(d.applicant.email)) == 2, 60, 0.1, "receipt and fee notice")
        fee = next(m for m in smtp.to(d.applicant.email) if "nộp phí" in m["Subject"])
        assert "1.250.000 đồng" in fee["Subject"] and link in fee.get_content()
        wait_for(lambda: any(link in m["text"] for m in sms_a.messages), 30, 0.1, "fee SMS")
        assert notify.terminate() == 0
