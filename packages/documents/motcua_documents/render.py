"""Draw a form to PDF with reportlab: A5 as the circular prescribes, DejaVu fonts embedded.

The output is deterministic: the creation date is the form's issue date, the document ID is
derived from the content, and reportlab's invariant mode leaves out everything else that
changes between runs. So the same content always gives the same bytes and the same hash.

The QR code holds the dossier code and the SHA-256 of the unsigned rendering drawn without
the QR square (a file cannot hold its own hash): ``render(content).body_sha256``. Anyone with
the form's content can redraw that body with ``render_body`` and compare.
"""

from __future__ import annotations

import hashlib
import io
import os
import string
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from urllib.parse import quote

from reportlab.graphics.barcode.qr import QrCode
from reportlab.lib.pagesizes import A5
from reportlab.lib.utils import simpleSplit
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

from motcua_documents.model import FormContent
from motcua_documents.templates import FormTemplate, Templates, load

FONT_DIR = Path(os.environ.get("MOTCUA_FONT_DIR", "/usr/share/fonts/truetype/dejavu"))
REGULAR, BOLD = "DejaVuSans", "DejaVuSans-Bold"
WIDTH, HEIGHT = A5
MARGIN = 36.0
QR_SIZE = 72.0
FOOTER = QR_SIZE + 16.0
BODY_SIZE, BODY_LEADING = 9.0, 12.5


class RenderError(ValueError):
    """The form cannot be drawn faithfully (a character the font lacks, a missing font)."""


@dataclass(frozen=True)
class Placed:
    """One line of text at its place on a page, in drawing order."""

    page: int
    text: str
    font: str
    size: float
    x: float
    y: float
    anchor: str  # "left", "center"


@dataclass(frozen=True)
class Rendering:
    """The unsigned PDF, the hash its QR code carries, and the QR payload itself."""

    pdf: bytes
    body_sha256: str
    qr_payload: str
    lines: tuple[Placed, ...]

    @property
    def text(self) -> str:
        """The form's text in reading order, one line per drawn line (what pdftotext -raw reads)."""
        return "\n".join(p.text for p in self.lines)


def _fonts() -> None:
    if REGULAR in pdfmetrics.getRegisteredFontNames():
        return
    for name, file in ((REGULAR, "DejaVuSans.ttf"), (BOLD, "DejaVuSans-Bold.ttf")):
        path = FONT_DIR / file
        if not path.is_file():
            raise RenderError(f"font {path} is missing (Debian package fonts-dejavu-core)")
        pdfmetrics.registerFont(TTFont(name, str(path)))


def _covered(text: str, font: str, where: str) -> None:
    face = pdfmetrics.getFont(font).face
    for char in text:
        if char != " " and ord(char) not in face.charToGlyph:
            raise RenderError(
                f"{where}: the font {font} has no glyph for {char!r} (U+{ord(char):04X})"
            )


def _fill(line: str, values: dict[str, str]) -> str:
    out = []
    for literal, name, _, _ in string.Formatter().parse(line):
        out.append(literal)
        if name is not None:
            out.append(values[name])
    return unicodedata.normalize("NFC", "".join(out))


def _paragraphs(template: FormTemplate, content: FormContent) -> Iterator[tuple[str, bool]]:
    ctx = content.context()
    scalars = {k: v for k, v in ctx.items() if isinstance(v, str)}
    scalars["form_number"] = template.form_number
    for item in template.body:
        if item.when and not scalars.get(item.when):
            continue
        if item.each:
            for i, entry in enumerate(ctx[item.each], start=1):
                yield _fill(item.line, {**entry, "index": str(i)}), False
            continue
        yield _fill(item.line, scalars), item.heading


def layout(content: FormContent, templates: Templates | None = None) -> tuple[Placed, ...]:
    """Where each line goes: the national header, the agency, the title, the body, signatures."""
    _fonts()
    templates = templates or load()
    template = templates.forms[content.kind]
    content.require(template.requires)
    header = templates.header
    values = {k: v for k, v in content.context().items() if isinstance(v, str)}
    values["form_number"] = template.form_number
    placed: list[Placed] = []
    page = 0
    half = (WIDTH - 2 * MARGIN) / 2

    def put(text: str, font: str, size: float, x: float, y: float, anchor: str) -> None:
        _covered(text, font, f"{content.kind.value} form")
        placed.append(Placed(page, text, font, size, x, y, anchor))

    def column(
        lines: list[tuple[str, str, float]], center: float, top: float, width: float
    ) -> float:
        y = top
        for text, font, size in lines:
            for part in simpleSplit(text, font, size, width):
                put(part, font, size, center, y, "center")
                y -= size + 3
        return y

    top = HEIGHT - MARGIN
    put(_fill(header["form_number"], values), REGULAR, 7, WIDTH - MARGIN - 40, top + 12, "center")
    left_end = column(
        [
            (content.agency.parent.upper(), REGULAR, 8),
            (content.agency.name.upper(), BOLD, 8),
            (_fill(header["number"], values), REGULAR, 8),
        ],
        MARGIN + half / 2 + 4,
        top,
        half - 4,
    )
    right_end = column(
        [
            (header["nation"], BOLD, 7.5),
            (header["motto"], BOLD, 8),
            (_fill(header["place_date"], values), REGULAR, 8),
        ],
        MARGIN + half * 1.5 + 8,
        top,
        half + 12,
    )
    y = min(left_end, right_end) - 14
    y = column([(template.title, BOLD, 11)], WIDTH / 2, y, WIDTH - 2 * MARGIN) - 8
    width = WIDTH - 2 * MARGIN
    bottom = MARGIN + FOOTER
    for text, heading in _paragraphs(template, content):
        font = BOLD if heading else REGULAR
        for part in simpleSplit(text, font, BODY_SIZE, width):
            if y < bottom:
                page, y = page + 1, HEIGHT - MARGIN
            put(part, font, BODY_SIZE, MARGIN, y, "left")
            y -= BODY_LEADING
        y -= 2
    signers = list(template.signatures)
    needed = 4 * BODY_LEADING + 20
    if y - needed < bottom:
        page, y = page + 1, HEIGHT - MARGIN
    y -= 8
    slot = width / len(signers)
    for i, title in enumerate(signers):
        center = MARGIN + slot * (i + 0.5)
        names = [content.applicant.name] if i < len(signers) - 1 else [content.officer.name]
        lines = [(title, BOLD, 8), (header["signature_note"], REGULAR, 7)]
        column([*lines, *((n, BOLD, 8) for n in names)], center, y, slot - 6)
    y -= 4 * BODY_LEADING
    put(_fill(header["digital_signature"], values), REGULAR, 7, WIDTH / 2, y, "center")
    return tuple(placed)


def _pdf(content: FormContent, placed: tuple[Placed, ...], qr_payload: str | None) -> bytes:
    buf = io.BytesIO()
    canvas = Canvas(
        buf, pagesize=A5, invariant=1, pageCompression=1, lang="vi", initialFontName=REGULAR
    )
    issued: date = content.issued_on
    stamp = f"D:{issued:%Y%m%d}000000+07'00'"
    canvas.setDateFormatter(lambda *_: stamp)
    canvas.setTitle(f"{placed[0].text} {content.dossier_code}")
    canvas.setAuthor(content.agency.name)
    canvas.setSubject(f"{content.kind.value} {content.dossier_code}")
    canvas.setCreator("motcua-documents")
    digest = hashlib.sha256(repr(content).encode("utf-8")).hexdigest()[:32].upper()
    canvas._doc._ID = f"\n[<{digest}><{digest}>]\n".encode("ascii")
    pages = max(p.page for p in placed) + 1
    for page in range(pages):
        for p in placed:
            if p.page != page:
                continue
            canvas.setFont(p.font, p.size)
            if p.anchor == "center":
                canvas.drawCentredString(p.x, p.y, p.text)
            else:
                canvas.drawString(p.x, p.y, p.text)
        if page == 0 and qr_payload is not None:
            # reportlab's own QR flowable draws filled squares only: no font is selected.
            qr = QrCode(qr_payload, width=QR_SIZE, height=QR_SIZE, qrLevel="M")
            qr.drawOn(canvas, WIDTH - MARGIN - QR_SIZE, MARGIN)
        canvas.showPage()
    canvas.save()
    return buf.getvalue()


def render_body(content: FormContent, templates: Templates | None = None) -> bytes:
    """The unsigned form without its QR square: the bytes whose SHA-256 the QR carries."""
    return _pdf(content, layout(content, templates), None)


def qr_payload(dossier_code: str, sha256_hex: str) -> str:
    """What the QR code says: a lookup key a phone can read (dossier code + body hash)."""
    return f"motcua:document?dossier={quote(dossier_code, safe='')}&sha256={sha256_hex}"


def render(content: FormContent, templates: Templates | None = None) -> Rendering:
    """The unsigned, deterministic PDF of a form, with its QR code."""
    placed = layout(content, templates)
    body = hashlib.sha256(_pdf(content, placed, None)).hexdigest()
    payload = qr_payload(content.dossier_code, body)
    return Rendering(_pdf(content, placed, payload), body, payload, placed)
