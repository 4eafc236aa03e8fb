"""From an occurrence to intents: channels, recipients, opt-outs, webhooks, ids."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from motcua_notify import events
from motcua_notify.domain.notification import (
    Contact,
    addresses_citizen,
    mask_recipient,
    normalise_phone,
    notification_id,
    plan,
)
from motcua_notify.domain.occurrence import PROVIDED_VARIABLES, DossierSnapshot
from motcua_notify.domain.signing import sign, verify
from motcua_notify.domain.sms import Encoding
from motcua_notify.domain.states import Channel, State
from motcua_notify.domain.subscriptions import (
    SubscriptionError,
    WebhookSubscription,
    parse_subscriptions,
)
from motcua_notify.domain.templates import TemplateCatalogue

CATALOGUE = TemplateCatalogue.load(segment_limit=2, provided=PROVIDED_VARIABLES)
ALL = frozenset(Channel)
SNAPSHOT = DossierSnapshot(
    dossier_code="PHOIAN-261129-0001",
    agency_code="PHOIAN",
    procedure_code="HT-001",
    status=1,
    appointment_date="2026-12-07",
    submitted_date="2026-11-29",
    contact=Contact("079203004567", "Nguyễn Thị Thu Hà", "0905123456", "ThuHa@Example.vn"),
)
SUB = WebhookSubscription("portal", "PHOIAN", "https://portal.example/hook", "s" * 32)


def submitted(event_id: str = "e-1", snapshot: DossierSnapshot = SNAPSHOT):
    return snapshot.occurrence(
        event_id, events.DOSSIER_SUBMITTED, datetime(2026, 11, 29, 3, tzinfo=UTC), {}
    )


def test_submitted_dossier_plans_email_sms_zalo_and_webhook() -> None:
    result = plan(
        submitted(),
        CATALOGUE,
        enabled=ALL,
        opted_out=[],
        subscriptions=[SUB],
        sms_encoding=Encoding.GSM7,
    )
    by_channel = {i.channel: i for i in result.intents}
    assert set(by_channel) == set(Channel)
    assert by_channel[Channel.EMAIL].recipient == "thuha@example.vn"
    assert by_channel[Channel.SMS].recipient == "0905123456"
    assert "PHOIAN-261129-0001" in by_channel[Channel.SMS].body
    assert "07/12/2026" in by_channel[Channel.SMS].body
    assert by_channel[Channel.SMS].sms_segments == 1
    assert all(ord(c) < 128 for c in by_channel[Channel.SMS].body)
    assert "07/12/2026" in by_channel[Channel.EMAIL].subject
    assert by_channel[Channel.ZALO].payload["template_id"] == "motcua-receipt-v1"
    assert all(i.state is State.CREATED for i in result.intents)


def test_ids_are_the_same_for_the_same_event_channel_and_recipient() -> None:
    a = plan(
        submitted("e-1"),
        CATALOGUE,
        enabled=ALL,
        opted_out=[],
        subscriptions=[SUB],
        sms_encoding=Encoding.GSM7,
    )
    b = plan(
        submitted("e-1"),
        CATALOGUE,
        enabled=ALL,
        opted_out=[],
        subscriptions=[SUB],
        sms_encoding=Encoding.GSM7,
    )
    c = plan(
        submitted("e-2"),
        CATALOGUE,
        enabled=ALL,
        opted_out=[],
        subscriptions=[SUB],
        sms_encoding=Encoding.GSM7,
    )
    assert [i.id for i in a.intents] == [i.id for i in b.intents]
    assert not {i.id for i in a.intents} & {i.id for i in c.intents}
    assert a.intents[0].id == notification_id("e-1", Channel.EMAIL, "thuha@example.vn")


def test_opted_out_of_sms_gets_email_only() -> None:
    result = plan(
        submitted(),
        CATALOGUE,
        enabled={Channel.EMAIL, Channel.SMS},
        opted_out=[Channel.SMS],
        subscriptions=[],
        sms_encoding=Encoding.GSM7,
    )
    assert [i.channel for i in result.intents] == [Channel.EMAIL]
    assert result.opted_out == [Channel.SMS]


def test_unconfigured_channels_and_missing_addresses_are_skipped() -> None:
    no_email = SNAPSHOT.__class__(
        **{**SNAPSHOT.__dict__, "contact": Contact("1", "A", "0905123456", "")}
    )
    result = plan(
        submitted(snapshot=no_email),
        CATALOGUE,
        enabled={Channel.EMAIL, Channel.SMS},
        opted_out=[],
        subscriptions=[SUB],
        sms_encoding=Encoding.GSM7,
    )
    assert [i.channel for i in result.intents] == [Channel.SMS]
    assert result.no_address == [Channel.EMAIL]


def test_events_without_a_template_reach_webhooks_only() -> None:
    occurrence = SNAPSHOT.occurrence(
        "e-9", events.DOSSIER_PAYMENT_REQUESTED, datetime(2026, 11, 29, tzinfo=UTC), {"comment": ""}
    )
    result = plan(
        occurrence,
        CATALOGUE,
        enabled=ALL,
        opted_out=[],
        subscriptions=[SUB],
        sms_encoding=Encoding.GSM7,
    )
    assert [i.channel for i in result.intents] == [Channel.WEBHOOK]


def test_opt_outs_are_looked_up_only_for_a_notice_to_the_citizen_on_an_enabled_channel() -> None:
    payment_requested = SNAPSHOT.occurrence(
        "e-9", events.DOSSIER_PAYMENT_REQUESTED, datetime(2026, 11, 29, tzinfo=UTC), {}
    )
    assert addresses_citizen(submitted(), CATALOGUE, ALL)
    assert addresses_citizen(submitted(), CATALOGUE, {Channel.SMS})
    assert not addresses_citizen(submitted(), CATALOGUE, {Channel.WEBHOOK})
    assert not addresses_citizen(payment_requested, CATALOGUE, ALL)  # webhooks only


def test_webhook_body_is_signed_json_without_personal_data() -> None:
    result = plan(
        submitted(),
        CATALOGUE,
        enabled={Channel.WEBHOOK},
        opted_out=[],
        subscriptions=[SUB],
        sms_encoding=Encoding.GSM7,
    )
    (hook,) = result.intents
    doc = json.loads(hook.body)
    assert doc["dossier_code"] == "PHOIAN-261129-0001"
    assert doc["event_type"] == events.DOSSIER_SUBMITTED
    assert doc["data"]["appointment_date"] == "07/12/2026"
    for secret in ("0905123456", "079203004567", "Nguyễn", "thuha"):
        assert secret not in hook.body
    signature = sign(SUB.secret, hook.body.encode())
    assert verify(SUB.secret, hook.body.encode(), signature)
    assert not verify(SUB.secret, hook.body.replace("0001", "0002").encode(), signature)
    assert not verify("another-secret-of-length", hook.body.encode(), signature)


def test_subscriptions_match_agency_and_event_types() -> None:
    narrow = WebhookSubscription(
        "x", "PHOIAN", "http://h/x", "s" * 16, frozenset({events.DOSSIER_SUBMITTED})
    )
    everyone = WebhookSubscription("y", "*", "http://h/y", "s" * 16)
    assert narrow.matches("PHOIAN", events.DOSSIER_SUBMITTED)
    assert not narrow.matches("PHOIAN", events.DOSSIER_REJECTED)
    assert not narrow.matches("STP", events.DOSSIER_SUBMITTED)
    assert everyone.matches("STP", events.DOSSIER_REJECTED)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"id": "A!", "agency": "*", "url": "http://h", "secret": "s" * 16}, "id must be"),
        ({"id": "a", "agency": "*", "url": "ftp://h", "secret": "s" * 16}, "url must be"),
        ({"id": "a", "agency": "*", "url": "http://h", "secret": "short"}, "secret of at least"),
        ({"id": "a", "agency": "*", "url": "http://h", "secret_env": "NOPE"}, "NOPE is not set"),
        ({"id": "a", "url": "http://h", "secret": "s" * 16}, "agency is required"),
    ],
)
def test_invalid_subscriptions_are_refused_naming_them(item, message: str) -> None:
    with pytest.raises(SubscriptionError, match=message):
        parse_subscriptions([item], {})


def test_secrets_can_come_from_the_environment() -> None:
    (sub,) = parse_subscriptions(
        [{"id": "a", "agency": "*", "url": "https://h", "secret_env": "HOOK_SECRET"}],
        {"HOOK_SECRET": "x" * 20},
    )
    assert sub.secret == "x" * 20
    assert "x" * 20 not in repr(sub)


@pytest.mark.parametrize(
    ("channel", "address", "masked"),
    [
        (Channel.SMS, "0905123456", "*******456"),
        (Channel.ZALO, "0905123456", "*******456"),
        (Channel.EMAIL, "thuha@example.vn", "t***@example.vn"),
        (Channel.WEBHOOK, "portal", "portal"),
    ],
)
def test_recipients_are_masked(channel: Channel, address: str, masked: str) -> None:
    assert mask_recipient(channel, address) == masked


@pytest.mark.parametrize(
    ("raw", "phone"),
    [("0905123456", "0905123456"), ("+84 905 123 456", "0905123456"), ("123", "")],
)
def test_phone_numbers_are_normalised(raw: str, phone: str) -> None:
    assert normalise_phone(raw) == phone


def test_the_example_subscriptions_file_is_valid() -> None:
    from motcua_notify.domain.subscriptions import load_subscriptions
    from motcua_notify.domain.templates import DEFAULT_FILE

    example = DEFAULT_FILE.parent / "webhooks.example.yaml"
    environ = {
        "MOTCUA_NOTIFY_WEBHOOK_SECRET_HOIAN_PORTAL": "p" * 32,
        "MOTCUA_NOTIFY_WEBHOOK_SECRET_STATS": "s" * 32,
    }
    subs = load_subscriptions(example, environ, known_types=PROVIDED_VARIABLES)
    assert [s.id for s in subs] == ["hoian-portal", "statistics-warehouse"]
    with pytest.raises(SubscriptionError, match="'statistics-warehouse': notify does not consume"):
        load_subscriptions(example, environ, known_types=["vn.motcua.dossier.submitted.v1"])
