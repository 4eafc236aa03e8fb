"""CloudEvents 1.0 in Kafka binary mode with protobuf payloads, plus W3C ``traceparent``.

Built on the CloudEvents SDK's Kafka binding: attributes travel as ``ce_*`` headers,
``content-type: application/protobuf``, the value is the serialised protobuf message and the
record key is the dossier code (``ce_subject``), so one dossier's events stay in order.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.v1.event import CloudEvent
from google.protobuf.message import Message

CONTENT_TYPE = "application/protobuf"
SPECVERSION = "1.0"
_TRACE_HEADERS = ("traceparent", "tracestate")
_REQUIRED_HEADERS = ("ce_id", "ce_source", "ce_type", "ce_time", "ce_subject", "content-type")


class EnvelopeError(ValueError):
    """A record is not a valid motcua CloudEvent (poison: it goes to the dead-letter topic)."""


class ProtobufFormat:
    """CloudEvents ``Format`` whose data is already-serialised protobuf bytes."""

    def read(self, event_factory: Any, data: str | bytes) -> BaseCloudEvent:
        raise EnvelopeError("structured mode is not used by motcua")

    def write(self, event: BaseCloudEvent) -> bytes:
        raise EnvelopeError("structured mode is not used by motcua")

    def write_data(self, data: Any, datacontenttype: str | None) -> bytes:
        if not isinstance(data, bytes):
            raise EnvelopeError("event data must be serialised protobuf bytes")
        return data

    def read_data(self, body: bytes, datacontenttype: str | None) -> Any:
        return body

    def get_content_type(self) -> str:
        return CONTENT_TYPE


_FORMAT = ProtobufFormat()


@dataclass(frozen=True)
class Event:
    """One event as motcua sees it: CloudEvents attributes and the protobuf payload bytes."""

    id: str
    source: str
    type: str
    subject: str
    time: datetime
    data: bytes
    trace_headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def new(
        cls,
        *,
        source: str,
        type: str,
        subject: str,
        message: Message,
        trace_headers: Mapping[str, str] | None = None,
        time: datetime | None = None,
    ) -> Event:
        """A fresh event with a new id; the id is what consumers deduplicate on."""
        return cls(
            id=str(uuid.uuid4()),
            source=source,
            type=type,
            subject=subject,
            time=time or datetime.now(UTC),
            data=message.SerializeToString(deterministic=True),
            trace_headers=dict(trace_headers or {}),
        )

    def parse(self, message_type: builtins.type[Message]) -> Message:
        """Decode the payload; a payload that does not parse is poison."""
        msg = message_type()
        try:
            msg.ParseFromString(self.data)
        except Exception as exc:  # protobuf raises DecodeError, sometimes others
            raise EnvelopeError(f"payload is not a valid {message_type.__name__}: {exc}") from exc
        return msg


@dataclass(frozen=True)
class KafkaRecord:
    """What goes on the wire: key, value and headers as kafka-python takes them."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def encode(event: Event) -> KafkaRecord:
    """Event → binary-mode Kafka record (``ce_*`` headers, content-type, traceparent)."""
    ce = CloudEvent(
        attributes={
            "id": event.id,
            "source": event.source,
            "type": event.type,
            "subject": event.subject,
            "time": event.time,
            "specversion": SPECVERSION,
            "datacontenttype": CONTENT_TYPE,
        },
        data=event.data,
    )
    message = ce_kafka.to_binary(ce, _FORMAT, key_mapper=lambda e: e.get_subject())
    headers = [(k, v) for k, v in message.headers.items()]
    headers += [
        (k, v.encode("ascii")) for k, v in event.trace_headers.items() if k in _TRACE_HEADERS
    ]
    key = message.key.encode() if isinstance(message.key, str) else (message.key or b"")
    return KafkaRecord(key=key, value=message.value, headers=headers)


def decode(
    key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes | None]]
) -> Event:
    """Binary-mode Kafka record → Event; anything malformed raises :class:`EnvelopeError`."""
    header_map: dict[str, bytes] = {}
    for name, raw in headers:
        if raw is not None:
            header_map[name] = raw
    if header_map.get("ce_specversion") != SPECVERSION.encode():
        raise EnvelopeError("not a CloudEvents 1.0 binary-mode record (ce_specversion)")
    # The SDK would invent a missing id or time; a motcua event must carry its own.
    missing = [h for h in _REQUIRED_HEADERS if not header_map.get(h)]
    if missing:
        raise EnvelopeError(f"missing CloudEvents headers: {', '.join(missing)}")
    try:
        ce = ce_kafka.from_binary(
            ce_kafka.KafkaMessage(headers=header_map, key=key, value=value or b""),
            _FORMAT,
            CloudEvent,
        )
    except Exception as exc:
        raise EnvelopeError(f"invalid CloudEvents headers: {exc}") from exc
    time = ce.get_time()
    subject = ce.get_subject()
    if time is None or not subject:
        raise EnvelopeError("ce_time and ce_subject are required on motcua events")
    if ce.get_datacontenttype() != CONTENT_TYPE:
        raise EnvelopeError(f"content-type must be {CONTENT_TYPE}")
    trace_headers = {
        k: header_map[k].decode("ascii", "replace") for k in _TRACE_HEADERS if k in header_map
    }
    return Event(
        id=ce.get_id(),
        source=ce.get_source(),
        type=ce.get_type(),
        subject=subject,
        time=time,
        data=value or b"",
        trace_headers=trace_headers,
    )
