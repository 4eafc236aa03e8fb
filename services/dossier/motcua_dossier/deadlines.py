"""Use case: the deadline scan, which tells citizens and officers of dossiers due soon or overdue.

:func:`~motcua_dossier.domain.lifecycle.check_deadline` decides; each finding is written with
the dossier (so it is sent once) and published in the same transaction. A dossier changed
meanwhile is skipped and looked at again by the next scan. An overdue dossier's apology and
new appointment (Mẫu số 04) is signed and stored with it; one whose paper cannot be signed is
left for the next scan (ADR 0086).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from motcua_dossier import events
from motcua_dossier.adapters import messages
from motcua_dossier.domain.lifecycle import check_deadline
from motcua_kit.db import transaction
from motcua_kit.errors import Refusal

if TYPE_CHECKING:
    from datetime import date

    from motcua_dossier.service import DossierService

log = logging.getLogger(__name__)


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
            papers = []
            if notice.kind == "overdue":
                try:  # the apology (Mẫu số 04), signed before anything is written
                    papers = svc.papers.for_overdue(svc, session, notice, svc.clock())
                except Refusal as exc:
                    log.error("overdue %s left for the next scan: %s", dossier.code, exc)
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
            svc.publish_events(session, svc.papers.store(svc, session, notice.dossier, papers))
            sent += 1
    return sent
