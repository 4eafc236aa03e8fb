"""The dossier service's tables and the repository that maps them to domain objects."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    insert,
    select,
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
from motcua_kit.consumer import inbox_table
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
    Index("ix_dossiers_applicant", "applicant_citizen_id"),
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

outbox = outbox_table(metadata)
inbox = inbox_table(metadata)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class DossierRepository:
    """Reads and writes dossiers inside the caller's transaction."""

    def next_sequence(self, session: Session, agency_code: str, day: date) -> int:
        """Atomically take the next number of the agency's day (an upsert; row-locked)."""
        dialect = session.get_bind().dialect.name
        ins: Any = (postgresql if dialect == "postgresql" else sqlite).insert(dossier_sequences)
        stmt = (
            ins.values(agency_code=agency_code, day=day, last_value=1)
            .on_conflict_do_update(
                index_elements=["agency_code", "day"],
                set_={"last_value": dossier_sequences.c.last_value + 1},
            )
            .returning(dossier_sequences.c.last_value)
        )
        return int(session.execute(stmt).scalar_one())

    def by_idempotency_scope(self, session: Session, scope: str) -> Dossier | None:
        row = session.execute(select(dossiers).where(dossiers.c.idempotency_scope == scope)).first()
        return self._to_domain(row._mapping) if row else None

    def get(self, session: Session, code: str) -> Dossier | None:
        row = session.execute(select(dossiers).where(dossiers.c.code == code)).first()
        return self._to_domain(row._mapping) if row else None

    def add(self, session: Session, dossier: Dossier, idempotency_scope: str) -> None:
        a = dossier.applicant
        session.execute(
            insert(dossiers).values(
                code=dossier.code,
                agency_code=dossier.agency_code,
                procedure_code=dossier.procedure_code,
                status=int(dossier.status),
                version=dossier.version,
                applicant_full_name=a.full_name,
                applicant_citizen_id=a.citizen_id,
                applicant_phone=a.phone,
                applicant_email=a.email,
                applicant_address=a.address,
                channel=int(dossier.channel),
                documents=[
                    {
                        "name": d.name,
                        "media_type": d.media_type,
                        "size_bytes": d.size_bytes,
                        "sha256": d.sha256,
                        "storage_uri": d.storage_uri,
                    }
                    for d in dossier.documents
                ],
                submitted_at=dossier.submitted_at,
                appointment_date=dossier.appointment_date,
                fee_vnd=dossier.fee_vnd,
                submitted_by_subject=dossier.submitted_by.subject,
                submitted_by_role=dossier.submitted_by.role,
                submitted_by_agency=dossier.submitted_by.agency_code,
                idempotency_scope=idempotency_scope,
                request_fingerprint=dossier.idempotency_fingerprint,
            )
        )

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
            submitted_at=_aware(row["submitted_at"]),
            appointment_date=row["appointment_date"],
            fee_vnd=row["fee_vnd"],
            submitted_by=Actor(
                row["submitted_by_subject"], row["submitted_by_role"], row["submitted_by_agency"]
            ),
            idempotency_fingerprint=row["request_fingerprint"],
        )
