"""Message templates as data: Jinja2 text per event kind and channel, checked when loaded.

The catalogue (``data/templates.yaml``) declares the variables a template may use, each with
the most characters it may take in an SMS, and the templates: which event types they answer
and their text per channel. Loading refuses, naming the template, anything that would only
fail later: a syntax error, an undeclared variable, a variable the template's events do not
provide, or an SMS whose worst case (every variable at its longest) needs more segments than
allowed. At render time values are cut to their declared length, so what was checked at load
is what is sent.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2 import StrictUndefined, TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment

from motcua_notify.domain.sms import Encoding, SmsText, plain_gsm7, sms_text, to_gsm7
from motcua_notify.domain.states import Channel

DEFAULT_FILE = Path(__file__).resolve().parents[1] / "data" / "templates.yaml"
MAX_VALUE_CHARS = 2000  # any value, any channel: a reason is text, not a document
ELLIPSIS = "…"


class TemplateCatalogueError(ValueError):
    """The catalogue is invalid; the message names the template (``receipt.sms``) at fault."""


@dataclass(frozen=True)
class Variable:
    name: str
    sms_max_length: int
    description: str = ""
    #: A link is never cut (a cut URL leads nowhere): ``sms_max_length`` is then the length
    #: the segment check assumes, and the value must be made short at its source.
    link: bool = False


@dataclass(frozen=True)
class EmailTemplate:
    subject: str
    body: str


@dataclass(frozen=True)
class SmsTemplate:
    body: str
    max_segments: int
    worst_case: SmsText  # the longest the template can render, both encodings


@dataclass(frozen=True)
class ZaloTemplate:
    template_id: str  # the template registered with the Zalo-style provider
    params: tuple[str, ...]  # variables sent as the provider template's parameters
    body: str  # the same text, for the record and the preview


@dataclass(frozen=True)
class Template:
    """One kind of notice (receipt, supplement requested, …) in every channel it is sent on."""

    name: str
    description: str
    events: tuple[str, ...]
    email: EmailTemplate | None = None
    sms: SmsTemplate | None = None
    zalo: ZaloTemplate | None = None

    @property
    def channels(self) -> tuple[Channel, ...]:
        pairs = ((Channel.EMAIL, self.email), (Channel.SMS, self.sms), (Channel.ZALO, self.zalo))
        return tuple(c for c, t in pairs if t is not None)


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    body: str


@dataclass(frozen=True)
class RenderedZalo:
    template_id: str
    params: dict[str, str]
    body: str


@dataclass
class TemplateCatalogue:
    """Templates by name and by the event type that triggers them."""

    templates: dict[str, Template]
    variables: dict[str, Variable]
    encoding: Encoding
    segment_limit: int
    _by_event: dict[str, Template] = field(default_factory=dict)
    _env: SandboxedEnvironment = field(default_factory=lambda: _environment())
    # Each template's source compiled once, on first use (compiling costs far more than
    # rendering; the catalogue is fixed once loaded, so this holds every source at most once).
    _compiled: dict[str, jinja2.Template] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for template in self.templates.values():
            for event_type in template.events:
                self._by_event[event_type] = template

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        path: Path | None = None,
        *,
        segment_limit: int,
        encoding: Encoding = Encoding.GSM7,
        provided: Mapping[str, frozenset[str]] | None = None,
    ) -> TemplateCatalogue:
        """Read and check the catalogue; ``provided`` maps event type → variables it brings."""
        source = path or DEFAULT_FILE
        try:
            doc = yaml.safe_load(source.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise TemplateCatalogueError(f"{source}: cannot read templates: {exc}") from exc
        return cls.from_document(
            doc, segment_limit=segment_limit, encoding=encoding, provided=provided
        )

    @classmethod
    def from_document(
        cls,
        doc: Any,
        *,
        segment_limit: int,
        encoding: Encoding = Encoding.GSM7,
        provided: Mapping[str, frozenset[str]] | None = None,
    ) -> TemplateCatalogue:
        if segment_limit < 1:
            raise TemplateCatalogueError(f"segment limit must be at least 1, not {segment_limit}")
        if not isinstance(doc, dict):
            raise TemplateCatalogueError("templates: the document must be a mapping")
        variables = _variables(doc.get("variables"))
        env = _environment()
        raw_templates = doc.get("templates")
        if not isinstance(raw_templates, dict) or not raw_templates:
            raise TemplateCatalogueError("templates: at least one template is required")
        templates: dict[str, Template] = {}
        seen_events: dict[str, str] = {}
        for name, raw in raw_templates.items():
            template = _template(str(name), raw, variables, env, segment_limit, encoding)
            for event_type in template.events:
                if event_type in seen_events:
                    raise TemplateCatalogueError(
                        f"template {name!r}: event {event_type} is already answered by "
                        f"template {seen_events[event_type]!r}"
                    )
                seen_events[event_type] = template.name
                if provided is not None:
                    _check_provided(template, event_type, provided, env)
            templates[template.name] = template
        return cls(templates, variables, encoding, segment_limit, _env=env)

    # -- use ---------------------------------------------------------------------------------
    def for_event(self, event_type: str) -> Template | None:
        return self._by_event.get(event_type)

    def render_email(self, template: Template, values: Mapping[str, str]) -> RenderedEmail:
        assert template.email is not None
        context = self._unicode_values(values)
        subject = " ".join(self._render(template.email.subject, context).split())
        return RenderedEmail(subject, self._render(template.email.body, context).strip() + "\n")

    def render_sms(self, template: Template, values: Mapping[str, str]) -> SmsText:
        """Both forms of the SMS, each with its variables cut to their SMS length."""
        assert template.sms is not None
        limits = {v.name: v.sms_max_length for v in self.variables.values()}
        unicode_values = {
            k: self._cut(k, _nfc(v), limits.get(k, MAX_VALUE_CHARS), ELLIPSIS)
            for k, v in values.items()
        }
        links = {v.name for v in self.variables.values() if v.link}
        gsm_values = {
            # A link keeps every character: a plainer "~" or "|" would lead elsewhere.
            k: v if k in links else _cut(plain_gsm7(v), limits.get(k, MAX_VALUE_CHARS), "...")
            for k, v in values.items()
        }
        unicode_text = _one_line(self._render(template.sms.body, unicode_values))
        gsm_text = to_gsm7(_one_line(self._render(template.sms.body, gsm_values)))
        return sms_text(unicode_text, gsm_text)

    def render_zalo(self, template: Template, values: Mapping[str, str]) -> RenderedZalo:
        assert template.zalo is not None
        context = self._unicode_values(values)
        params = {p: context.get(p, "") for p in template.zalo.params}
        return RenderedZalo(
            template.zalo.template_id, params, self._render(template.zalo.body, context).strip()
        )

    def sms_report(self) -> list[tuple[str, int, int, int]]:
        """(template, worst-case GSM-7 characters, GSM-7 segments, UCS-2 segments)."""
        return [
            (
                f"{t.name}.sms",
                len(t.sms.worst_case.gsm7_text),
                t.sms.worst_case.gsm7_segments,
                t.sms.worst_case.unicode_segments,
            )
            for t in self.templates.values()
            if t.sms is not None
        ]

    def _unicode_values(self, values: Mapping[str, str]) -> dict[str, str]:
        return {k: self._cut(k, _nfc(v), MAX_VALUE_CHARS, ELLIPSIS) for k, v in values.items()}

    def _cut(self, name: str, value: str, limit: int, ellipsis: str) -> str:
        variable = self.variables.get(name)
        return value if variable is not None and variable.link else _cut(value, limit, ellipsis)

    def _render(self, source: str, context: Mapping[str, str]) -> str:
        compiled = self._compiled.get(source)
        if compiled is None:
            compiled = self._compiled[source] = self._env.from_string(source)
        return compiled.render(**context)


# -- helpers -------------------------------------------------------------------------------------
def _environment() -> SandboxedEnvironment:
    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, trim_blocks=True)


def _nfc(value: str) -> str:
    """A value as a message may show it: controls become spaces, and format characters (bidi
    overrides, zero-width spaces) go, so no older record can make a message read otherwise."""
    text = unicodedata.normalize("NFC", value)
    return "".join(_shown(ch) for ch in text)


def _shown(ch: str) -> str:
    category = unicodedata.category(ch)
    if category == "Cc" and ch != "\n":
        return " "
    return "" if category == "Cf" else ch


def _cut(value: str, limit: int, ellipsis: str) -> str:
    """At most ``limit`` characters, marking a cut with ``ellipsis``."""
    if len(value) <= limit:
        return value
    keep = max(limit - len(ellipsis), 0)
    return value[:keep].rstrip() + ellipsis[: limit - keep]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _variables(raw: Any) -> dict[str, Variable]:
    if not isinstance(raw, dict) or not raw:
        raise TemplateCatalogueError("variables: a mapping of declared variables is required")
    out: dict[str, Variable] = {}
    for name, spec in raw.items():
        if not isinstance(spec, dict):
            raise TemplateCatalogueError(f"variable {name!r}: must be a mapping")
        length = spec.get("sms_max_length")
        if not isinstance(length, int) or not 1 <= length <= MAX_VALUE_CHARS:
            raise TemplateCatalogueError(
                f"variable {name!r}: sms_max_length must be an integer 1..{MAX_VALUE_CHARS}"
            )
        link = spec.get("link", False)
        if not isinstance(link, bool):
            raise TemplateCatalogueError(f"variable {name!r}: link must be true or false")
        out[str(name)] = Variable(str(name), length, str(spec.get("description", "")), link)
    return out


def _text(name: str, raw: Any, key: str, required: bool = True) -> str:
    value = raw.get(key) if isinstance(raw, dict) else None
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise TemplateCatalogueError(f"template {name!r}: {key} is required (text)")
    return unicodedata.normalize("NFC", value)


def _check_source(
    label: str, source: str, variables: Mapping[str, Variable], env: SandboxedEnvironment
) -> set[str]:
    """Compile ``source``; return the variables it uses, refusing undeclared ones."""
    try:
        used = meta.find_undeclared_variables(env.parse(source))
    except TemplateError as exc:
        raise TemplateCatalogueError(f"template {label!r}: {exc}") from exc
    unknown = sorted(used - set(variables))
    if unknown:
        raise TemplateCatalogueError(
            f"template {label!r}: uses undeclared variable(s) {', '.join(unknown)}"
        )
    return set(used)


def _template(
    name: str,
    raw: Any,
    variables: Mapping[str, Variable],
    env: SandboxedEnvironment,
    segment_limit: int,
    encoding: Encoding,
) -> Template:
    if not isinstance(raw, dict):
        raise TemplateCatalogueError(f"template {name!r}: must be a mapping")
    events = raw.get("events")
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise TemplateCatalogueError(f"template {name!r}: events must list CloudEvents types")
    unknown_keys = set(raw) - {"description", "events", "email", "sms", "zalo"}
    if unknown_keys:
        raise TemplateCatalogueError(
            f"template {name!r}: unknown key(s) {', '.join(sorted(unknown_keys))}"
        )
    email = sms = zalo = None
    if "email" in raw:
        subject = _text(f"{name}.email", raw["email"], "subject")
        body = _text(f"{name}.email", raw["email"], "body")
        _check_source(f"{name}.email", subject, variables, env)
        _check_source(f"{name}.email", body, variables, env)
        email = EmailTemplate(subject, body)
    if "sms" in raw:
        sms = _sms_template(name, raw["sms"], variables, env, segment_limit, encoding)
    if "zalo" in raw:
        label = f"{name}.zalo"
        body = _text(label, raw["zalo"], "body")
        used = _check_source(label, body, variables, env)
        params = raw["zalo"].get("params", sorted(used))
        if not isinstance(params, list) or not set(params) <= set(variables):
            raise TemplateCatalogueError(f"template {label!r}: params must list declared variables")
        zalo = ZaloTemplate(_text(label, raw["zalo"], "template_id"), tuple(params), body)
    if email is None and sms is None and zalo is None:
        raise TemplateCatalogueError(f"template {name!r}: needs at least one of email, sms, zalo")
    return Template(
        name=name,
        description=str(raw.get("description", "")),
        events=tuple(events),
        email=email,
        sms=sms,
        zalo=zalo,
    )


def _sms_template(
    name: str,
    raw: Any,
    variables: Mapping[str, Variable],
    env: SandboxedEnvironment,
    segment_limit: int,
    encoding: Encoding,
) -> SmsTemplate:
    label = f"{name}.sms"
    body = _text(label, raw, "body")
    used = _check_source(label, body, variables, env)
    own = raw.get("max_segments", segment_limit)
    if not isinstance(own, int) or own < 1:
        raise TemplateCatalogueError(f"template {label!r}: max_segments must be a positive integer")
    limit = min(own, segment_limit)
    # Worst case: every variable at its declared SMS length (and, for templates with
    # conditions, every variable empty) — values are cut to that length when sending.
    longest = {v: "W" * variables[v].sms_max_length for v in used}
    empty = dict.fromkeys(used, "")
    probe = TemplateCatalogue({}, dict(variables), encoding, segment_limit, _env=env)
    stub = Template(name, "", (), sms=SmsTemplate(body, limit, sms_text("", "")))
    try:
        renders = [probe.render_sms(stub, longest), probe.render_sms(stub, empty)]
    except TemplateError as exc:
        raise TemplateCatalogueError(f"template {label!r}: {exc}") from exc
    worst = max(renders, key=lambda r: (r.segments(encoding), len(r.text(encoding))))
    segments = worst.segments(encoding)
    if segments > limit:
        raise TemplateCatalogueError(
            f"template {label!r} is too long: at its longest it takes {segments} "
            f"{encoding.value.upper()} segments ({len(worst.text(encoding))} characters without "
            f"diacritics: {worst.gsm7_segments} GSM-7 segments, {worst.unicode_segments} "
            f"UCS-2), over the limit of {limit}"
        )
    return SmsTemplate(body, limit, worst)


def _check_provided(
    template: Template,
    event_type: str,
    provided: Mapping[str, frozenset[str]],
    env: SandboxedEnvironment,
) -> None:
    if event_type not in provided:
        raise TemplateCatalogueError(
            f"template {template.name!r}: notify does not consume event type {event_type}"
        )
    sources = []
    if template.email:
        sources += [template.email.subject, template.email.body]
    if template.sms:
        sources.append(template.sms.body)
    if template.zalo:
        sources.append(template.zalo.body)
        params = set(template.zalo.params)
    else:
        params = set()
    used: set[str] = set(params)
    for source in sources:
        used |= meta.find_undeclared_variables(env.parse(source))
    missing = sorted(used - provided[event_type])
    if missing:
        raise TemplateCatalogueError(
            f"template {template.name!r}: event {event_type} does not provide {', '.join(missing)}"
        )
