"""Notifications (thông báo): what happened, whom to tell, and what each send attempt decides.

An :class:`Occurrence` is a consumed event in notify's words (dossier code, the applicant's
contact, template values). :func:`plan` turns it into :class:`Intent` s — one per channel and
recipient — each with a deterministic id derived from (event id, channel, recipient), which is
also what the database's unique key holds: however often the event arrives, one message.
:func:`after_send` and :func:`after_receipt` are the retry rules: given a notification and
what the provider answered, they say the next state, when to try again and what to publish.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from jinja2 import TemplateError

from motcua_notify.domain.retry import RetryPolicy
from motcua_notify.domain.sms import Encoding
from motcua_notify.domain.states import Channel, Move, Published, State, next_state, published
from motcua_notify.domain.subscriptions import WebhookSubscription
from motcua_notify.domain.templates import Template, TemplateCatalogue

_NAMESPACE = uuid.UUID("5f0d3c52-3b0e-4f43-9a57-6d6f74637561")
_DIGITS = re.compile(r"[^0-9]")  # not \D: other scripts' digits are no phone number


# -- who ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Contact:
    """The applicant as notify needs them (from the dossier events)."""

    citizen_id: str
    full_name: str
    phone: str
    email: str

    def address(self, channel: Channel) -> str:
        """The normalised address on a channel, empty when the applicant gave none."""
        if channel in (Channel.SMS, Channel.ZALO):
            return normalise_phone(self.phone)
        if channel is Channel.EMAIL:
            return self.email.strip().lower()
        return ""


def normalise_phone(phone: str) -> str:
    """National form 0XXXXXXXXX (accepts +84 / 84); empty if it is not a phone number."""
    digits = _DIGITS.sub("", phone)
    if digits.startswith("84") and len(digits) == 11:
        digits = "0" + digits[2:]
    return digits if len(digits) == 10 and digits.startswith("0") else ""


def mask_recipient(channel: Channel, address: str) -> str:
    """What events and the API show of an address: ``*******456``, ``t***@example.vn``."""
    if channel in (Channel.SMS, Channel.ZALO):
        digits = _DIGITS.sub("", address)
        return "*" * max(len(digits) - 3, 0) + digits[-3:]
    if channel is Channel.EMAIL:
        local, _, domain = address.partition("@")
        return f"{local[:1]}***@{domain}" if domain else "***"
    return address  # a webhook subscription id is not personal data


# -- what happened ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Occurrence:
    """One consumed event, in notify's words."""

    event_id: str
    event_type: str
    dossier_code: str
    agency_code: str
    occurred_at: datetime
    contact: Contact | None
    values: Mapping[str, str]  # template variables, already formatted (dates dd/mm/yyyy, …)
    # A signed document the email carries (domain.documents.DocumentRef.payload): the email
    # intent keeps it, and the email channel fetches and checks the bytes when sending.
    attachment: Mapping[str, object] | None = None

    # Values a webhook may carry: none of them personal data.
    WEBHOOK_FIELDS = (
        "procedure_code",
        "status",
        "appointment_date",
        "new_appointment_date",
        "due_date",
        "comment",
        "amount",
        "payment_link",
        "receipt_number",
    )


def format_date(iso: str) -> str:
    """``2026-12-07`` → ``07/12/2026`` (how Vietnamese notices write dates)."""
    parts = iso.strip().split("-")
    if len(parts) != 3:
        return iso.strip()
    return f"{parts[2]}/{parts[1]}/{parts[0]}"


def format_vnd(amount: int) -> str:
    """``1250000`` → ``1.250.000`` (dot as the thousands separator)."""
    return f"{amount:,}".replace(",", ".")


# -- intents ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Intent:
    """A message to record (state created) before anything is sent."""

    id: str
    event_id: str
    event_type: str
    dossier_code: str
    agency_code: str
    citizen_id: str
    template: str
    channel: Channel
    recipient: str
    subject: str
    body: str
    payload: dict[str, object]
    sms_segments: int | None
    state: State = State.CREATED
    detail: str = ""


def notification_id(event_id: str, channel: Channel, recipient: str) -> str:
    """The same (event, channel, recipient) always gets the same id."""
    return str(uuid.uuid5(_NAMESPACE, f"{event_id}\x1f{channel.value}\x1f{recipient}"))


@dataclass(frozen=True)
class Plan:
    intents: list[Intent]
    opted_out: list[Channel] = field(default_factory=list)
    no_address: list[Channel] = field(default_factory=list)


def addresses_citizen(
    occurrence: Occurrence, catalogue: TemplateCatalogue, enabled: Iterable[Channel]
) -> bool:
    """Whether :func:`plan` would address the citizen on some enabled channel (so their
    opt-outs matter); False for an event with no notice, or only for channels not enabled."""
    template = catalogue.for_event(occurrence.event_type)
    if template is None or occurrence.contact is None:
        return False
    enabled_set = set(enabled)
    return any(channel in enabled_set for channel in template.channels)


def plan(
    occurrence: Occurrence,
    catalogue: TemplateCatalogue,
    *,
    enabled: Iterable[Channel],
    opted_out: Iterable[Channel],
    subscriptions: Iterable[WebhookSubscription],
    sms_encoding: Encoding,
) -> Plan:
    """Who is told what on which channel about ``occurrence``."""
    enabled_set, opted = set(enabled), set(opted_out)
    intents: list[Intent] = []
    skipped_opt: list[Channel] = []
    skipped_addr: list[Channel] = []
    template = catalogue.for_event(occurrence.event_type)
    contact = occurrence.contact
    if template is not None and contact is not None:
        for channel in template.channels:
            if channel not in enabled_set:
                continue
            if channel in opted:
                skipped_opt.append(channel)
                continue
            address = contact.address(channel)
            if not address:
                skipped_addr.append(channel)
                continue
            intents.append(
                _citizen_intent(occurrence, catalogue, template, channel, address, sms_encoding)
            )
    if Channel.WEBHOOK in enabled_set:
        for sub in subscriptions:
            if sub.matches(occurrence.agency_code, occurrence.event_type):
                intents.append(_webhook_intent(occurrence, sub))
    return Plan(intents, skipped_opt, skipped_addr)


def _citizen_intent(
    occurrence: Occurrence,
    catalogue: TemplateCatalogue,
    template: Template,
    channel: Channel,
    address: str,
    sms_encoding: Encoding,
) -> Intent:
    values = dict(occurrence.values)
    subject, body, segments = "", "", None
    payload: dict[str, object] = {}
    state, detail = State.CREATED, ""
    try:
        if channel is Channel.EMAIL:
            email = catalogue.render_email(template, values)
            subject, body = email.subject, email.body
            if occurrence.attachment is not None:
                payload = {"document": dict(occurrence.attachment)}
        elif channel is Channel.SMS:
            sms = catalogue.render_sms(template, values)
            body, segments = sms.text(sms_encoding), sms.segments(sms_encoding)
            payload = {"encoding": sms_encoding.value}
        else:
            zalo = catalogue.render_zalo(template, values)
            body = zalo.body
            payload = {"template_id": zalo.template_id, "params": zalo.params}
    except TemplateError as exc:  # a value the template cannot take: motcua's fault
        state = State.TECHNICAL_FAILURE
        detail = f"template {template.name}.{channel.value} failed to render: {exc}"
    return Intent(
        id=notification_id(occurrence.event_id, channel, address),
        event_id=occurrence.event_id,
        event_type=occurrence.event_type,
        dossier_code=occurrence.dossier_code,
        agency_code=occurrence.agency_code,
        citizen_id=occurrence.contact.citizen_id if occurrence.contact else "",
        template=template.name,
        channel=channel,
        recipient=address,
        subject=subject,
        body=body,
        payload=payload,
        sms_segments=segments,
        state=state,
        detail=detail,
    )


def _webhook_intent(occurrence: Occurrence, sub: WebhookSubscription) -> Intent:
    nid = notification_id(occurrence.event_id, Channel.WEBHOOK, sub.id)
    data = {k: occurrence.values[k] for k in Occurrence.WEBHOOK_FIELDS if occurrence.values.get(k)}
    document = {
        "notification_id": nid,
        "subscription_id": sub.id,
        "event_id": occurrence.event_id,
        "event_type": occurrence.event_type,
        "dossier_code": occurrence.dossier_code,
        "agency_code": occurrence.agency_code,
        "occurred_at": occurrence.occurred_at.isoformat(),
        "data": data,
    }
    body = json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return Intent(
        id=nid,
        event_id=occurrence.event_id,
        event_type=occurrence.event_type,
        dossier_code=occurrence.dossier_code,
        agency_code=occurrence.agency_code,
        citizen_id="",
        template="webhook",
        channel=Channel.WEBHOOK,
        recipient=sub.id,
        subject="",
        body=body,
        payload={},
        sms_segments=None,
    )


# -- a stored notification and the outcome of sending it ------------------------------------------
@dataclass(frozen=True)
class Notification:
    """A notification as stored."""

    id: str
    event_id: str
    event_type: str
    dossier_code: str
    agency_code: str
    citizen_id: str
    template: str
    channel: Channel
    recipient: str
    subject: str
    body: str
    payload: dict[str, object]
    sms_segments: int | None
    state: State
    attempts: int
    reference: str
    provider: str
    provider_ref: str
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime | None
    detail: str = ""
    # W3C trace context of the event that caused it: the send and the notify events
    # continue that trace.
    trace_headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def masked_recipient(self) -> str:
        return mask_recipient(self.channel, self.recipient)

    def attempt_reference(self, attempt: int) -> str:
        """The idempotency reference of one attempt: a resend after a crash reuses it."""
        return f"{self.id}.{attempt}"


@dataclass(frozen=True)
class HistoryEntry:
    state: State
    at: datetime
    attempt: int
    provider: str
    detail: str


class Verdict(StrEnum):
    """What a channel says of one send."""

    ACCEPTED = "accepted"  # taken by the provider; a delivery receipt will tell the rest
    DELIVERED = "delivered"  # delivered as far as motcua can know (SMTP relay, webhook 2xx)
    TEMPORARY = "temporary"  # try again later (5xx, timeout, throttled, phone off)
    PERMANENT = "permanent"  # retrying cannot help (invalid number, address rejected)
    TECHNICAL = "technical"  # motcua's fault (misconfiguration, unrenderable)


@dataclass(frozen=True)
class SendResult:
    verdict: Verdict
    provider: str = ""
    provider_ref: str = ""
    detail: str = ""


@dataclass(frozen=True)
class Change:
    """What to write after a send or a receipt."""

    moves: tuple[Move, ...]
    state: State
    detail: str
    next_attempt_at: datetime | None = None
    publish: tuple[Published, ...] = ()
    retry_delay: float | None = None  # set when a retry was scheduled
    gave_up: bool = False


def _walk(state: State, moves: tuple[Move, ...]) -> tuple[State, tuple[Published, ...]]:
    """Where ``moves`` lead from ``state``, and what they publish on the way (the table's)."""
    said: tuple[Published, ...] = ()
    for move in moves:
        said += published(state, move)
        state = next_state(state, move)
    return state, said


def _change(
    state: State,
    moves: tuple[Move, ...],
    detail: str,
    *,
    unsent: tuple[Published, ...] = (),
    next_attempt_at: datetime | None = None,
    retry_delay: float | None = None,
    gave_up: bool = False,
) -> Change:
    """The change ``moves`` make from ``state``: publishing ``unsent`` (events still owed),
    then what the table's rows for the moves publish."""
    target, said = _walk(state, moves)
    return Change(
        moves,
        target,
        detail,
        next_attempt_at=next_attempt_at,
        publish=(*unsent, *said),
        retry_delay=retry_delay,
        gave_up=gave_up,
    )


def after_send(
    notification: Notification,
    result: SendResult,
    policy: RetryPolicy,
    now: datetime,
    rng: random.Random,
) -> Change:
    """The change an attempt's result makes to a notification in ``sending``."""
    state = notification.state
    if result.verdict is Verdict.ACCEPTED:
        return _change(state, (Move.ACCEPT,), result.detail)
    if result.verdict is Verdict.DELIVERED:
        return _change(state, (Move.ACCEPT, Move.DELIVER), result.detail)
    if result.verdict is Verdict.TEMPORARY:
        return _temporary(notification, result.detail, policy, now, rng)
    if result.verdict is Verdict.PERMANENT:
        return _change(state, (Move.FAIL_PERMANENTLY,), result.detail)
    return _change(state, (Move.FAIL_TECHNICALLY,), result.detail)


def _temporary(
    notification: Notification,
    detail: str,
    policy: RetryPolicy,
    now: datetime,
    rng: random.Random,
) -> Change:
    if policy.exhausted(notification.attempts):
        return _change(
            notification.state,
            (Move.FAIL_PERMANENTLY,),
            f"gave up after {notification.attempts} attempts; last: {detail}",
            gave_up=True,
        )
    delay = policy.delay(notification.attempts, rng)
    return _change(
        notification.state,
        (Move.FAIL_TEMPORARILY,),
        f"{detail}; retry {notification.attempts + 1} in {delay:.1f}s",
        next_attempt_at=now + timedelta(seconds=delay),
        retry_delay=delay,
    )


def after_receipt_timeout(notification: Notification, hours: float) -> Change | None:
    """The change when a provider took a message and never sent its delivery receipt.

    Given up as failed, not resent: the message may well have arrived, and a second copy is
    worse than an honest "not confirmed". None when there is nothing to time out.
    """
    if notification.state is not State.SENDING or not notification.provider_ref:
        return None
    detail = f"no delivery receipt from {notification.provider} within {hours:g} h"
    return _change(notification.state, (Move.FAIL_PERMANENTLY,), detail)


class ReceiptStatus(StrEnum):
    """What a provider's delivery receipt reports, in motcua's words."""

    DELIVERED = "delivered"
    TEMPORARY_FAILURE = "temporary-failure"
    PERMANENT_FAILURE = "permanent-failure"


# Provider vocabularies (SMPP delivery-receipt stat values, common HTTP API words) → ours.
RECEIPT_WORDS: dict[str, ReceiptStatus] = {
    "delivered": ReceiptStatus.DELIVERED,
    "delivrd": ReceiptStatus.DELIVERED,
    "success": ReceiptStatus.DELIVERED,
    "temporary-failure": ReceiptStatus.TEMPORARY_FAILURE,
    "temporary_failure": ReceiptStatus.TEMPORARY_FAILURE,
    "expired": ReceiptStatus.TEMPORARY_FAILURE,
    "unknown": ReceiptStatus.TEMPORARY_FAILURE,
    "permanent-failure": ReceiptStatus.PERMANENT_FAILURE,
    "permanent_failure": ReceiptStatus.PERMANENT_FAILURE,
    "undeliv": ReceiptStatus.PERMANENT_FAILURE,
    "undelivered": ReceiptStatus.PERMANENT_FAILURE,
    "rejectd": ReceiptStatus.PERMANENT_FAILURE,
    "rejected": ReceiptStatus.PERMANENT_FAILURE,
    "failed": ReceiptStatus.PERMANENT_FAILURE,
}


def after_receipt(
    notification: Notification,
    status: ReceiptStatus,
    detail: str,
    policy: RetryPolicy,
    now: datetime,
    rng: random.Random,
) -> Change | None:
    """The change a delivery receipt makes; None when it changes nothing (late or repeated)."""
    state = notification.state
    # A receipt can overtake the provider's own answer to the send request: then nothing has
    # said "sent" yet, so the receipt says it too.
    unsent: tuple[Published, ...] = (
        (Published.SENT,) if state is State.SENDING and not notification.provider_ref else ()
    )
    if status is ReceiptStatus.DELIVERED:
        if state in (State.SENDING, State.TEMPORARY_FAILURE):
            return _change(state, (Move.DELIVER,), detail, unsent=unsent)
        return None
    if status is ReceiptStatus.PERMANENT_FAILURE:
        if state in (State.SENDING, State.TEMPORARY_FAILURE):
            return _change(state, (Move.FAIL_PERMANENTLY,), detail, unsent=unsent)
        return None
    if state is State.SENDING:
        return _temporary(notification, detail, policy, now, rng)
    return None


def receipt_change(
    notification: Notification,
    *,
    provider: str,
    reference: str,
    status: ReceiptStatus,
    detail: str,
    policy: RetryPolicy,
    now: datetime,
    rng: random.Random,
) -> Change | None:
    """The change a receipt from ``provider`` about attempt ``reference`` makes; None when it
    changes nothing. A receipt from another provider than the one the message went to says
    nothing about it; one about an earlier attempt counts only when it says delivered (the
    message arrived after all), never to fail or retry the attempt now under way.
    """
    other_provider = notification.provider and notification.provider != provider
    stale = bool(reference) and reference != notification.reference
    if other_provider or (stale and status.value != State.DELIVERED.value):
        return None
    return after_receipt(notification, status, detail, policy, now, rng)
