"""gRPC adapter: protobuf requests → service calls → protobuf responses. No rules live here
(the messages are :mod:`motcua_notify.adapters.messages`')."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from motcua.notify.v1 import notify_pb2, notify_pb2_grpc
from motcua_kit.auth import current_principal
from motcua_notify.adapters.messages import (
    channel_from_proto,
    history_to_proto,
    notification_to_proto,
    opt_outs_to_proto,
)

if TYPE_CHECKING:
    from motcua_notify.service import NotifyService


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
        return notify_pb2.SetOptOutResponse(
            opt_outs=opt_outs_to_proto(request.citizen_id, opt_outs)
        )

    def ListOptOuts(
        self, request: notify_pb2.ListOptOutsRequest, context: grpc.ServicerContext
    ) -> notify_pb2.ListOptOutsResponse:
        opt_outs = self._service.list_opt_outs(current_principal(), request.citizen_id)
        return notify_pb2.ListOptOutsResponse(
            opt_outs=opt_outs_to_proto(request.citizen_id, opt_outs)
        )
