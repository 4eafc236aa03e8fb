"""Signed documents the citizen is sent (issue 18): which kinds, the link, the attachment rule.

The dossier service's ``document_issued`` event names a document by id, kind, size and SHA-256
(never its bytes). For the receipt slip and the result, notify emails the citizen the signed
PDF and texts them where to fetch it; the other forms are news the status notices already
bring (docs/adr/0088). The event is the authority on the bytes: what the dossier service
serves must have exactly its size and SHA-256, or nothing is sent with it.
"""

from __future__ import annotations

import hashlib
import re
import string
import unicodedata
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from urllib.parse import quote

# DocumentKind (protos/motcua/dossier/v1/dossier.proto) in notify's words.
RECEIPT, SUPPLEMENT_REQUEST, REFUSAL, APOLOGY, CONTROL_SHEET, RESULT = (
    "receipt",
    "supplement_request",
    "refusal",
    "apology",
    "control_sheet",
    "result",
)
# The kinds whose issue is a notice of its own, and how that notice names the paper.
NOTIFIED_KINDS: dict[str, str] = {
    RECEIPT: "Giấy tiếp nhận hồ sơ",
    RESULT: "Kết quả giải quyết hồ sơ",
}
LINK_FIELDS = frozenset({"dossier_code", "document_id"})
# The longest dossier code and document id a link is checked for (ids are opaque; the dossier
# service's are 32 hex digits). A longer one still makes a whole link, as a long pay link does.
LONGEST_VALUES = {"dossier_code": 32, "document_id": 40}
_UNSAFE_FILENAME = re.compile(r'[\\/:*?"<>|\x00-\x1f\x7f]+')


class DocumentError(ValueError):
    """A document notice cannot be built as configured (the message says why)."""


@dataclass(frozen=True)
class DocumentRef:
    """What the event says of one issued document: enough to fetch it and check the bytes."""

    id: str
    dossier_code: str
    kind: str
    filename: str
    media_type: str
    size_bytes: int
    sha256: str

    def payload(self, *, attach: bool) -> dict[str, object]:
        """How the email intent remembers it (JSON in the notifications table)."""
        return {**asdict(self), "attach": attach}

    @classmethod
    def from_payload(cls, raw: Mapping[str, object]) -> DocumentRef:
        size = raw.get("size_bytes", 0)
        return cls(
            id=str(raw.get("id", "")),
            dossier_code=str(raw.get("dossier_code", "")),
            kind=str(raw.get("kind", "")),
            filename=str(raw.get("filename", "")),
            media_type=str(raw.get("media_type", "")),
            size_bytes=size if isinstance(size, int) else int(str(size) or 0),
            sha256=str(raw.get("sha256", "")).lower(),
        )

    @property
    def attachment_name(self) -> str:
        """A safe file name for the attachment: the document's own, without path or control
        characters, always ending in .pdf."""
        name = unicodedata.normalize("NFC", self.filename).rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
        name = _UNSAFE_FILENAME.sub("_", name).strip(" ._")[:200]
        if not name:
            name = f"{self.dossier_code}-{self.kind}" if self.dossier_code else self.id
        return name if name.lower().endswith(".pdf") else f"{name}.pdf"


def check_link_template(template: str) -> str:
    """Refuse a link template that is not an http(s) URL or uses other fields than
    ``{dossier_code}`` and ``{document_id}``; returns it."""
    if not template.startswith(("https://", "http://")):
        raise DocumentError("the document link template must be an http(s) URL")
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise DocumentError(f"the document link template is malformed: {exc}") from exc
    unknown = sorted(fields - LINK_FIELDS)
    if unknown:
        raise DocumentError(
            f"the document link template may use only {{dossier_code}} and {{document_id}}, "
            f"not {', '.join('{' + f + '}' for f in unknown)}"
        )
    return template


def document_link(template: str, dossier_code: str, document_id: str) -> str:
    """Where the citizen fetches the document on the portal (values URL-quoted)."""
    return template.format(
        dossier_code=quote(dossier_code, safe=""), document_id=quote(document_id, safe="")
    )


def longest_link(template: str) -> int:
    """The longest link the template makes for the longest code and id it is checked for."""
    return len(template.format(**{k: "W" * n for k, n in LONGEST_VALUES.items()}))


def format_size(size: int) -> str:
    """``10485760`` → ``10 MB``, ``52113`` → ``51 KB`` (how a notice states a file's size)."""
    if size >= 1024 * 1024:
        mb = size / (1024 * 1024)
        return f"{mb:.1f}".rstrip("0").rstrip(".").replace(".", ",") + " MB"
    return f"{max(size // 1024, 1)} KB"


def mismatch(ref: DocumentRef, data: bytes) -> str:
    """Why ``data`` is not the document the event names ("" when it is)."""
    if len(data) != ref.size_bytes:
        return f"document {ref.id}: served {len(data)} bytes, the event says {ref.size_bytes}"
    digest = hashlib.sha256(data).hexdigest()
    if digest != ref.sha256:
        return f"document {ref.id}: served bytes have SHA-256 {digest}, the event says {ref.sha256}"
    return ""


@dataclass(frozen=True)
class DocumentNotice:
    """The template values and the email's attachment record of one notified document."""

    values: dict[str, str]
    attachment: dict[str, object]


@dataclass(frozen=True)
class DocumentNotices:
    """How issued documents become notices: the portal link and the attachment cap."""

    link_template: str
    max_attachment_bytes: int

    def notice(self, ref: DocumentRef) -> DocumentNotice | None:
        """The notice of ``ref``; None for a kind the status notices already tell of."""
        name = NOTIFIED_KINDS.get(ref.kind)
        if name is None:
            return None
        attach = 0 < ref.size_bytes <= self.max_attachment_bytes
        values = {
            "document_kind": ref.kind,
            "document_name": name,
            "document_link": document_link(self.link_template, ref.dossier_code, ref.id),
            "document_filename": ref.attachment_name,
            "document_size": format_size(ref.size_bytes),
            "document_attached": "có" if attach else "",
            "attachment_limit": format_size(self.max_attachment_bytes),
        }
        return DocumentNotice(values, ref.payload(attach=attach))
