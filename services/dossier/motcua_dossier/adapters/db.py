"""The dossier service's tables and the repository that maps them to domain objects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from motcua_dossier.domain.dossier import (
    Actor,
    Applicant,
    Channel,
    Document,
    Dossier,
    Status,
)
from motcua_dossier.domain.fee import PaymentClaim
from motcua_dossier.domain.forms import IssuedDocument
from motcua_kit.consumer import inbox_table
from motcua_kit.db import aware, utc
from motcua_kit.outbox import outbox_table

metadata = MetaData()

dossiers = Table(
    "dossiers",
    metadata,
    Column("code", String(40), primary_key=True),
    Column("agency_code", String(20), nullable=False),
    Column("procedure_code", String(40), nullable=False),
    Column("status", Integer, nullable=False),
    Column("version", Integer, nullable=False),
    Column("applicant_full_name", String(200), nullable=False),
    Column("applicant_citizen_id", String(12), nullable=False),
    Column("applicant_phone", String(15), nullable=False),
    Column("applicant_email", String(254), nullable=False),
    Column("applicant_address", String(500), nullable=False),
    Column("channel", Integer, nullable=False),
    Column("documents", JSON, nullable=False),
    Column("submitted_at", DateTime(timezone=True), nullable=False),
    Column("appointment_date", Date, nullable=False),
    Column("fee_vnd", BigInteger, nullable=True),
    Column("submitted_by_subject", String(200), nullable=False),
    Column("submitted_by_role", String(20), nullable=False),
    Column("submitted_by_agency", String(20), nullable=False),
    Column("idempotency_scope", String(400), nullable=False, unique=True),
    Column("request_fingerprint", String(64), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=True),
    Column("completed_at", DateTime(timezone=True), nullable=True),
    Column("original_appointment_date", Date, nullable=True),
    Column("overdue", Boolean, nullable=False, default=False),
    Column("paused_since", DateTime(timezone=True), nullable=True),
    Column("due_soon_notified", Boolean, nullable=False, default=False),
    Column("overdue_notified", Boolean, nullable=False, default=False),
    Index("ix_dossiers_applicant", "applicant_citizen_id"),
    Index("ix_dossiers_submitted", "submitted_at", "code"),
    Index("ix_dossiers_agency_status", "agency_code", "status"),
)

# Per-agency daily sequence behind the dossier code; incremented inside the submit transaction,
# so a rolled-back submit gives its number back and codes stay consecutive.
dossier_sequences = Table(
    "dossier_sequences",
    metadata,
    Column("agency_code", String(20), nullable=False),
    Column("day", Date, nullable=False),
    Column("last_value", Integer, nullable=False),
    PrimaryKeyConstraint("agency_code", "day", name="pk_dossier_sequences"),
)

# The payments the payment service announced (payment.requested) for a dossier's open fee
# request, if they were of its agency and its fee; only these may settle it (ADR 0022).
fee_payments = Table(
    "fee_payments",
    metadata,
    Column("payment_id", String(32), primary_key=True),
    Column("dossier_code", String(40), nullable=False),
    Column("agency_code", String(20), nullable=False),
    Column("amount_vnd", BigInteger, nullable=False),
    Column("announced_at", DateTime(timezone=True), nullable=False),
    Column("settled_at", DateTime(timezone=True), nullable=True),
    Index("ix_fee_payments_dossier", "dossier_code"),
)

# The signed documents issued for dossiers (forms and results, ADR 0086): the bytes as served,
# with their SHA-256. Written in the transaction of the change that issued them.
issued_documents = Table(
    "issued_documents",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("dossier_code", String(40), nullable=False),
    Column("agency_code", String(20), nullable=False),
    Column("kind", Integer, nullable=False),
    Column("form_number", String(40), nullable=False),
    Column("number", String(60), nullable=False),
    Column("media_type", String(100), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("content", LargeBinary, nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("signature_level", String(10), nullable=False),
    Column("signer", String(500), nullable=False),
    Column("filename", String(200), nullable=False),
    Column("cause", String(60), nullable=False),
    Column("ordinal", Integer, nullable=False),
    Index("ix_issued_documents_dossier", "dossier_code", "ordinal", unique=True),
    Index("ix_issued_documents_sha256", "sha256"),
)

outbox = outbox_table(metadata)
inbox = inbox_table(metadata)


def _next_sequence(dialect: Any) -> Any:
    ins = dialect.insert(dossier_sequences)
    return ins.on_conflict_do_update(
        index_elements=["agency_code", "day"],
        set_={"last_value": dossier_sequences.c.last_value + 1},
    ).returning(dossier_sequences.c.last_value)


# The intake path's statements, built once: building a SQLAlchemy construct per call costs more
# CPU than its cached compilation saves (docs/benchmarks.md, intake profile).
_NEXT_SEQUENCE = {True: _next_sequence(postgresql), False: _next_sequence(sqlite)}
_BY_SCOPE = select(dossiers).where(dossiers.c.idempotency_scope == bindparam("scope"))
_BY_CODE = select(dossiers).where(dossiers.c.code == bindparam("code"))
_INSERT_DOSSIER = insert(dossiers)


@dataclass(frozen=True)
class DossierQuery:
    """Filters of ListDossiers after authorisation narrowed them."""

    applicant_citizen_id: str = ""
    agency_code: str = ""
    status: int = 0
    procedure_code: str = ""
    applicant_name: str = ""
    overdue_only: bool = False
    page_size: int = 20
    after: tuple[datetime, str] | None = None


@dataclass(frozen=True)
class StatisticsQuery:
    agency_code: str = ""
    procedure_code: str = ""
    received_from: datetime | None = None
    received_before: datetime | None = None


_LIKE_ESCAPES = str.maketrans({"\\": "\\\\", "%": "\\%", "_": "\\_"})


class DossierRepository:
    """Reads and writes dossiers inside the caller's transaction."""

    def add_fee_payments(
        self, session: Session, claims: Sequence[PaymentClaim], at: datetime
    ) -> None:
        """Remember payments announced for their dossiers' open fee requests: one statement."""
        rows = [
            {
                "payment_id": c.payment_id,
                "dossier_code": c.dossier_code,
                "agency_code": c.agency_code,
                "amount_vnd": c.amount_vnd,
                "announced_at": utc(at),
            }
            for c in claims
        ]
        if rows:
            session.execute(insert(fee_payments), rows)

    def fee_payments(
        self, session: Session, payment_ids: Sequence[str]
    ) -> dict[str, tuple[PaymentClaim, bool]]:
        """The announced payments among ``payment_ids``: what was announced (dossier, agency,
        amount), and whether it settled its dossier. One query."""
        if not payment_ids:
            return {}
        rows = session.execute(
            select(fee_payments).where(fee_payments.c.payment_id.in_(sorted(set(payment_ids))))
        )
        return {
            r.payment_id: (
                PaymentClaim(r.payment_id, r.dossier_code, r.agency_code, int(r.amount_vnd)),
                r.settled_at is not None,
            )
            for r in rows
        }

    def fee_payments_settled(
        self, session: Session, payment_ids: Sequence[str], at: datetime
    ) -> None:
        if payment_ids:
            session.execute(
                update(fee_payments)
                .where(fee_payments.c.payment_id.in_(list(payment_ids)))
                .values(settled_at=utc(at))
            )

    def next_sequence(self, session: Session, agency_code: str, day: date) -> int:
        """Atomically take the next number of the agency's day (an upsert; row-locked)."""
        stmt = _NEXT_SEQUENCE[session.get_bind().dialect.name == "postgresql"]
        params = {"agency_code": agency_code, "day": day, "last_value": 1}
        return int(session.execute(stmt, params).scalar_one())

    def by_idempotency_scope(self, session: Session, scope: str) -> Dossier | None:
        row = session.execute(_BY_SCOPE, {"scope": scope}).first()
        return self._to_domain(row._mapping) if row else None

    def get(self, session: Session, code: str) -> Dossier | None:
        row = session.execute(_BY_CODE, {"code": code}).first()
        return self._to_domain(row._mapping) if row else None

    def get_many(self, session: Session, codes: Sequence[str]) -> dict[str, Dossier]:
        """The dossiers among ``codes``, by code, locked until the transaction ends (in code
        order, so two batches cannot deadlock): one query."""
        if not codes:
            return {}
        query = (
            select(dossiers)
            .where(dossiers.c.code.in_(list(codes)))
            .order_by(dossiers.c.code)
            .with_for_update()
        )
        return {row.code: self._to_domain(row._mapping) for row in session.execute(query)}

    def add(self, session: Session, dossier: Dossier, idempotency_scope: str) -> None:
        a = dossier.applicant
        session.execute(
            _INSERT_DOSSIER,
            dict(
                code=dossier.code,
                agency_code=dossier.agency_code,
                procedure_code=dossier.procedure_code,
                applicant_full_name=a.full_name,
                applicant_citizen_id=a.citizen_id,
                applicant_phone=a.phone,
                applicant_email=a.email,
                applicant_address=a.address,
                channel=int(dossier.channel),
                submitted_at=utc(dossier.submitted_at),
                fee_vnd=dossier.fee_vnd,
                submitted_by_subject=dossier.submitted_by.subject,
                submitted_by_role=dossier.submitted_by.role,
                submitted_by_agency=dossier.submitted_by.agency_code,
                idempotency_scope=idempotency_scope,
                request_fingerprint=dossier.idempotency_fingerprint,
                **self._mutable(dossier),
            ),
        )

    @staticmethod
    def _mutable(d: Dossier) -> dict[str, Any]:
        """The columns a transition or the deadline scanner may change."""
        return {
            "status": int(d.status),
            "version": d.version,
            "documents": [
                {
                    "name": doc.name,
                    "media_type": doc.media_type,
                    "size_bytes": doc.size_bytes,
                    "sha256": doc.sha256,
                    "storage_uri": doc.storage_uri,
                }
                for doc in d.documents
            ],
            "appointment_date": d.appointment_date,
            "received_at": utc(d.received_at) if d.received_at else None,
            "completed_at": utc(d.completed_at) if d.completed_at else None,
            "original_appointment_date": d.original_appointment_date,
            "overdue": d.overdue,
            "paused_since": utc(d.paused_since) if d.paused_since else None,
            "due_soon_notified": d.due_soon_notified,
            "overdue_notified": d.overdue_notified,
        }

    def update(self, session: Session, dossier: Dossier, expected_version: int) -> bool:
        """Write a changed dossier if nobody changed it since ``expected_version``."""
        result = session.execute(
            update(dossiers)
            .where(dossiers.c.code == dossier.code, dossiers.c.version == expected_version)
            .values(**self._mutable(dossier))
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def search(
        self, session: Session, query: DossierQuery, today: date
    ) -> tuple[list[Dossier], tuple[datetime, str] | None]:
        """A page of dossiers, newest first; keyset pagination on (submitted_at, code)."""
        stmt = select(dossiers)
        c = dossiers.c
        if query.applicant_citizen_id:
            stmt = stmt.where(c.applicant_citizen_id == query.applicant_citizen_id)
        if query.agency_code:
            stmt = stmt.where(c.agency_code == query.agency_code)
        if query.status:
            stmt = stmt.where(c.status == query.status)
        if query.procedure_code:
            stmt = stmt.where(c.procedure_code == query.procedure_code)
        if query.applicant_name:
            escaped = query.applicant_name.translate(_LIKE_ESCAPES)
            pattern = f"%{escaped}%"
            stmt = stmt.where(func.lower(c.applicant_full_name).like(func.lower(pattern), "\\"))
        if query.overdue_only:
            stmt = stmt.where(
                or_(c.overdue.is_(True), c.appointment_date < today),
                c.status.in_([1, 2, 4]),
                c.received_at.is_not(None),
            )
        if query.after is not None:
            at, code = query.after
            stmt = stmt.where(or_(c.submitted_at < at, and_(c.submitted_at == at, c.code < code)))
        rows = session.execute(
            stmt.order_by(c.submitted_at.desc(), c.code.desc()).limit(query.page_size + 1)
        ).all()
        items = [self._to_domain(r._mapping) for r in rows[: query.page_size]]
        more = len(rows) > query.page_size
        last = (items[-1].submitted_at, items[-1].code) if more and items else None
        return items, last

    def running(self, session: Session) -> list[Dossier]:
        """Dossiers whose deadline clock runs (received, not finished, not waiting)."""
        rows = session.execute(
            select(dossiers).where(
                dossiers.c.status.in_([1, 2, 4]), dossiers.c.received_at.is_not(None)
            )
        ).all()
        return [self._to_domain(r._mapping) for r in rows]

    def for_statistics(self, session: Session, query: StatisticsQuery) -> list[Dossier]:
        """Dossiers received in the period, for the agency / procedure asked."""
        c = dossiers.c
        stmt = select(dossiers).where(c.received_at.is_not(None))
        if query.agency_code:
            stmt = stmt.where(c.agency_code == query.agency_code)
        if query.procedure_code:
            stmt = stmt.where(c.procedure_code == query.procedure_code)
        if query.received_from is not None:
            stmt = stmt.where(c.received_at >= utc(query.received_from))
        if query.received_before is not None:
            stmt = stmt.where(c.received_at < utc(query.received_before))
        return [self._to_domain(r._mapping) for r in session.execute(stmt).all()]

    def count_by_state(self, session: Session) -> list[tuple[str, int, int]]:
        """(agency, status, count) for the business gauge."""
        c = dossiers.c
        rows = session.execute(
            select(c.agency_code, c.status, func.count()).group_by(c.agency_code, c.status)
        ).all()
        return [(r[0], int(r[1]), int(r[2])) for r in rows]

    # -- signed documents (ADR 0086) ------------------------------------------------------------
    def add_documents(self, session: Session, documents: Sequence[IssuedDocument]) -> None:
        """Store signed documents, bytes and hash, in the caller's transaction: one statement."""
        rows = [
            {
                "id": d.id,
                "dossier_code": d.dossier_code,
                "agency_code": d.agency_code,
                "kind": _KIND_CODES[d.kind],
                "form_number": d.form_number,
                "number": d.number,
                "media_type": d.media_type,
                "size": d.size,
                "sha256": d.sha256,
                "content": d.content,
                "issued_at": utc(d.issued_at),
                "signature_level": d.signature_level,
                "signer": d.signer,
                "filename": d.filename,
                "cause": d.cause,
                "ordinal": d.ordinal,
            }
            for d in documents
        ]
        if rows:
            session.execute(insert(issued_documents), rows)

    def documents_of(self, session: Session, code: str) -> list[IssuedDocument]:
        """A dossier's documents, oldest first, without their bytes."""
        c = issued_documents.c
        columns = [col for col in c if col.name != "content"]
        rows = session.execute(select(*columns).where(c.dossier_code == code).order_by(c.ordinal))
        return [_document(r._mapping) for r in rows]

    def count_documents(self, session: Session, code: str) -> int:
        c = issued_documents.c
        stmt = select(func.count()).select_from(issued_documents).where(c.dossier_code == code)
        return int(session.execute(stmt).scalar_one())

    def document(self, session: Session, document_id: str) -> IssuedDocument | None:
        """One document with its bytes."""
        row = session.execute(
            select(issued_documents).where(issued_documents.c.id == document_id)
        ).first()
        return _document(row._mapping) if row else None

    def event_payloads(self, session: Session, code: str, types: Sequence[str]) -> list[bytes]:
        """The payloads of the dossier's events of ``types`` in the order they were written:
        the outbox keeps every event the dossier published (its history)."""
        c = outbox.c
        rows = session.execute(
            select(c.payload)
            .where(c.event_key == code, c.event_type.in_(list(types)))
            .order_by(c.id)
        )
        return [bytes(r.payload) for r in rows]

    @staticmethod
    def _to_domain(row: Any) -> Dossier:
        return Dossier(
            code=row["code"],
            procedure_code=row["procedure_code"],
            agency_code=row["agency_code"],
            applicant=Applicant(
                full_name=row["applicant_full_name"],
                citizen_id=row["applicant_citizen_id"],
                phone=row["applicant_phone"],
                email=row["applicant_email"],
                address=row["applicant_address"],
            ),
            documents=tuple(Document(**d) for d in row["documents"]),
            channel=Channel(row["channel"]),
            status=Status(row["status"]),
            version=row["version"],
            submitted_at=aware(row["submitted_at"]),
            appointment_date=row["appointment_date"],
            fee_vnd=row["fee_vnd"],
            submitted_by=Actor(
                row["submitted_by_subject"], row["submitted_by_role"], row["submitted_by_agency"]
            ),
            idempotency_fingerprint=row["request_fingerprint"],
            received_at=aware(row["received_at"]),
            completed_at=aware(row["completed_at"]),
            original_appointment_date=row["original_appointment_date"],
            overdue=bool(row["overdue"]),
            paused_since=aware(row["paused_since"]),
            due_soon_notified=bool(row["due_soon_notified"]),
            overdue_notified=bool(row["overdue_notified"]),
        )


_KIND_CODES = {"receipt": 1, "supplement": 2, "refusal": 3, "apology": 4, "control": 5, "result": 6}
_KIND_NAMES = {v: k for k, v in _KIND_CODES.items()}


def _document(row: Any) -> IssuedDocument:
    return IssuedDocument(
        id=row["id"],
        dossier_code=row["dossier_code"],
        agency_code=row["agency_code"],
        kind=_KIND_NAMES[row["kind"]],
        form_number=row["form_number"],
        number=row["number"],
        media_type=row["media_type"],
        size=int(row["size"]),
        sha256=row["sha256"],
        issued_at=aware(row["issued_at"]),
        signature_level=row["signature_level"],
        signer=row["signer"],
        filename=row["filename"],
        cause=row["cause"],
        ordinal=int(row["ordinal"]),
        content=bytes(row["content"]) if "content" in row else b"",
    )
