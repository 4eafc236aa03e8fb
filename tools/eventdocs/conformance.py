"""Message contracts: does a Kafka record match the catalogue, does a consumer take what it claims.

Producer side, :class:`CatalogueContract.record_problems`: the record's topic is a channel of
the generated AsyncAPI document, its ``ce_type`` one of that channel's messages, its headers
valid against the message's headers schema, its key the dossier code equal to ``ce_subject``,
and its value the documented protobuf message — no unknown fields — whose JSON rendering is
valid against the payload schema with no undocumented property.

Consumer side, :func:`consumer_problems`: for every type the registry says a system consumes,
the system has a handler for it (its own or a catch-all of the topic) expecting the documented
message, and the catalogue's example record goes through the kit's real consumer runner into
that handler.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet
from sqlalchemy import select

from motcua_kit.consumer import ANY_TYPE, Handler
from motcua_kit.envelope import EnvelopeError, decode
from motcua_kit.kafka import make_producer
from motcua_kit.outbox import OutboxRelay
from motcua_kit.registry import TopicRegistry, message_class
from motcua_kit.service import ServiceHost
from tools.eventdocs.catalogue import ROOT

ASYNCAPI_FILE = ROOT / "docs" / "events" / "asyncapi.yaml"


def _unknown_fields(message: Message, path: str = "") -> list[str]:
    """Paths of fields the payload carries that its documented message does not define."""
    found = []
    if len(UnknownFieldSet(message)):
        found.append(path or "(payload)")
    for fd, value in message.ListFields():
        if fd.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            continue
        items = value if fd.is_repeated else [value]
        for i, item in enumerate(items):
            where = f"{path}.{fd.name}" if path else fd.name
            found += _unknown_fields(item, f"{where}[{i}]" if fd.is_repeated else where)
    return found


def _strict(node: Any) -> Any:
    """A copy of a schema in which objects with properties allow no other properties."""
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items()}
        if out.get("type") == "object" and "properties" in out:
            out.setdefault("additionalProperties", False)
        return out
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


@dataclass
class CatalogueContract:
    """The generated AsyncAPI document, read as the contract records are checked against."""

    document: dict[str, Any]

    @classmethod
    def load(cls, path: Path = ASYNCAPI_FILE) -> CatalogueContract:
        return cls(yaml.safe_load(path.read_text(encoding="utf-8")))

    @functools.cached_property
    def _strict_components(self) -> dict[str, Any]:
        return {"components": _strict(copy.deepcopy(self.document["components"]))}

    def _validate(self, instance: Any, schema: Mapping[str, Any], what: str) -> list[str]:
        root = {**self._strict_components, "allOf": [dict(schema)]}
        validator = jsonschema.Draft7Validator(root)
        return [
            f"{what}: {'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message[:240]}"
            for e in validator.iter_errors(instance)
        ]

    def channel_types(self, topic: str) -> list[str]:
        channel = self.document["channels"].get(topic)
        return list(channel["messages"]) if channel else []

    def message(self, event_type: str) -> dict[str, Any]:
        found: dict[str, Any] = self.document["components"]["messages"][event_type]
        return found

    def record_problems(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Iterable[tuple[str, bytes | None]],
    ) -> list[str]:
        """Every way the record differs from the catalogue (empty when it matches)."""
        if topic not in self.document["channels"]:
            return [f"topic {topic} is not in the catalogue"]
        header_list = list(headers)
        names = [name for name, _ in header_list]
        problems = [f"header {n} appears twice" for n in sorted(set(names)) if names.count(n) > 1]
        header_map = {k: (v or b"").decode("utf-8", "replace") for k, v in header_list}
        event_type = header_map.get("ce_type", "")
        if event_type not in self.channel_types(topic):
            return [*problems, f"ce_type {event_type!r} is not documented on {topic}"]
        spec = self.message(event_type)
        problems += self._validate(header_map, spec["headers"], "headers")
        key_text = (key or b"").decode("utf-8", "replace")
        problems += self._validate(key_text, spec["bindings"]["kafka"]["key"], "key")
        if key_text != header_map.get("ce_subject"):
            problems.append(
                f"key {key_text!r} differs from ce_subject {header_map.get('ce_subject')!r}"
            )
        try:
            decode(key, value, header_list)
        except EnvelopeError as exc:
            problems.append(f"envelope: {exc}")
        payload_class = message_class(spec["x-protobuf-message"])
        payload = payload_class()
        try:
            payload.ParseFromString(value or b"")
        except Exception as exc:
            return [*problems, f"value is not a {spec['x-protobuf-message']}: {exc}"]
        problems += [
            f"payload field {where} is not in {spec['x-protobuf-message']} (undocumented)"
            for where in _unknown_fields(payload)
        ]
        rendered = json_format.MessageToDict(payload, preserving_proto_field_name=True)
        problems += self._validate(rendered, spec["payload"], "payload")
        return problems

    def example_record(self, event_type: str) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        """The catalogue's example of ``event_type`` as a Kafka record (key, value, headers)."""
        example = self.message(event_type)["examples"][0]
        payload = message_class(self.message(event_type)["x-protobuf-message"])()
        json_format.ParseDict(example["payload"], payload)
        headers = [(k, str(v).encode()) for k, v in example["headers"].items()]
        return (
            example["headers"]["ce_subject"].encode(),
            payload.SerializeToString(deterministic=True),
            headers,
        )


@dataclass(frozen=True)
class Published:
    """One outbox row after the service's relay published it."""

    topic: str
    event_type: str
    key: str
    payload: bytes


def publish_outbox(host: ServiceHost) -> dict[str, Published]:
    """Publish a service's outbox with its own relay (to ``host.settings.kafka_bootstrap``);
    returns every row by event id, so the records can be found on the topic."""
    assert host.outbox is not None, f"{host.service_cls.name} has no outbox"
    table = host.outbox.table
    relay = OutboxRelay(
        host.service_cls.name, host.sessions, table, lambda: make_producer(host.settings)
    )
    try:
        while relay.publish_batch():
            pass
    finally:
        relay.stop()
    with host.sessions() as session:
        rows = session.execute(
            select(
                table.c.event_id,
                table.c.topic,
                table.c.event_type,
                table.c.event_key,
                table.c.payload,
            ).order_by(table.c.id)
        ).all()
    return {
        r.event_id: Published(r.topic, r.event_type, r.event_key, bytes(r.payload)) for r in rows
    }


def service_handlers(service_cls: type) -> list[Handler]:
    """The handler declarations of a motcua ``Service`` class, without building the service.

    The function of each is a stand-in that records what it was given; the topic, type and
    expected message are the class's own.
    """
    handlers: list[Handler] = []
    seen: set[str] = set()
    for klass in service_cls.__mro__:
        for name, attr in vars(klass).items():
            if name in seen:
                continue
            specs = getattr(attr, "_motcua_handlers", None)
            if not specs:
                continue
            seen.add(name)
            for spec in specs:
                handlers.append(Handler(spec.topic, spec.event_type, _noop, spec.message_type))
    return handlers


def _noop(event: Any, message: Any, session: Any) -> None:
    return None


Deliver = Callable[[Sequence[Handler], str, bytes, bytes, list[tuple[str, bytes]]], str]


def consumer_problems(
    registry: TopicRegistry,
    system: str,
    handlers: Sequence[Handler],
    contract: CatalogueContract,
    deliver: Deliver,
) -> list[str]:
    """Every type ``system`` is documented to consume that its handlers would not accept.

    ``deliver(handlers, topic, key, value, headers)`` runs a record through the kit's consumer
    runner with ``handlers`` and returns its outcome.
    """
    problems = []
    by_key = {(h.topic, h.event_type): h for h in handlers}
    for topic, claimed in registry.consumed_by(system).items():
        # "Every type" is every type documented now: a catch-all handler takes them, and so do
        # typed handlers for each — until a new type is documented that they do not take.
        types = registry.topic(topic).types if claimed == (ANY_TYPE,) else claimed
        for event_type in types:
            handler = by_key.get((topic, event_type)) or by_key.get((topic, ANY_TYPE))
            if handler is None:
                problems.append(
                    f"{system} is documented to consume {event_type} but has no handler for it"
                )
                continue
            documented = registry.event(event_type).message
            if handler.message_type is not None:
                got = handler.message_type.DESCRIPTOR.full_name
                if got != documented:
                    problems.append(
                        f"{system} parses {event_type} as {got}; the catalogue "
                        f"documents {documented}"
                    )
                    continue
            key, value, headers = contract.example_record(event_type)
            outcome = deliver(handlers, topic, key, value, headers)
            if outcome != "processed":
                problems.append(
                    f"{system} did not accept the catalogue's example of {event_type}: {outcome}"
                )
    return problems
