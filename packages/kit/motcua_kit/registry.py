"""The topic registry: every motcua topic, its key, partitions, retention, types and consumers.

The single source is ``contracts/topics.yaml`` at the repository root. ``make generate`` writes a
JSON copy next to this module (``motcua_kit/topics.json``: JSON, so the kit needs no YAML
parser) so that installed services and the subscriber kit read the same data without the
repository; ``make check-generated`` fails when the copy is stale. ``MOTCUA_TOPIC_REGISTRY`` points
at another file, YAML or JSON (e.g. a ConfigMap mounted by the chart).

Services use it for topic names and partition counts instead of repeating them::

    from motcua_kit.registry import default_registry
    topic = default_registry().topic("motcua.dossier.v1")
    topic.partitions_for("prod"), topic.dlq_name, topic.retention_ms
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import pkgutil
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

REGISTRY_ENV = "MOTCUA_TOPIC_REGISTRY"
PACKAGED_NAME = "topics.json"
DLQ_SUFFIX = ".dlq"  # the same suffix motcua_kit.consumer dead-letters to
ALL_TYPES = "*"
_MS_PER_DAY = 86_400_000

_TYPE = re.compile(
    r"^vn\.motcua\.(?P<producer>[a-z][a-z0-9_]*)\.(?P<name>[a-z][a-z0-9_]*)\.v(?P<version>[1-9][0-9]*)$"
)
_TOPIC = re.compile(r"^motcua\.(?P<producer>[a-z][a-z0-9_]*)\.v[1-9][0-9]*$")
_MESSAGE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\.[A-Z][A-Za-z0-9]*$")


class RegistryError(ValueError):
    """The registry is malformed or asked for something it does not hold; says where."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class System(_Model):
    """Something that produces or consumes events: a motcua service, an example, an outsider."""

    name: str = ""
    kind: Literal["service", "example", "external"]
    consumer_group: str = Field(min_length=1)
    description: str = Field(min_length=1)


class KeySpec(_Model):
    """What the Kafka record key is (the same on every topic: the dossier code)."""

    name: str = Field(min_length=1)
    description: str = Field(min_length=1)
    pattern: str = Field(min_length=1)
    example: str = Field(min_length=1)

    @model_validator(mode="after")
    def _example_matches(self) -> KeySpec:
        try:
            compiled = re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"pattern is not a regular expression: {exc}") from None
        if not compiled.fullmatch(self.example):
            raise ValueError(f"example {self.example!r} does not match pattern {self.pattern!r}")
        return self

    def matches(self, key: str) -> bool:
        return re.fullmatch(self.pattern, key) is not None


class DeadLetterSpec(_Model):
    """The ``<topic>.dlq`` companion: few partitions, long retention (time to look and replay)."""

    partitions: int = Field(ge=1)
    retention_days: int = Field(ge=1)


class _Typed(_Model):
    """Something named by a CloudEvents type ``vn.motcua.<producer>.<name>.v<N>``."""

    type: str

    @field_validator("type")
    @classmethod
    def _type_form(cls, value: str) -> str:
        if not _TYPE.match(value):
            raise ValueError(f"{value!r} is not vn.motcua.<producer>.<event>.v<N>")
        return value

    def _part(self, part: str) -> str:
        match = _TYPE.match(self.type)
        assert match is not None
        return match[part]

    @property
    def version(self) -> int:
        """The ``N`` of ``.vN``: a change that breaks a consumer is a new version."""
        return int(self._part("version"))

    @property
    def name(self) -> str:
        """The event's short name, e.g. ``submitted`` for ``vn.motcua.dossier.submitted.v1``."""
        return self._part("name")

    @property
    def producer(self) -> str:
        return self._part("producer")


class EventSpec(_Typed):
    """One CloudEvents type: the protobuf message its payload is, and who consumes it."""

    message: str
    summary: str = Field(min_length=1)
    consumers: tuple[str, ...] = ()
    example: dict[str, Any] = Field(default_factory=dict)
    deprecated: str | None = None  # why, and what replaces it

    @field_validator("message")
    @classmethod
    def _message_form(cls, value: str) -> str:
        if not _MESSAGE.match(value):
            raise ValueError(f"{value!r} is not a protobuf full name like motcua.x.v1.Message")
        return value


class RecordSpec(_Typed):
    """A CloudEvents type that is never published on a topic: a service writes it straight
    into its own store (the audit log's RecordAccess entries). Listed so that its name, too,
    comes from the registry's generated constants."""

    recorder: str
    source: str = Field(pattern=r"^/motcua/[a-z][a-z0-9_/]*$")
    summary: str = Field(min_length=1)


class TopicSpec(_Model):
    """One topic of one producer, with its dead-letter companion."""

    name: str
    producer: str
    source: str
    status: Literal["active", "reserved"]
    description: str = Field(min_length=1)
    partitions: dict[str, int]
    retention_days: int = Field(ge=1)
    dlq: DeadLetterSpec
    consumers_of_all_types: tuple[str, ...] = ()
    events: tuple[EventSpec, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> TopicSpec:
        match = _TOPIC.match(self.name)
        if not match:
            raise ValueError(f"topic name {self.name!r} is not motcua.<producer>.v<N>")
        if match["producer"] != self.producer:
            raise ValueError(
                f"topic {self.name} is named for {match['producer']!r}, "
                f"but its producer is {self.producer!r}"
            )
        if self.source != f"/motcua/{self.producer}":
            raise ValueError(f"source must be /motcua/{self.producer} (ce_source of the producer)")
        for count in self.partitions.values():
            if count < 1:
                raise ValueError(f"partitions must be at least 1, got {count}")
        if self.status == "reserved" and (self.events or self.consumers_of_all_types):
            raise ValueError("a reserved topic has no events and no consumers yet")
        if self.status == "active" and not self.events:
            raise ValueError("an active topic lists at least one event type")
        seen: set[str] = set()
        for event in self.events:
            if event.type in seen:
                raise ValueError(f"event type {event.type} is listed twice")
            seen.add(event.type)
            producer = event.type.split(".")[2]
            if producer != self.producer:
                raise ValueError(f"{event.type} is not a type of producer {self.producer!r}")
            both = set(event.consumers) & set(self.consumers_of_all_types)
            if both:
                raise ValueError(
                    f"{event.type}: {', '.join(sorted(both))} already consume "
                    "every type of the topic (consumers_of_all_types)"
                )
        return self

    @property
    def dlq_name(self) -> str:
        return self.name + DLQ_SUFFIX

    @property
    def retention_ms(self) -> int:
        return self.retention_days * _MS_PER_DAY

    @property
    def dlq_retention_ms(self) -> int:
        return self.dlq.retention_days * _MS_PER_DAY

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(e.type for e in self.events)

    def partitions_for(self, environment: str) -> int:
        try:
            return self.partitions[environment]
        except KeyError:
            known = ", ".join(self.partitions)
            raise RegistryError(
                f"{self.name}: no partitions for environment {environment!r} (known: {known})"
            ) from None

    def event(self, event_type: str) -> EventSpec:
        for event in self.events:
            if event.type == event_type:
                return event
        raise RegistryError(f"{event_type} is not a type of {self.name}")

    def consumers_of(self, event_type: str) -> tuple[str, ...]:
        """Every system that consumes ``event_type``: its own consumers, then all-type ones."""
        return (*self.event(event_type).consumers, *self.consumers_of_all_types)


class KafkaTopicSettings(_Model):
    """What creating one topic (main or ``.dlq``) in one environment takes."""

    name: str
    partitions: int
    retention_ms: int


class TopicRegistry(_Model):
    """The whole registry, validated: names, references and partition counts hang together."""

    registry_version: int = Field(ge=1)
    environments: tuple[str, ...] = Field(min_length=1)
    key: KeySpec
    systems: dict[str, System]
    topics: tuple[TopicSpec, ...]
    records: tuple[RecordSpec, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _name_systems(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("systems"), dict):
            named = {}
            for name, body in data["systems"].items():
                named[name] = {**body, "name": name} if isinstance(body, dict) else body
            data = {**data, "systems": named}
        return data

    @model_validator(mode="after")
    def _references(self) -> TopicRegistry:
        envs = set(self.environments)
        names: set[str] = set()
        types: dict[str, str] = {}
        for topic in self.topics:
            if topic.name in names:
                raise ValueError(f"topic {topic.name} is listed twice")
            names.add(topic.name)
            if set(topic.partitions) != envs:
                raise ValueError(
                    f"{topic.name}: partitions must be given for exactly the "
                    f"environments {', '.join(self.environments)}"
                )
            producer = self.systems.get(topic.producer)
            if producer is None or producer.kind != "service":
                raise ValueError(
                    f"{topic.name}: producer {topic.producer!r} is not a service "
                    "listed under systems"
                )
            referenced = list(topic.consumers_of_all_types)
            for event in topic.events:
                if event.type in types:
                    raise ValueError(
                        f"{event.type} is listed on {types[event.type]} and {topic.name}"
                    )
                types[event.type] = topic.name
                referenced += event.consumers
            for consumer in referenced:
                if consumer not in self.systems:
                    raise ValueError(
                        f"{topic.name}: consumer {consumer!r} is not listed under systems"
                    )
        for record in self.records:
            if record.type in types:
                raise ValueError(f"{record.type} is listed on {types[record.type]} and records")
            types[record.type] = "records"
            recorder = self.systems.get(record.recorder)
            if recorder is None or recorder.kind != "service":
                raise ValueError(
                    f"records: {record.type}: recorder {record.recorder!r} is not a service"
                )
            if record.producer != record.recorder:
                raise ValueError(f"records: {record.type} is not of its recorder {record.recorder}")
        return self

    # -- lookups -------------------------------------------------------------------------------
    def topic(self, name: str) -> TopicSpec:
        for topic in self.topics:
            if topic.name == name:
                return topic
        raise RegistryError(f"no topic {name!r} in the registry")

    def topic_of(self, event_type: str) -> TopicSpec:
        for topic in self.topics:
            if event_type in topic.types:
                return topic
        raise RegistryError(f"no event type {event_type!r} in the registry")

    def event(self, event_type: str) -> EventSpec:
        return self.topic_of(event_type).event(event_type)

    def produced_by(self, system: str) -> tuple[TopicSpec, ...]:
        return tuple(t for t in self.topics if t.producer == system)

    def consumed_by(self, system: str) -> dict[str, tuple[str, ...]]:
        """Topic → the types ``system`` consumes on it (``("*",)`` for every type)."""
        out: dict[str, tuple[str, ...]] = {}
        for topic in self.topics:
            if system in topic.consumers_of_all_types:
                out[topic.name] = (ALL_TYPES,)
                continue
            claimed = tuple(e.type for e in topic.events if system in e.consumers)
            if claimed:
                out[topic.name] = claimed
        return out

    def topic_names(self, *, include_dlq: bool = True) -> tuple[str, ...]:
        names: list[str] = []
        for topic in self.topics:
            names.append(topic.name)
            if include_dlq:
                names.append(topic.dlq_name)
        return tuple(names)

    def kafka_topic(self, name: str, environment: str) -> KafkaTopicSettings:
        """Partitions and retention of ``name`` — a topic or its ``.dlq`` — in an environment
        (what ``ensure_topics`` and the chart's KafkaTopic objects need)."""
        base = name.removesuffix(DLQ_SUFFIX)
        topic = self.topic(base)
        if name != base:
            return KafkaTopicSettings(
                name=name, partitions=topic.dlq.partitions, retention_ms=topic.dlq_retention_ms
            )
        return KafkaTopicSettings(
            name=name,
            partitions=topic.partitions_for(environment),
            retention_ms=topic.retention_ms,
        )

    def types_of_message(self, message: str) -> tuple[str, ...]:
        """Every CloudEvents type whose payload is the protobuf message ``message``."""
        return tuple(e.type for t in self.topics for e in t.events if e.message == message)

    def message_class(self, event_type: str) -> type[Message]:
        """The generated protobuf class of a type's payload (from motcua-contracts)."""
        return message_class(self.event(event_type).message)


def message_class(full_name: str) -> type[Message]:
    """The generated class of a protobuf message, importing its package's ``*_pb2`` modules."""
    package = full_name.rsplit(".", 1)[0]
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise RegistryError(
            f"no generated package {package} for {full_name} "
            "(is motcua-contracts installed and current?)"
        ) from None
    for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
        if info.name.endswith("_pb2"):
            importlib.import_module(f"{package}.{info.name}")
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(full_name)
    except KeyError:
        raise RegistryError(f"no protobuf message {full_name} in motcua-contracts") from None
    cls: type[Message] = message_factory.GetMessageClass(descriptor)
    return cls


def _render_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ""
        for item in err["loc"]:
            loc += f"[{item}]" if isinstance(item, int) else (f".{item}" if loc else str(item))
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{loc or 'registry'}: {msg}")
    return "; ".join(parts)


def parse_registry(data: Mapping[str, Any], origin: str = "registry") -> TopicRegistry:
    """Validate already-parsed registry data; errors name the place in the file."""
    try:
        return TopicRegistry.model_validate(dict(data))
    except ValidationError as exc:
        raise RegistryError(f"{origin}: {_render_error(exc)}") from None


def _yaml_mapping(text: str, origin: str) -> Any:
    """YAML → data, refusing duplicate mapping keys (PyYAML would keep the last silently)."""
    try:
        import yaml
    except ImportError:  # the packaged copy is JSON; YAML is only for the repository's file
        raise RegistryError(f"{origin}: reading YAML needs PyYAML; use the JSON copy") from None

    class _StrictLoader(yaml.SafeLoader):
        pass

    def _mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in out:
                raise RegistryError(
                    f"{origin}: line {key_node.start_mark.line + 1}: key {key!r} is given twice"
                )
            out[key] = loader.construct_object(value_node, deep=True)
        return out

    _StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        raise RegistryError(f"{origin}: not YAML: {exc}") from None


def read_registry_data(path: Path | str) -> dict[str, Any]:
    """The raw data of a registry file (YAML, or JSON when it ends in ``.json``)."""
    origin = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError(f"cannot read the topic registry {origin}: {exc}") from None
    if origin.endswith(".json"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise RegistryError(f"{origin}: not JSON: {exc}") from None
    else:
        data = _yaml_mapping(text, origin)
    if not isinstance(data, dict):
        raise RegistryError(f"{origin}: the registry is a mapping at the top level")
    return data


def load_registry(path: Path | str | None = None) -> TopicRegistry:
    """Read and validate a registry file: ``path``, else ``$MOTCUA_TOPIC_REGISTRY``, else the
    copy packaged with the kit."""
    chosen = path if path is not None else os.environ.get(REGISTRY_ENV) or None
    if chosen is not None:
        return parse_registry(read_registry_data(chosen), str(chosen))
    packaged = resources.files("motcua_kit").joinpath(PACKAGED_NAME)
    data = json.loads(packaged.read_text(encoding="utf-8"))
    return parse_registry(data, f"motcua_kit/{PACKAGED_NAME}")


@functools.cache
def default_registry() -> TopicRegistry:
    """The registry the process runs with (read once)."""
    return load_registry()
