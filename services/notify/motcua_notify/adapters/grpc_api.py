"""gRPC adapter: protobuf requests → service calls → protobuf responses. No rules live here."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import grpc

from motcua.notify.v1 import events_pb2, notify_pb2, notify_pb2_grpc
from motcua_kit.auth import current_principal
from motcua_kit.errors import InvalidArgument
from motcua_kit.proto import timestamp
from motcua_notify.domain.notification import HistoryEntry, Notification
from motcua_notify.domain.states import Channel, State

if TYPE_CHECKING:
    from motcua_notify.service import NotifyService

CHANNEL_TO_PROTO = {
    Channel.EMAIL: notify_pb2.CHANNEL_EMAIL,
    Channel.SMS: notify_pb2.CHANNEL_SMS,
    Channel.ZALO: notify_pb2.CHANNEL_ZALO,
    Channel.WEBHOOK: notify_pb2.CHANNEL_WEBHOOK,
}
CHANNEL_FROM_PROTO = {v: k for k, v in CHANNEL_TO_PROTO.items()}
STATE_TO_PROTO = {
    State.CREATED: notify_pb2.DELIVERY_STATUS_CREATED,
    State.SENDING: notify_pb2.DELIVERY_STATUS_SENDING,
    State.DELIVERED: notify_pb2.DELIVERY_STATUS_DELIVERED,
    State.TEMPORARY_FAILURE: notify_pb2.DELIVERY_STATUS_TEMPORARY_FAILURE,
    State.PERMANENT_FAILURE: notify_pb2.DELIVERY_STATUS_PERMANENT_FAILURE,
    State.TECHNICAL_FAILURE: notify_pb2.DELIVERY_STATUS_TECHNICAL_FAILURE,
}


def notification_to_proto(n: Notification) -> notify_pb2.Notification:
    msg = notify_pb2.Notification(
        id=n.id,
        dossier_code=n.dossier_code,
        agency_code=n.agency_code,
        source_event_id=n.event_id,
        source_event_type=n.event_type,
        template=n.template,
        channel=CHANNEL_TO_PROTO[n.channel],
        recipient=n.masked_recipient,
        status=STATE_TO_PROTO[n.state],
        attempts=n.attempts,
        provider=n.provider,
        provider_reference=n.provider_ref,
        subject=n.subject,
        body=n.body,
        sms_segments=n.sms_segments or 0,
        created_at=timestamp(n.created_at),
        updated_at=timestamp(n.updated_at),
    )
    if n.next_attempt_at is not None and n.state in (State.CREATED, State.TEMPORARY_FAILURE):
        msg.next_attempt_at.CopyFrom(timestamp(n.next_attempt_at))
    return msg


def summary_of(n: Notification) -> events_pb2.NotificationSummary:
    """What a notify event says of a notification: no full address, no message text."""
    return events_pb2.NotificationSummary(
        notification_id=n.id,
        dossier_code=n.dossier_code,
        agency_code=n.agency_code,
        source_event_id=n.event_id,
        source_event_type=n.event_type,
        template=n.template,
        channel=CHANNEL_TO_PROTO[n.channel],
        recipient=n.masked_recipient,
        status=STATE_TO_PROTO[n.state],
        attempts=n.attempts,
        provider=n.provider,
        provider_reference=n.provider_ref,
    )


def history_to_proto(h: HistoryEntry) -> notify_pb2.StatusChange:
    return notify_pb2.StatusChange(
        status=STATE_TO_PROTO[h.state],
        at=timestamp(h.at),
        attempt=h.attempt,
        provider=h.provider,
        detail=h.detail,
    )


def channel_from_proto(value: int) -> Channel:
    try:
        return CHANNEL_FROM_PROTO[value]  # type: ignore[index,unused-ignore]
    except KeyError:
        raise InvalidArgument(
            "channel", "must be CHANNEL_EMAIL, CHANNEL_SMS or CHANNEL_ZALO"
        ) from None


class NotifyApi(notify_pb2_grpc.NotifyServiceServicer):
    """The NotifyService gRPC API."""

    def __init__(self, service: NotifyService) -> None:
        self._service = service

    def ListNotifications(
        self, request: notify_pb2.ListNotificationsRequest, context: grpc.ServicerContext
    ) -> notify_pb2.ListNotificationsResponse:
        page, next_token = self._service.list_notifications(
            current_principal(), request.dossier_code, request.page_size, request.page_token
        )
        return notify_pb2.ListNotificationsResponse(
            notifications=[notification_to_proto(n) for n in page], next_page_token=next_token
        )

    def GetNotification(
        self, request: notify_pb2.GetNotificationRequest, context: grpc.ServicerContext
    ) -> notify_pb2.GetNotificationResponse:
        notification, history = self._service.get_notification(current_principal(), request.id)
        return notify_pb2.GetNotificationResponse(
            notification=notification_to_proto(notification),
            history=[history_to_proto(h) for h in history],
        )

    def SetOptOut(
        self, request: notify_pb2.SetOptOutRequest, context: grpc.ServicerContext
    ) -> notify_pb2.SetOptOutResponse:
        channel = channel_from_proto(request.channel)
        opt_outs = self._service.set_opt_out(
            current_principal(), request.citizen_id, channel, request.opted_out
        )
        return notify_pb2.SetOptOutResponse(opt_outs=_opt_outs(request.citizen_id, opt_outs))

    def ListOptOuts(
        self, request: notify_pb2.ListOptOutsRequest, context: grpc.ServicerContext
    ) -> notify_pb2.ListOptOutsResponse:
        opt_outs = self._service.list_opt_outs(current_principal(), request.citizen_id)
        return notify_pb2.ListOptOutsResponse(opt_outs=_opt_outs(request.citizen_id, opt_outs))


def _opt_outs(citizen_id: str, opt_outs: dict[Channel, datetime]) -> list[notify_pb2.OptOut]:
    return [
        notify_pb2.OptOut(
            citizen_id=citizen_id.strip(),
            channel=CHANNEL_TO_PROTO[channel],
            updated_at=timestamp(at),
        )
        for channel, at in sorted(opt_outs.items())
    ]
