"""Use cases: the signed one-stop-shop papers a dossier's changes issue, and its results.

:class:`Papers` renders the forms :func:`~motcua_dossier.domain.forms.orders` decides on and
signs them PAdES with the agency's key (the keyring, ``MOTCUA_DOSSIER_DOCUMENTS_KEYRING``). A
change first *prepares* its papers (render + sign, no write, so no database lock is held while
the token signs), then the caller writes the change and *stores* them with their
``document_issued`` events in the same transaction: the papers exist exactly when the change
does (ADR 0086). A paper that cannot be signed refuses the change, naming the agency's key.

:func:`return_result` is ReturnResult's use case: the officer's PDF is checked (size, hash,
a readable PDF), kept as it is when the agency's own tool signed it and it verifies, signed
otherwise, and stored with the return_result change and its control sheet.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from datetime import time as clock_time
from functools import cached_property
from pathlib import Path
from threading import Lock
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import yaml
from sqlalchemy.orm import Session

from motcua_documents import keyring as keyrings
from motcua_documents.model import FormKind
from motcua_documents.render import RenderError, render
from motcua_documents.signing import SigningError, sign
from motcua_documents.verify import verify
from motcua_dossier import events
from motcua_dossier.adapters import messages
from motcua_dossier.domain.access import may_see
from motcua_dossier.domain.calendar import DEFAULT_OFFICE_CLOSE
from motcua_dossier.domain.catalogue import Catalogue
from motcua_dossier.domain.dossier import Actor, Dossier
from motcua_dossier.domain.forms import (
    ANNEX_NUMBER,
    RESULT,
    AgencyPaper,
    FormRequest,
    FormTexts,
    IssuedDocument,
    Step,
    forms_for,
    orders,
)
from motcua_dossier.domain.reference_data import DATA_DIR
from motcua_dossier.metrics import DOCUMENTS_ISSUED, SIGNING_FAILURES, SIGNING_SECONDS
from motcua_dossier.settings import DossierSettings
from motcua_kit.db import on_commit
from motcua_kit.envelope import Event
from motcua_kit.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied

if TYPE_CHECKING:
    from motcua_dossier.domain.lifecycle import AppliedAction, DeadlineNotice
    from motcua_dossier.service import DossierService
    from motcua_kit.auth import Principal

log = logging.getLogger(__name__)

PDF = "application/pdf"
CHUNK = 256 * 1024  # GetDocument's chunks
MAX_UPLOAD_CHUNK = 1024 * 1024  # ReturnResult's chunks, at most
_HISTORY_TYPES = (*sorted(set(events.ACTION_EVENTS.values())), events.STATUS_CHANGED)


@dataclass(frozen=True)
class ResultUpload:
    """ReturnResult's header, checked field by field at the edge."""

    code: str
    expected_version: int
    comment: str
    filename: str
    size_bytes: int
    sha256: str


def _load_papers(directory: Path | None) -> dict[str, Any]:
    """data/documents.yaml of the reference-data directory (the package's when it has none)."""
    path = (directory or DATA_DIR) / "documents.yaml"
    if not path.is_file():
        path = DATA_DIR / "documents.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


class Papers:
    """Renders, signs and stores the dossier's signed papers; off without a keyring."""

    def __init__(self, settings: DossierSettings) -> None:
        self._settings = settings
        data = _load_papers(settings.reference_data_dir)
        self._agencies: dict[str, dict[str, str]] = data.get("agencies") or {}
        self._defaults = data.get("defaults") or {}
        self.texts = FormTexts(**(data.get("texts") or {}))
        self._tz = ZoneInfo(settings.timezone)
        self._signers: dict[str, tuple[str, str]] = {}
        self._lock = Lock()

    @property
    def enabled(self) -> bool:
        return bool(self._settings.documents_keyring.strip())

    @cached_property
    def keyring(self) -> keyrings.Keyring:
        """The keyring, read once (the file and its PIN files)."""
        path = Path(self._settings.documents_keyring.strip())
        tsa = self._settings.documents_tsa_url.strip() or None
        return keyrings.load(path, tsa_url=tsa)

    def check(self, catalogue: Catalogue) -> None:
        """Refuse to start (naming the agency) when an agency that receives dossiers has no
        key in the keyring; nothing to check when documents are off."""
        if not self.enabled:
            return
        try:
            ring = self.keyring
        except keyrings.KeyringError as exc:
            raise SystemExit(f"MOTCUA_DOSSIER_DOCUMENTS_KEYRING: {exc}") from exc
        receiving = sorted({p.agency_code for p in catalogue.procedures()})
        missing = [code for code in receiving if code not in ring.keys]
        if missing:
            raise SystemExit(
                f"MOTCUA_DOSSIER_DOCUMENTS_KEYRING: no signing key for agency "
                f"{', '.join(missing)} (agencies.{missing[0]} is missing from the keyring); "
                "every agency that receives dossiers signs its forms"
            )
        for code in receiving:  # a zero to rise from: the signing alert watches the increase
            SIGNING_FAILURES.labels(code)

    def agency(self, catalogue: Catalogue, code: str) -> AgencyPaper:
        agency = catalogue.agency(code)
        own = self._agencies.get(code) or {}
        return AgencyPaper(
            code=code,
            name=agency.name,
            parent=own.get("parent") or agency.province,
            place=own.get("place") or agency.province.removeprefix("Thành phố ").strip(),
            phone=str(own.get("phone") or self._defaults.get("phone", "")),
            counter=own.get("counter") or self._defaults.get("counter", "Bộ phận một cửa"),
        )

    # -- render + sign (no write) ------------------------------------------------------------
    def sign(self, agency_code: str, pdf: bytes, reason: str) -> tuple[bytes, str, str]:
        """(signed bytes, signer, level) with the agency's key; a key that cannot sign refuses
        the change (FAILED_PRECONDITION naming the agency's key) and is counted."""
        started = time.perf_counter()
        try:
            key = self.keyring.key_for(agency_code)
            signed = sign(pdf, key, tsa_url=self.keyring.tsa_url or None, reason=reason)
            signer, level = self._signer(agency_code, signed)
        except (keyrings.KeyringError, SigningError) as exc:
            SIGNING_FAILURES.labels(agency_code).inc()
            log.error("signing for agency %s failed: %s", agency_code, exc)
            raise FailedPrecondition(
                f"the signing key of agency {agency_code} could not sign: {exc}"
            ) from None
        SIGNING_SECONDS.observe(time.perf_counter() - started)
        return signed, signer, level

    def _signer(self, agency_code: str, signed: bytes) -> tuple[str, str]:
        """The signer and level, from verifying the agency's first signature in this process
        (so a key outside the trust roots is found at once, not by the citizen)."""
        with self._lock:
            known = self._signers.get(agency_code)
        if known:
            return known
        report = verify(signed, self.keyring.trust_roots, agency_code=agency_code)
        if not report.ok:
            raise SigningError(f"its signature does not verify: {'; '.join(report.failures)}")
        with self._lock:
            self._signers[agency_code] = (report.signer, report.level)
        return report.signer, report.level

    def prepare(
        self,
        svc: DossierService,
        session: Session,
        done: Dossier,
        cause: str,
        actor: Actor | None,
        comment: str,
        now: datetime,
        *,
        step: Step | None = None,
        missed: Any = None,
        extra: int = 0,
    ) -> list[IssuedDocument]:
        """The signed forms ``cause`` issues for ``done`` (nothing is written)."""
        kinds = forms_for(cause)
        if not self.enabled or not kinds:
            return []
        history: tuple[Step, ...] = ()
        if FormKind.CONTROL in kinds:
            payloads = svc.repository.event_payloads(session, done.code, _HISTORY_TYPES)
            history = messages.history(payloads) + ((step,) if step else ())
        request = FormRequest(
            dossier=done,
            procedure=svc.catalogue.procedure(done.procedure_code),
            agency=self.agency(svc.catalogue, done.agency_code),
            cause=cause,
            actor=actor,
            comment=comment,
            now=now,
            history=history,
            missed_appointment=missed,
            issued_before=svc.repository.count_documents(session, done.code) + extra,
        )
        close: clock_time = getattr(svc.calendar, "office_close", DEFAULT_OFFICE_CLOSE)
        out = []
        for order in orders(request, self.texts, tz=self._tz, office_close=close):
            try:
                pdf = render(order.content).pdf
            except RenderError as exc:
                if comment and order.kind in (FormKind.REFUSAL, FormKind.SUPPLEMENT):
                    raise InvalidArgument("comment", f"cannot be printed: {exc}") from None
                raise FailedPrecondition(f"the {order.kind.value} form: {exc}") from None
            signed, signer, level = self.sign(
                done.agency_code, pdf, f"{ANNEX_NUMBER[order.kind]} {done.code}"
            )
            out.append(
                IssuedDocument(
                    id=uuid.uuid4().hex,
                    dossier_code=done.code,
                    agency_code=done.agency_code,
                    kind=order.kind.value,
                    form_number=ANNEX_NUMBER[order.kind],
                    number=order.number,
                    media_type=PDF,
                    size=len(signed),
                    sha256=hashlib.sha256(signed).hexdigest(),
                    issued_at=now,
                    signature_level=level,
                    signer=signer,
                    filename=f"{done.code}-{order.kind.value}.pdf",
                    cause=cause,
                    content=signed,
                    ordinal=order.ordinal,
                )
            )
        return out

    def for_action(
        self,
        svc: DossierService,
        session: Session,
        done: AppliedAction,
        result: IssuedDocument | None = None,
    ) -> list[IssuedDocument]:
        """A workflow move's papers (the result first, when ReturnResult brought one)."""
        step = Step(
            done.previous_status,
            done.dossier.status,
            done.actor.subject,
            done.at,
            done.dossier.appointment_date,
        )
        extra = []
        if result is not None and self.enabled:
            rank = svc.repository.count_documents(session, done.dossier.code) + 1
            extra = [replace(result, ordinal=rank)]
        return extra + self.prepare(
            svc,
            session,
            done.dossier,
            done.action,
            done.actor,
            done.comment,
            done.at,
            step=step,
            extra=len(extra),
        )

    def for_overdue(
        self, svc: DossierService, session: Session, notice: DeadlineNotice, now: datetime
    ) -> list[IssuedDocument]:
        """The apology and new appointment of a dossier that became overdue."""
        return self.prepare(
            svc, session, notice.dossier, "overdue", None, "", now, missed=notice.due_date
        )

    # -- store (in the change's transaction) ---------------------------------------------------
    def store(
        self,
        svc: DossierService,
        session: Session,
        dossier: Dossier,
        docs: Sequence[IssuedDocument],
    ) -> list[Event]:
        """Write the papers and return their document_issued events (metadata, no bytes)."""
        if not docs:
            return []
        svc.repository.add_documents(session, docs)
        kinds = [d.kind for d in docs]
        on_commit(session, lambda: _count_issued(kinds))
        return [
            svc.event(
                events.DOCUMENT_ISSUED,
                dossier.code,
                messages.document_issued(dossier, d),
                d.issued_at,
            )
            for d in docs
        ]

    # -- the result ----------------------------------------------------------------------------
    def result(
        self, dossier: Dossier, upload: ResultUpload, data: bytes, now: datetime
    ) -> IssuedDocument:
        """The officer's result, checked: kept as it is when the agency signed it and it
        verifies, signed with the agency's key otherwise."""
        if len(data) != upload.size_bytes:
            raise InvalidArgument(
                "size_bytes", f"is {upload.size_bytes} but {len(data)} bytes were sent"
            )
        if hashlib.sha256(data).hexdigest() != upload.sha256:
            raise InvalidArgument("sha256", "does not match the SHA-256 of the bytes sent")
        signatures = _pdf_signatures(data)
        if signatures:
            report = verify(data, self.keyring.trust_roots, agency_code=dossier.agency_code)
            if not report.ok:
                raise InvalidArgument(
                    "document",
                    "its signature does not verify: " + "; ".join(report.failures),
                )
            signed, signer, level = data, report.signer, report.level
        else:
            signed, signer, level = self.sign(dossier.agency_code, data, f"Kết quả {dossier.code}")
        return IssuedDocument(
            id=uuid.uuid4().hex,
            dossier_code=dossier.code,
            agency_code=dossier.agency_code,
            kind=RESULT,
            form_number="",
            number="",
            media_type=PDF,
            size=len(signed),
            sha256=hashlib.sha256(signed).hexdigest(),
            issued_at=now,
            signature_level=level,
            signer=signer[:500],
            filename=upload.filename,
            cause="return_result",
            content=signed,
        )


def _count_issued(kinds: Sequence[str]) -> None:
    for kind in kinds:
        DOCUMENTS_ISSUED.labels(kind).inc()


def _pdf_signatures(data: bytes) -> int:
    """How many signatures the PDF carries; refused naming ``document`` when it is no PDF."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    if not data.startswith(b"%PDF-"):
        raise InvalidArgument("document", "is not a PDF (it does not start with %PDF-)")
    try:
        reader = PdfFileReader(io.BytesIO(data), strict=False)
        reader.root["/Pages"]
        return len(reader.embedded_regular_signatures)
    except Exception as exc:  # pyHanko raises many kinds on a malformed file
        raise InvalidArgument("document", f"is not a readable PDF ({exc})") from None


# -- use cases called by the gRPC adapter ---------------------------------------------------------
def check_result_caller(svc: DossierService, principal: Principal, code: str) -> Dossier:
    """Before any byte is read: the dossier exists for the caller, who is its agency's officer."""
    if not svc.papers.enabled:
        raise FailedPrecondition(
            "signed documents are off (MOTCUA_DOSSIER_DOCUMENTS_KEYRING is not set): "
            "results cannot be signed or verified"
        )
    with svc.context.sessions() as session:
        dossier = svc.repository.get(session, code)
    if dossier is None or not may_see(principal, dossier):
        raise NotFound(f"dossier {code} not found")
    if "officer" not in principal.roles or principal.agency_code != dossier.agency_code:
        raise PermissionDenied(f"only an officer of {dossier.agency_code} returns its result")
    return dossier


def return_result(
    svc: DossierService, principal: Principal, upload: ResultUpload, data: bytes
) -> tuple[Dossier, IssuedDocument]:
    """Check, sign (or keep) and store the result with the return_result change."""
    dossier = check_result_caller(svc, principal, upload.code)
    result = svc.papers.result(dossier, upload, data, svc.clock())
    done = svc.transition(
        principal,
        upload.code,
        "return_result",
        upload.comment,
        upload.expected_version,
        result=result,
    )
    return done, replace(result, content=b"")


def list_documents(svc: DossierService, principal: Principal, code: str) -> list[IssuedDocument]:
    """The documents of a dossier the caller may see, oldest first."""
    dossier = svc.get(principal, code)
    with svc.context.sessions() as session:
        return svc.repository.documents_of(session, dossier.code)


def get_document(svc: DossierService, principal: Principal, document_id: str) -> IssuedDocument:
    """One document with its bytes, if the caller may see its dossier (else: not found)."""
    document_id = document_id.strip().lower()
    if not document_id:
        raise InvalidArgument("document_id", "is required")
    with svc.context.sessions() as session:
        document = svc.repository.document(session, document_id)
        dossier = svc.repository.get(session, document.dossier_code) if document else None
    if document is None or dossier is None or not may_see(principal, dossier):
        raise NotFound(f"document {document_id} not found")
    return document


def chunks(data: bytes, size: int = CHUNK) -> Iterable[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))
