"""The forms' wording, loaded from forms.yaml: data, like the notify templates.

Loading checks every placeholder against ``FormContent.context()`` once, so a typo in the
YAML fails at start-up (and in the unit tests), not on a citizen's form.
"""

from __future__ import annotations

import string
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from motcua_documents.model import FormContent, FormKind

CONTEXT_FIELDS = {
    "number",
    "place",
    "issued_on",
    "agency_name",
    "agency_parent",
    "dossier_code",
    "procedure",
    "applicant_name",
    "applicant_address",
    "applicant_phone",
    "applicant_email",
    "officer_name",
    "officer_title",
    "officer_phone",
    "received_at",
    "appointment",
    "new_appointment",
    "working_days",
    "dossier_sets",
    "reason",
    "result_channel",
    "form_number",
}
ITEM_FIELDS = {
    "documents": {"index", "name", "kind", "copies"},
    "requested": {"index", "text"},
    "handovers": {"index", "giver", "receiver", "at", "outcome", "note"},
}


class TemplateError(ValueError):
    """forms.yaml is malformed: the message names the form and the item."""


@dataclass(frozen=True)
class Item:
    """One body item: a paragraph, a bold heading, a repeated line, or a conditional line."""

    line: str
    each: str = ""
    when: str = ""
    heading: bool = False


@dataclass(frozen=True)
class FormTemplate:
    """One form of the circular's annex."""

    kind: FormKind
    form_number: str
    title: str
    requires: tuple[str, ...]
    body: tuple[Item, ...]
    signatures: tuple[str, ...]


@dataclass(frozen=True)
class Templates:
    """The national header's lines and the five forms."""

    header: dict[str, str]
    forms: dict[FormKind, FormTemplate]


def _nfc(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise TemplateError(f"{where}: must be text")
    return unicodedata.normalize("NFC", value)


def _check(line: str, allowed: set[str], where: str) -> None:
    for _, name, _, _ in string.Formatter().parse(line):
        if name is not None and name not in allowed:
            raise TemplateError(f"{where}: unknown placeholder {{{name}}}")


def parse(text: str) -> Templates:
    """Parse and check a forms.yaml text."""
    raw = yaml.safe_load(text)
    if not isinstance(raw, dict) or "header" not in raw or "forms" not in raw:
        raise TemplateError("forms.yaml: needs 'header' and 'forms'")
    header = {k: _nfc(v, f"header.{k}") for k, v in raw["header"].items()}
    for key in ("nation", "motto", "number", "place_date", "form_number", "signature_note"):
        if key not in header:
            raise TemplateError(f"header.{key}: is missing")
        _check(header[key], CONTEXT_FIELDS, f"header.{key}")
    forms: dict[FormKind, FormTemplate] = {}
    for kind in FormKind:
        spec = raw["forms"].get(kind.value)
        where = f"forms.{kind.value}"
        if not isinstance(spec, dict):
            raise TemplateError(f"{where}: is missing")
        requires = tuple(spec.get("requires", ()))
        for name in requires:
            if name not in FormContent.__dataclass_fields__:
                raise TemplateError(f"{where}.requires: {name} is not a field of a form")
        body: list[Item] = []
        for i, item in enumerate(spec.get("body", ())):
            at = f"{where}.body[{i}]"
            if isinstance(item, str):
                body.append(Item(line=_nfc(item, at)))
            elif isinstance(item, dict) and "heading" in item:
                body.append(Item(line=_nfc(item["heading"], at), heading=True))
            elif isinstance(item, dict) and "each" in item:
                if item["each"] not in ITEM_FIELDS:
                    raise TemplateError(f"{at}.each: {item['each']} is not a list of a form")
                line = _nfc(item.get("line"), at)
                _check(line, ITEM_FIELDS[item["each"]], at)
                body.append(Item(line=line, each=item["each"]))
                continue
            elif isinstance(item, dict) and "when" in item:
                if item["when"] not in CONTEXT_FIELDS:
                    raise TemplateError(f"{at}.when: {item['when']} is not a field")
                body.append(Item(line=_nfc(item.get("line"), at), when=item["when"]))
            else:
                raise TemplateError(f"{at}: must be text or one of heading/each/when")
            _check(body[-1].line, CONTEXT_FIELDS, at)
        forms[kind] = FormTemplate(
            kind=kind,
            form_number=_nfc(spec.get("form_number"), f"{where}.form_number"),
            title=_nfc(spec.get("title"), f"{where}.title"),
            requires=requires,
            body=tuple(body),
            signatures=tuple(_nfc(s, f"{where}.signatures") for s in spec.get("signatures", ())),
        )
    return Templates(header=header, forms=forms)


@cache
def load() -> Templates:
    """The packaged forms.yaml, parsed once."""
    return parse(resources.files("motcua_documents").joinpath("forms.yaml").read_text("utf-8"))
