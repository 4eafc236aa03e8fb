"""Use case: the deadline scan, which tells citizens and officers of dossiers due soon or overdue.

:func:`~motcua_dossier.domain.lifecycle.check_deadline` decides; each finding is written with
the dossier (so it is sent once) and published in the same transaction. A dossier changed
meanwhile is skipped and looked at again by the next scan.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from motcua_dossier import events
from motcua_dossier.adapters import messages
from motcua_dossier.domain.lifecycle import check_deadline
from motcua_kit.db import transaction

if TYPE_CHECKING:
    from datetime import date

    from motcua_dossier.service import DossierService


def scan_deadlines(svc: DossierService, today: date) -> int:
    """Emit due-soon and overdue events, once each per dossier; returns how many."""
    settings = svc.settings
    sent = 0
    with transaction(svc.context.sessions) as session:
        for dossier in svc.repository.running(session):
            notice = check_deadline(
                dossier,
                today,
                svc.calendar,
                due_soon_days=settings.due_soon_days,
                extension_days=settings.overdue_extension_days,
            )
            if notice is None:
                continue
            if not svc.repository.update(session, notice.dossier, dossier.version):
                continue  # changed meanwhile; the next scan looks again
            svc.publish(
                session,
                events.OVERDUE if notice.kind == "overdue" else events.DUE_SOON,
                dossier.code,
                messages.deadline(notice),
                svc.clock(),
            )
            sent += 1
    return sent
