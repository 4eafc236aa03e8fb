"""Example payloads and headers for every event type of the catalogue.

An example is the sample values of ``samples.yaml`` for the payload's fields, with the event's
own ``example:`` from the registry merged over them, parsed into the real protobuf message (so
a misspelt field or a wrong enum name fails generation) and printed back as protobuf JSON.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping
from typing import Any, cast

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from motcua_kit.envelope import CONTENT_TYPE, SPECVERSION
from motcua_kit.registry import EventSpec, KeySpec, TopicSpec
from tools.eventdocs.protoschema import enum_type, message_type

EXAMPLE_TIME = "2026-03-02T02:00:00Z"
EXAMPLE_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
_NAMESPACE = uuid.UUID("6f1f4c34-5b0e-4a8e-9d38-2b7c1c0f9e11")  # fixed: examples are stable
_FD = FieldDescriptor


class ExampleError(ValueError):
    """An example does not fit its protobuf message."""


def _generic(fd: FieldDescriptor) -> Any:
    t = fd.type
    if t == _FD.TYPE_STRING:
        return fd.name.replace("_", " ")
    if t == _FD.TYPE_BOOL:
        return None  # false is protobuf's default: leave it unset
    if t == _FD.TYPE_BYTES:
        return "AA=="
    if t == _FD.TYPE_ENUM:
        values = [v.name for v in enum_type(fd).values if v.number != 0]
        return values[0] if values else None
    if t in (_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT):
        return 1.5
    if t in (_FD.TYPE_INT64, _FD.TYPE_SINT64, _FD.TYPE_SFIXED64, _FD.TYPE_UINT64, _FD.TYPE_FIXED64):
        return "1"
    return 1


def sample_message(
    descriptor: Descriptor,
    samples: Mapping[str, Any],
    override: Mapping[str, Any] | None = None,
    stack: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Protobuf JSON for ``descriptor``: ``override`` first, then ``samples`` (full name, then
    bare name), then a generic value. A mapping in ``override`` for a message field is merged
    over that message's own sample, even where the samples leave the field unset."""
    over = override or {}
    out: dict[str, Any] = {}
    for fd in descriptor.fields:
        nested = fd.type == _FD.TYPE_MESSAGE and not message_type(fd).full_name.startswith(
            "google.protobuf."
        )
        if fd.name in over:
            value = over[fd.name]
            if nested and isinstance(value, Mapping) and not fd.is_repeated:
                value = sample_message(
                    message_type(fd), samples, value, (*stack, descriptor.full_name)
                )
        elif fd.full_name in samples:
            value = samples[fd.full_name]
        elif fd.name in samples:
            value = samples[fd.name]
        elif fd.type == _FD.TYPE_MESSAGE:
            target = message_type(fd)
            if target.GetOptions().map_entry:
                continue
            if target.full_name == "google.protobuf.Timestamp":
                value = EXAMPLE_TIME
            elif not nested or target.full_name in stack:
                continue  # other well-known types, and recursion, stay unset
            else:
                value = sample_message(target, samples, None, (*stack, descriptor.full_name))
        else:
            value = _generic(fd)
        if value is None:
            continue
        if fd.is_repeated and not isinstance(value, list):
            value = [value]
        out[fd.name] = copy.deepcopy(value)
    unknown = set(over) - {fd.name for fd in descriptor.fields}
    if unknown:
        raise ExampleError(f"{descriptor.full_name} has no field {', '.join(sorted(unknown))}")
    return out


def example_message(
    event: EventSpec, message_class: type[Message], samples: Mapping[str, Any]
) -> Message:
    """The example payload of ``event`` as its protobuf message."""
    message = message_class()
    try:
        data = sample_message(cast(Descriptor, message_class.DESCRIPTOR), samples, event.example)
        json_format.ParseDict(data, message)
    except (json_format.ParseError, ExampleError) as exc:
        raise ExampleError(
            f"{event.type}: the example is not a valid {message_class.DESCRIPTOR.full_name}: {exc}"
        ) from None
    return message


def payload_json(message: Message) -> dict[str, Any]:
    """The protobuf JSON rendering the catalogue uses (proto field names)."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def example_headers(topic: TopicSpec, event: EventSpec, key: KeySpec) -> dict[str, str]:
    """The Kafka headers of the example record, as the kit's envelope writes them."""
    return {
        "ce_id": str(uuid.uuid5(_NAMESPACE, event.type)),
        "ce_source": topic.source,
        "ce_type": event.type,
        "ce_subject": key.example,
        "ce_time": EXAMPLE_TIME,
        "ce_specversion": SPECVERSION,
        "content-type": CONTENT_TYPE,
        "traceparent": EXAMPLE_TRACEPARENT,
    }
