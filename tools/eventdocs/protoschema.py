"""Protobuf message descriptors → JSON Schema (draft-07, the AsyncAPI schema format).

The schemas describe a payload through protobuf's JSON mapping with proto field names (what
``MessageToDict(..., preserving_proto_field_name=True)`` prints): 64-bit integers are decimal
strings, enums their value names, ``Timestamp`` an RFC 3339 string, ``bytes`` base64. On the
wire the payload is binary protobuf (``application/protobuf``); the schema is its documentation
and what the contract tests check emitted payloads against.

Every message, enum and field reachable from an event payload must be documented: by its
comment in the .proto file, or — until its owner writes that comment — by an entry in
``field_docs.yaml``. A missing description is a problem the generator refuses to paper over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from tools.eventdocs.protodocs import ProtoDocs

SCHEMA_REF = "#/components/schemas/"
RFC3339 = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})$"
)
INT64 = r"^-?[0-9]+$"
UINT64 = r"^[0-9]+$"

_FD = FieldDescriptor
_INT32 = {_FD.TYPE_INT32, _FD.TYPE_SINT32, _FD.TYPE_SFIXED32}
_UINT32 = {_FD.TYPE_UINT32, _FD.TYPE_FIXED32}
_INT64 = {_FD.TYPE_INT64, _FD.TYPE_SINT64, _FD.TYPE_SFIXED64}
_UINT64 = {_FD.TYPE_UINT64, _FD.TYPE_FIXED64}
_TYPE_NAMES = {
    value: name.removeprefix("TYPE_").lower()
    for name, value in vars(_FD).items()
    if name.startswith("TYPE_") and isinstance(value, int)
}

_WRAPPERS: dict[str, dict[str, Any]] = {
    "google.protobuf.DoubleValue": {"type": "number"},
    "google.protobuf.FloatValue": {"type": "number"},
    "google.protobuf.Int64Value": {"type": "string", "pattern": INT64},
    "google.protobuf.UInt64Value": {"type": "string", "pattern": UINT64},
    "google.protobuf.Int32Value": {"type": "integer"},
    "google.protobuf.UInt32Value": {"type": "integer", "minimum": 0},
    "google.protobuf.BoolValue": {"type": "boolean"},
    "google.protobuf.StringValue": {"type": "string"},
    "google.protobuf.BytesValue": {"type": "string", "contentEncoding": "base64"},
}
WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {
        "type": "string",
        "format": "date-time",
        "pattern": RFC3339,
        "x-protobuf-type": "google.protobuf.Timestamp",
    },
    "google.protobuf.Duration": {
        "type": "string",
        "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$",
        "x-protobuf-type": "google.protobuf.Duration",
    },
    "google.protobuf.Empty": {"type": "object", "maxProperties": 0},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Any": {
        "type": "object",
        "required": ["@type"],
        "properties": {"@type": {"type": "string"}},
    },
    **_WRAPPERS,
}


def message_type(fd: FieldDescriptor) -> Descriptor:
    """The message type of a message field (typed: the stubs allow None)."""
    assert fd.message_type is not None, fd.full_name
    return fd.message_type


def enum_type(fd: FieldDescriptor) -> EnumDescriptor:
    assert fd.enum_type is not None, fd.full_name
    return fd.enum_type


def _type_name(fd: FieldDescriptor) -> str:
    """The field's type as the .proto spells it (without repeated)."""
    if fd.type == _FD.TYPE_MESSAGE:
        return str(message_type(fd).full_name)
    if fd.type == _FD.TYPE_ENUM:
        return str(enum_type(fd).full_name)
    return _TYPE_NAMES[fd.type]


def component_ref(full_name: str) -> dict[str, str]:
    return {"$ref": SCHEMA_REF + full_name}


def _proto_file(descriptor: Descriptor | EnumDescriptor) -> str:
    return f"protos/{descriptor.file.name}"


@dataclass
class SchemaBuilder:
    """Builds component schemas for messages and enums, collecting documentation problems."""

    docs: ProtoDocs
    overlay: dict[str, str] = field(default_factory=dict)
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    used_overlay: set[str] = field(default_factory=set)

    # -- documentation -------------------------------------------------------------------------
    def describe(self, full_name: str, what: str, proto_file: str) -> str:
        """The element's documentation; a missing one is recorded as a problem."""
        comment = self.docs.comment(full_name)
        extra = self.overlay.get(full_name, "").strip()
        if extra:
            self.used_overlay.add(full_name)
            if comment:
                self.problems.append(
                    f"{full_name}: documented in {proto_file} now; remove its entry from "
                    "field_docs.yaml"
                )
            return comment or extra
        if not comment:
            self.problems.append(
                f"{full_name} ({what} in {proto_file}) has no documentation: write a comment "
                "above it in the .proto file"
            )
        return comment

    def unused_overlay(self) -> list[str]:
        return sorted(set(self.overlay) - self.used_overlay)

    # -- schemas -------------------------------------------------------------------------------
    def message(self, descriptor: Descriptor) -> dict[str, Any]:
        """A reference to the message's component schema, building it (and its parts) once."""
        name = descriptor.full_name
        if name in WELL_KNOWN:
            return dict(WELL_KNOWN[name])
        if name not in self.schemas:
            self.schemas[name] = {}  # placeholder: recursive messages refer to themselves
            self._check_generated(descriptor)
            proto_file = _proto_file(descriptor)
            properties: dict[str, Any] = {}
            for fd in descriptor.fields:
                properties[fd.name] = self._field(descriptor, fd)
            self.schemas[name] = {
                "type": "object",
                "title": descriptor.name,
                "description": self.describe(name, "message", proto_file),
                "x-protobuf-message": name,
                "x-protobuf-file": proto_file,
                "properties": properties,
            }
        return component_ref(name)

    def enum(self, descriptor: EnumDescriptor) -> dict[str, Any]:
        name = descriptor.full_name
        if name not in self.schemas:
            proto_file = _proto_file(descriptor)
            values = [v.name for v in descriptor.values]
            value_docs = {
                v.name: self.docs.comment(f"{name}.{v.name}")
                for v in descriptor.values
                if self.docs.comment(f"{name}.{v.name}")
            }
            schema: dict[str, Any] = {
                "type": "string",
                "title": descriptor.name,
                "description": self.describe(name, "enum", proto_file),
                "enum": values,
                "x-protobuf-enum": name,
                "x-protobuf-file": proto_file,
                "x-protobuf-values": {v.name: v.number for v in descriptor.values},
            }
            if value_docs:
                schema["x-protobuf-value-descriptions"] = value_docs
            self.schemas[name] = schema
        return component_ref(name)

    def _scalar(self, fd: FieldDescriptor) -> dict[str, Any]:
        t = fd.type
        if t == _FD.TYPE_MESSAGE:
            return self.message(message_type(fd))
        if t == _FD.TYPE_ENUM:
            return self.enum(enum_type(fd))
        if t == _FD.TYPE_STRING:
            return {"type": "string"}
        if t == _FD.TYPE_BOOL:
            return {"type": "boolean"}
        if t == _FD.TYPE_BYTES:
            return {"type": "string", "contentEncoding": "base64"}
        if t in (_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT):
            return {"type": "number"}
        if t in _INT32:
            return {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
        if t in _UINT32:
            return {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}
        if t in _INT64:
            return {"type": "string", "format": "int64", "pattern": INT64}
        if t in _UINT64:
            return {"type": "string", "format": "uint64", "pattern": UINT64}
        raise ValueError(f"{fd.full_name}: unsupported protobuf field type {t}")

    def _field(self, owner: Descriptor, fd: FieldDescriptor) -> dict[str, Any]:
        is_map = fd.type == _FD.TYPE_MESSAGE and message_type(fd).GetOptions().map_entry
        type_name = _type_name(fd)
        if is_map:
            entry = message_type(fd)
            value_fd = entry.fields_by_name["value"]
            shape: dict[str, Any] = {
                "type": "object",
                "additionalProperties": self._scalar(value_fd),
            }
            type_name = f"map<{_type_name(entry.fields_by_name['key'])}, {_type_name(value_fd)}>"
        elif fd.is_repeated:
            shape = {"type": "array", "items": self._scalar(fd)}
            type_name = f"repeated {type_name}"
        else:
            shape = self._scalar(fd)
        out: dict[str, Any] = {
            "description": self.describe(
                fd.full_name, f"field of {owner.full_name}", _proto_file(owner)
            ),
        }
        if "$ref" in shape:
            out["allOf"] = [shape]  # draft-07 ignores siblings of $ref, so wrap it
        else:
            shape.pop("x-protobuf-type", None)
            out.update(shape)
        out["x-protobuf-field-number"] = fd.number
        out["x-protobuf-type"] = type_name
        oneof = fd.containing_oneof
        if oneof is not None:
            if oneof.name == f"_{fd.name}" and len(oneof.fields) == 1:
                out["x-protobuf-presence"] = "explicit"  # proto3 `optional`
            else:
                out["x-protobuf-oneof"] = oneof.name
        return out

    # -- generated code and protos agree -------------------------------------------------------
    def _check_generated(self, descriptor: Descriptor) -> None:
        compiled = self.docs.files.get(descriptor.file.name)
        if compiled is None:
            return  # e.g. a well-known type's file, not compiled from protos/
        generated = descriptor_pb2.DescriptorProto()
        descriptor.CopyToProto(generated)
        source = _find_message(compiled, descriptor.full_name)
        if source is None or _shape(source) != _shape(generated):
            self.problems.append(
                f"{descriptor.full_name}: the generated code in packages/contracts differs from "
                f"{descriptor.file.name}; run `make generate`"
            )


def _find_message(
    file: descriptor_pb2.FileDescriptorProto, full_name: str
) -> descriptor_pb2.DescriptorProto | None:
    prefix = f"{file.package}."
    if not full_name.startswith(prefix):
        return None
    parts = full_name[len(prefix) :].split(".")
    candidates = list(file.message_type)
    found = None
    for part in parts:
        found = next((m for m in candidates if m.name == part), None)
        if found is None:
            return None
        candidates = list(found.nested_type)
    return found


def _shape(message: descriptor_pb2.DescriptorProto) -> list[tuple[Any, ...]]:
    return sorted(
        (f.name, f.number, f.type, f.label, f.type_name.lstrip("."), f.proto3_optional)
        for f in message.field
    )
