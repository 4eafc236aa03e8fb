"""What notify knows of a dossier, and which template variables each consumed event brings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from motcua import topics as t
from motcua_notify.domain.notification import Contact, Occurrence, format_date

# National dossier status codes → how a notice names them.
STATUS_NAMES = {
    1: "Mới tiếp nhận",
    2: "Đã tiếp nhận",
    3: "Không tiếp nhận",
    4: "Đang xử lý",
    5: "Yêu cầu bổ sung",
    6: "Chờ thanh toán phí",
    7: "Đã rút hồ sơ",
    8: "Dừng xử lý",
    9: "Đã có kết quả",
    10: "Đã trả kết quả",
}

BASE_VARIABLES = frozenset(
    {
        "dossier_code",
        "agency_code",
        "procedure_code",
        "procedure_name",
        "procedure",
        "applicant_name",
        "appointment_date",
        "submitted_date",
        "status",
        "status_name",
    }
)
_STATUS_CHANGE = BASE_VARIABLES | {"comment"}

# The dossier's status changes a citizen is told of (DossierStatusChanged, one type per
# workflow action); paying, starting work and supplementing are not news to them.
DOSSIER_STATUS_CHANGES = (
    t.DOSSIER_RECEIVED,
    t.DOSSIER_REJECTED,
    t.DOSSIER_SUPPLEMENT_REQUESTED,
    t.DOSSIER_PAYMENT_REQUESTED,
    t.DOSSIER_PROCESSED,
    t.DOSSIER_RESULT_RETURNED,
    t.DOSSIER_WITHDRAWN,
    t.DOSSIER_STOPPED,
)

# Event type → the template variables its occurrences carry. The template catalogue is
# checked against this at load: a template cannot use what its event does not bring.
PROVIDED_VARIABLES: dict[str, frozenset[str]] = {
    t.DOSSIER_SUBMITTED: BASE_VARIABLES,
    **dict.fromkeys(DOSSIER_STATUS_CHANGES, _STATUS_CHANGE),
    t.DOSSIER_OVERDUE: BASE_VARIABLES | {"due_date", "new_appointment_date", "days_late"},
    t.PAYMENT_REQUESTED: BASE_VARIABLES | {"amount", "payment_link"},
    t.PAYMENT_SUCCEEDED: BASE_VARIABLES | {"amount", "receipt_number"},
    # The receipt slip or the result, signed (docs/adr/0088): its name, the portal link, the
    # attachment's file name and size, whether it is attached ("có" or "") and the cap.
    t.DOSSIER_DOCUMENT_ISSUED: BASE_VARIABLES
    | {
        "document_kind",
        "document_name",
        "document_link",
        "document_filename",
        "document_size",
        "document_attached",
        "attachment_limit",
    },
}


@dataclass(frozen=True)
class DossierSnapshot:
    """The latest of a dossier notify has seen: enough to address events that lack it.

    Payment events name the dossier but not the applicant; notify keeps what the dossier
    events told it (the applicant's contact included) to address them.
    """

    dossier_code: str
    agency_code: str
    procedure_code: str
    status: int
    appointment_date: str  # YYYY-MM-DD
    submitted_date: str  # YYYY-MM-DD (local)
    contact: Contact
    procedure_name: str = ""  # empty from a dossier service older than the field

    @property
    def procedure(self) -> str:
        """How a notice names the procedure: "Đăng ký khai sinh (HT-001)", the code alone
        when the event did not bring the name."""
        if not (self.procedure_name and self.procedure_code):
            return self.procedure_name or self.procedure_code
        return f"{self.procedure_name} ({self.procedure_code})"

    def values(self) -> dict[str, str]:
        return {
            "dossier_code": self.dossier_code,
            "agency_code": self.agency_code,
            "procedure_code": self.procedure_code,
            "procedure_name": self.procedure_name,
            "procedure": self.procedure,
            "applicant_name": self.contact.full_name,
            "appointment_date": format_date(self.appointment_date),
            "submitted_date": format_date(self.submitted_date),
            "status": str(self.status),
            "status_name": STATUS_NAMES.get(self.status, ""),
        }

    def occurrence(
        self,
        event_id: str,
        event_type: str,
        occurred_at: datetime,
        extra: Mapping[str, str],
        attachment: Mapping[str, object] | None = None,
    ) -> Occurrence:
        return Occurrence(
            event_id=event_id,
            event_type=event_type,
            dossier_code=self.dossier_code,
            agency_code=self.agency_code,
            occurred_at=occurred_at,
            contact=self.contact,
            values={**self.values(), **extra},
            attachment=attachment,
        )
