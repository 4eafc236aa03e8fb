"""The catalogue as pages: a static HTML page and a markdown page, from the same view model.

Both show every topic, every CloudEvents type with its consumers and an example record (key,
headers, payload), and every payload message field by field with its documentation.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import jinja2

from tools.eventdocs.catalogue import (
    DEAD_LETTER_HEADERS,
    ENVELOPE_HEADERS,
    HEADERS_SCHEMA,
    Catalogue,
    EventDoc,
)

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("tools.eventdocs", "templates"),
    autoescape=jinja2.select_autoescape(["html.j2"]),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _markdown_cell(text: str) -> str:
    """Text safe inside a markdown table cell: one line, no HTML, no column breaks."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("|", "\\|")
        .replace("\n", " ")
    )


_TEMPLATES.filters["md"] = _markdown_cell
_NAME_IN_TYPE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\.[A-Z][A-Za-z0-9_]*")


@dataclass(frozen=True)
class FieldRow:
    name: str
    type: str
    linked: str | None  # component schema the type refers to
    number: int
    description: str
    presence: str


@dataclass(frozen=True)
class SchemaView:
    name: str
    title: str
    kind: str  # message | enum
    description: str
    proto_file: str
    fields: list[FieldRow]
    values: list[tuple[str, int, str]]
    used_by: list[str]


def anchor(name: str) -> str:
    """An HTML id / markdown anchor for a type or message name."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _schema_views(catalogue: Catalogue) -> list[SchemaView]:
    used: dict[str, list[str]] = {}
    for doc in catalogue.events:
        used.setdefault(doc.message, []).append(doc.spec.type)
    views = []
    for name, schema in catalogue.schemas.items():
        if name == HEADERS_SCHEMA:
            continue
        if "enum" in schema:
            docs = schema.get("x-protobuf-value-descriptions", {})
            values = [(v, n, docs.get(v, "")) for v, n in schema["x-protobuf-values"].items()]
            views.append(
                SchemaView(
                    name,
                    schema["title"],
                    "enum",
                    schema["description"],
                    schema["x-protobuf-file"],
                    [],
                    values,
                    [],
                )
            )
            continue
        rows = []
        for field_name, prop in schema["properties"].items():
            type_name = prop["x-protobuf-type"]
            match = _NAME_IN_TYPE.search(type_name)
            linked = match.group(0) if match and match.group(0) in catalogue.schemas else None
            presence = (
                "optional"
                if prop.get("x-protobuf-presence") == "explicit"
                else f"oneof {prop['x-protobuf-oneof']}"
                if "x-protobuf-oneof" in prop
                else ""
            )
            rows.append(
                FieldRow(
                    field_name,
                    type_name,
                    linked,
                    prop["x-protobuf-field-number"],
                    prop["description"],
                    presence,
                )
            )
        views.append(
            SchemaView(
                name,
                schema["title"],
                "message",
                schema["description"],
                schema["x-protobuf-file"],
                rows,
                [],
                used.get(name, []),
            )
        )
    # Payload messages first, then what they contain, each group by name.
    return sorted(views, key=lambda v: (not v.used_by, v.kind != "message", v.name))


def _view(catalogue: Catalogue) -> dict[str, Any]:
    registry = catalogue.registry

    def example(doc: EventDoc) -> dict[str, str]:
        return {
            "key": registry.key.example,
            "headers": json.dumps(doc.headers, indent=2, ensure_ascii=False),
            "payload": json.dumps(doc.payload, indent=2, ensure_ascii=False),
        }

    return {
        "registry": registry,
        "catalogue": catalogue,
        "topics": registry.topics,
        "events": catalogue.events,
        "events_of": catalogue.events_of,
        "example": example,
        "schemas": _schema_views(catalogue),
        "envelope": ENVELOPE_HEADERS,
        "dead_letter_headers": DEAD_LETTER_HEADERS,
        "anchor": anchor,
        "systems": registry.systems,
    }


def render_html(catalogue: Catalogue) -> str:
    return _TEMPLATES.get_template("index.html.j2").render(**_view(catalogue))


def render_markdown(catalogue: Catalogue) -> str:
    return _TEMPLATES.get_template("README.md.j2").render(**_view(catalogue))
