"""The event catalogue: the registry and the protos combined into one AsyncAPI 3.0 document.

Everything the pages show comes from here, so the YAML document and the HTML and markdown
pages cannot disagree. Building fails — with every problem listed — when an event type's
message does not exist, a field is undocumented, or an example does not fit its message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from motcua_kit.envelope import CONTENT_TYPE, SPECVERSION
from motcua_kit.registry import (
    EventSpec,
    RegistryError,
    TopicRegistry,
    TopicSpec,
    message_class,
    parse_registry,
    read_registry_data,
)
from tools.eventdocs.examples import (
    ExampleError,
    example_headers,
    example_message,
    payload_json,
)
from tools.eventdocs.protodocs import ProtoDocs, ProtoError, compile_protos
from tools.eventdocs.protoschema import RFC3339, SchemaBuilder, component_ref

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING = "0.5.0"
HEADERS_SCHEMA = "CloudEventsKafkaHeaders"
DEAD_LETTER_MESSAGE = "motcua.dead-letter"
TRACEPARENT = r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"

DEAD_LETTER_HEADERS: dict[str, str] = {
    "motcua_error": "The error message (at most 2000 characters).",
    "motcua_error_type": "The exception class, e.g. EnvelopeError (the record cannot be decoded; "
    "replay skips it) or PermanentError (the handler refused it).",
    "motcua_error_trace": "The end of the traceback.",
    "motcua_original_topic": "Where the record came from.",
    "motcua_original_partition": "Its partition there.",
    "motcua_original_offset": "Its offset there.",
    "motcua_consumer_group": "The consumer group that gave up on it.",
    "motcua_failed_at": "When, RFC 3339.",
}

ENVELOPE_HEADERS: dict[str, str] = {
    "ce_id": "Unique event id (a UUID). Consumers deduplicate on it: a redelivered or replayed "
    "record has the same id.",
    "ce_source": "The producing service, /motcua/<service>.",
    "ce_type": "What happened: vn.motcua.<service>.<event>.v<N>. It names the payload's "
    "protobuf message (see each message).",
    "ce_subject": "The dossier code; always equal to the record key.",
    "ce_time": "When the state change happened (RFC 3339, UTC).",
    "ce_specversion": "CloudEvents version: 1.0.",
    "content-type": "application/protobuf: the value is the serialised protobuf message.",
    "traceparent": "W3C trace context of the request that caused the event; continue the trace "
    "from it.",
    "tracestate": "W3C trace state, when the caller sent one.",
}


class CatalogueError(RuntimeError):
    """The catalogue cannot be built; ``problems`` says every reason at once."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("the event catalogue cannot be built:\n  - " + "\n  - ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Sources:
    """Where the catalogue's inputs are (tests point them at broken copies)."""

    registry: Path = ROOT / "contracts" / "topics.yaml"
    protos: Path = ROOT / "protos"
    field_docs: Path = HERE / "field_docs.yaml"
    samples: Path = HERE / "samples.yaml"


@dataclass(frozen=True)
class EventDoc:
    """One event type as the pages show it."""

    topic: TopicSpec
    spec: EventSpec
    message: str
    consumers: tuple[str, ...]
    headers: dict[str, str]
    payload: dict[str, Any]


@dataclass
class Catalogue:
    """The built catalogue: the registry, every event's example, the AsyncAPI document."""

    registry: TopicRegistry
    registry_data: dict[str, Any]
    events: list[EventDoc]
    schemas: dict[str, dict[str, Any]]
    document: dict[str, Any] = field(default_factory=dict)

    def event(self, event_type: str) -> EventDoc:
        for doc in self.events:
            if doc.spec.type == event_type:
                return doc
        raise KeyError(event_type)

    def events_of(self, topic: str) -> list[EventDoc]:
        return [e for e in self.events if e.topic.name == topic]


def _read_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogueError([f"{what} {path}: {exc}"]) from None
    if not isinstance(data, dict):
        raise CatalogueError([f"{what} {path}: must be a mapping"])
    return data


def build(sources: Sources | None = None, docs: ProtoDocs | None = None) -> Catalogue:
    """Read the registry, the protos and the docs overlay; check and combine them."""
    src = sources or Sources()
    try:
        data = read_registry_data(src.registry)
        registry = parse_registry(data, str(src.registry))
    except RegistryError as exc:
        raise CatalogueError([str(exc)]) from None
    try:
        proto_docs = docs or compile_protos(src.protos)
    except ProtoError as exc:
        raise CatalogueError([str(exc)]) from None
    overlay = {str(k): str(v) for k, v in _read_yaml_mapping(src.field_docs, "field docs").items()}
    samples = _read_yaml_mapping(src.samples, "samples")
    builder = SchemaBuilder(proto_docs, overlay)
    problems: list[str] = []
    events: list[EventDoc] = []
    for topic in registry.topics:
        for spec in topic.events:
            try:
                cls: type[Message] = message_class(spec.message)
            except RegistryError as exc:
                problems.append(f"{spec.type}: {exc}")
                continue
            builder.message(cast(Descriptor, cls.DESCRIPTOR))
            try:
                payload = payload_json(example_message(spec, cls, samples))
            except ExampleError as exc:
                problems.append(str(exc))
                continue
            events.append(
                EventDoc(
                    topic=topic,
                    spec=spec,
                    message=spec.message,
                    consumers=topic.consumers_of(spec.type),
                    headers=example_headers(topic, spec, registry.key),
                    payload=payload,
                )
            )
    problems += builder.problems
    problems += [
        f"field_docs.yaml: {name} is no element of any event payload; remove it"
        for name in builder.unused_overlay()
    ]
    if problems:
        raise CatalogueError(sorted(set(problems), key=problems.index))
    catalogue = Catalogue(registry, data, events, dict(sorted(builder.schemas.items())))
    catalogue.document = asyncapi_document(catalogue)
    return catalogue


# -- the AsyncAPI document ----------------------------------------------------------------------
def _headers_schema() -> dict[str, Any]:
    props: dict[str, Any] = {
        name: {"type": "string", "description": text} for name, text in ENVELOPE_HEADERS.items()
    }
    props["ce_id"]["minLength"] = 1
    props["ce_time"]["format"] = "date-time"
    props["ce_time"]["pattern"] = RFC3339
    props["ce_specversion"]["const"] = SPECVERSION
    props["content-type"]["const"] = CONTENT_TYPE
    props["traceparent"]["pattern"] = TRACEPARENT
    return {
        "type": "object",
        "title": "CloudEvents 1.0, Kafka binary mode",
        "description": "The headers of every motcua record. Header values are UTF-8 bytes.",
        "required": [
            "ce_id",
            "ce_source",
            "ce_type",
            "ce_subject",
            "ce_time",
            "ce_specversion",
            "content-type",
        ],
        "properties": props,
    }


def _key_schema(registry: TopicRegistry) -> dict[str, Any]:
    return {
        "type": "string",
        "title": registry.key.name,
        "description": registry.key.description,
        "pattern": registry.key.pattern,
        "examples": [registry.key.example],
    }


def _message(catalogue: Catalogue, doc: EventDoc) -> dict[str, Any]:
    spec, topic = doc.spec, doc.topic
    schema = catalogue.schemas[doc.message]
    consumers = ", ".join(doc.consumers) or "no motcua service yet"
    description = (
        f"{spec.summary}\n\nPayload: protobuf `{doc.message}` "
        f"({schema['x-protobuf-file']}). Consumed by: {consumers}."
    )
    if spec.deprecated:
        description += f"\n\n**Deprecated:** {spec.deprecated}"
    message: dict[str, Any] = {
        "name": spec.type,
        "title": spec.type,
        "summary": spec.summary,
        "description": description,
        "contentType": CONTENT_TYPE,
        "headers": {
            "allOf": [
                component_ref(HEADERS_SCHEMA),
                {
                    "type": "object",
                    "properties": {
                        "ce_type": {"type": "string", "const": spec.type},
                        "ce_source": {"type": "string", "const": topic.source},
                        "ce_subject": {
                            "type": "string",
                            "pattern": catalogue.registry.key.pattern,
                        },
                    },
                },
            ]
        },
        "payload": component_ref(doc.message),
        "correlationId": {
            "description": "The dossier code: every event of one dossier carries it.",
            "location": "$message.header#/ce_subject",
        },
        "tags": [{"name": topic.producer}],
        "bindings": {
            "kafka": {"key": _key_schema(catalogue.registry), "bindingVersion": KAFKA_BINDING}
        },
        "examples": [
            {
                "name": spec.name,
                "summary": f"A {spec.type} record",
                "headers": doc.headers,
                "payload": doc.payload,
            }
        ],
        "x-cloudevents-type": spec.type,
        "x-protobuf-message": doc.message,
        "x-motcua-version": spec.version,
        "x-motcua-consumers": list(doc.consumers),
    }
    if spec.deprecated:
        message["x-motcua-deprecated"] = spec.deprecated
    return message


def _dead_letter_message() -> dict[str, Any]:
    props = {
        name: {"type": "string", "description": text} for name, text in DEAD_LETTER_HEADERS.items()
    }
    return {
        "name": "dead-letter",
        "title": "A dead letter",
        "summary": "A record a consumer gave up on, unchanged, with the error.",
        "description": (
            "Key, value and original headers are the record's own; the consumer added the "
            "motcua_error* headers. `python -m motcua_kit.dlq list|replay <topic>` shows and "
            "replays them; replay is safe because consumers deduplicate on ce_id."
        ),
        "contentType": CONTENT_TYPE,
        "headers": {
            "type": "object",
            "required": ["motcua_error", "motcua_error_type", "motcua_original_topic"],
            "properties": props,
        },
        "payload": {"description": "The original record's value, unchanged."},
    }


def _channel(catalogue: Catalogue, topic: TopicSpec) -> dict[str, Any]:
    env_partitions = ", ".join(f"{env} {n}" for env, n in topic.partitions.items())
    channel: dict[str, Any] = {
        "address": topic.name,
        "title": topic.name,
        "summary": f"Produced by {topic.producer} ({topic.status}).",
        "description": (
            f"{topic.description}\n\nKey: {catalogue.registry.key.name}. Partitions: "
            f"{env_partitions}. Retention: {topic.retention_days} days. Dead letters: "
            f"`{topic.dlq_name}`."
        ),
        "messages": {
            e.spec.type: {"$ref": f"#/components/messages/{e.spec.type}"}
            for e in catalogue.events_of(topic.name)
        },
        "bindings": {
            "kafka": {
                "topic": topic.name,
                "partitions": max(topic.partitions.values()),
                "topicConfiguration": {
                    "cleanup.policy": ["delete"],
                    "retention.ms": topic.retention_ms,
                },
                "bindingVersion": KAFKA_BINDING,
            }
        },
        "x-motcua-producer": topic.producer,
        "x-motcua-status": topic.status,
        "x-motcua-partitions": dict(topic.partitions),
        "x-motcua-retention-days": topic.retention_days,
    }
    return channel


def _dlq_channel(topic: TopicSpec) -> dict[str, Any]:
    return {
        "address": topic.dlq_name,
        "title": topic.dlq_name,
        "summary": f"Dead letters of every consumer of {topic.name}.",
        "messages": {"dead-letter": {"$ref": f"#/components/messages/{DEAD_LETTER_MESSAGE}"}},
        "bindings": {
            "kafka": {
                "topic": topic.dlq_name,
                "partitions": topic.dlq.partitions,
                "topicConfiguration": {
                    "cleanup.policy": ["delete"],
                    "retention.ms": topic.dlq_retention_ms,
                },
                "bindingVersion": KAFKA_BINDING,
            }
        },
        "x-motcua-retention-days": topic.dlq.retention_days,
    }


def _operations(catalogue: Catalogue) -> dict[str, Any]:
    registry = catalogue.registry
    ops: dict[str, Any] = {}
    for topic in registry.topics:
        events = catalogue.events_of(topic.name)
        ops[f"{topic.producer}.publishes.{topic.name}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{topic.name}"},
            "title": f"{topic.producer} publishes {topic.name}",
            "summary": f"Through its transactional outbox; key = {registry.key.name}.",
            "messages": [
                {"$ref": f"#/channels/{topic.name}/messages/{e.spec.type}"} for e in events
            ],
        }
        ops[f"consumers.dead-letter.{topic.name}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{topic.dlq_name}"},
            "title": f"Consumers dead-letter records of {topic.name}",
            "summary": "After bounded retries, or at once for a record that cannot be decoded.",
            "messages": [{"$ref": f"#/channels/{topic.dlq_name}/messages/dead-letter"}],
        }
    for name, system in registry.systems.items():
        for topic_name, types in registry.consumed_by(name).items():
            events = catalogue.events_of(topic_name)
            chosen = [e for e in events if types == ("*",) or e.spec.type in types]
            ops[f"{name}.consumes.{topic_name}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{topic_name}"},
                "title": f"{name} consumes {topic_name}",
                "summary": (
                    "Every type, known or not."
                    if types == ("*",)
                    else f"{len(chosen)} of the topic's types."
                ),
                "description": system.description,
                "messages": [
                    {"$ref": f"#/channels/{topic_name}/messages/{e.spec.type}"} for e in chosen
                ],
                "bindings": {
                    "kafka": {
                        "groupId": {"type": "string", "enum": [system.consumer_group]},
                        "bindingVersion": KAFKA_BINDING,
                    }
                },
                "x-motcua-system-kind": system.kind,
            }
    return ops


INTRO = """\
Every Kafka topic motcua publishes, its CloudEvents types and their protobuf payloads.

Generated by `make generate` from the topic registry (`contracts/topics.yaml`) and the protos
(`protos/`); do not edit by hand. `make check-generated` fails in CI when it is stale.

**Envelope.** CloudEvents 1.0 in Kafka binary mode: the attributes are `ce_*` headers, the
value is the serialised protobuf message named by the type (`content-type:
application/protobuf`), and the key is the dossier code, so one dossier's events keep their
order. The payload schemas here describe the protobuf messages through protobuf's JSON mapping
with proto field names (64-bit integers as strings, enums by name, times in RFC 3339); decode
the value with the generated classes of `motcua-contracts`, or with the subscriber kit
(`motcua-subscriber`), which also deduplicates and dead-letters like the services do.

**Compatibility.** Fields are only ever added (`buf breaking` guards the protos); ignore
unknown fields and unknown types. A change that would break a consumer is a new type version
(`.v2`), published beside the old one until every consumer listed here has moved.
"""


def asyncapi_document(catalogue: Catalogue) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the catalogue."""
    registry = catalogue.registry
    channels: dict[str, Any] = {}
    for topic in registry.topics:
        channels[topic.name] = _channel(catalogue, topic)
        channels[topic.dlq_name] = _dlq_channel(topic)
    messages: dict[str, Any] = {e.spec.type: _message(catalogue, e) for e in catalogue.events}
    messages[DEAD_LETTER_MESSAGE] = _dead_letter_message()
    schemas: dict[str, Any] = {HEADERS_SCHEMA: _headers_schema(), **catalogue.schemas}
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": "urn:vn:motcua:events",
        "info": {
            "title": "motcua events",
            "version": f"{registry.registry_version}.0.0",
            "description": INTRO,
            "tags": [{"name": t.producer, "description": t.description} for t in registry.topics],
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "The broker of `make run` and the tests (PLAINTEXT).",
            },
            "cluster": {
                "host": "{bootstrap}",
                "protocol": "kafka-secure",
                "description": "An installation's cluster: SASL_SSL with one principal per "
                "consumer (see helm/README.md).",
                "variables": {
                    "bootstrap": {
                        "description": "The cluster's bootstrap servers.",
                        "default": "kafka-bootstrap.kafka:9093",
                    }
                },
            },
        },
        "channels": channels,
        "operations": _operations(catalogue),
        "components": {"schemas": schemas, "messages": messages},
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line text as literal blocks, so descriptions read as written."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if "\n" in value and not any(line != line.rstrip() for line in value.splitlines()):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _text)


def dump_yaml(data: Mapping[str, Any]) -> str:
    """Deterministic YAML (insertion order, unicode kept, multi-line text as blocks)."""
    return yaml.dump(dict(data), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
