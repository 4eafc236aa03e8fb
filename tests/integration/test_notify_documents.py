"""Issue 18 end to end: a document_issued event on the real broker → notify (a real process)
fetches the signed PDF from a GetDocument server over gRPC with its service token, checks it
against the event, and the SMTP server receives the email with the PDF attached; the SMS names
the portal link. The GetDocument server is :class:`FakeDossierDocuments` (the dossier service's
document support is built at the same time); everything else is real.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from unit.notify_documents.support import FakeDossierDocuments, document_issued, signed_receipt

from harness import Kafka, ServiceProcess, wait_for
from motcua.dossier.v1 import dossier_pb2
from motcua_documents.devpki import DevPki
from notify_providers import (
    PHONE,
    dossier,
    fresh_group,
    notify_env,
    produce,
    providers,
    states,
)

pytestmark = pytest.mark.integration


def test_a_document_issued_event_on_the_broker_brings_the_signed_pdf_by_email(
    kafka: Kafka,
    tmp_path: Path,
    dev_pki: DevPki,
    service_factory: Callable[..., ServiceProcess],
    token: Callable[..., str],
) -> None:
    service_token = token("service", subject="notify")
    token_file = tmp_path / "notify-service.token"
    token_file.write_text(service_token, encoding="utf-8")
    pdf = signed_receipt(dev_pki)
    with providers() as (smtp, sms_a, _sms_b), FakeDossierDocuments(token=service_token) as fake:
        url = f"sqlite:///{tmp_path}/notify.db"
        env = notify_env(
            smtp,
            sms_a,
            CONSUMER_GROUP=fresh_group(kafka.bootstrap),
            DOSSIER_GRPC_TARGET=fake.target,
            DOSSIER_TOKEN_FILE=str(token_file),
        )
        service_factory("notify", url, **env).start()
        address = f"doc.{uuid.uuid4().hex[:8]}@example.vn"
        d = dossier(agency="STP", email_address=address)
        doc = fake.add(d.code, dossier_pb2.DOCUMENT_KIND_RECEIPT, pdf)
        event = document_issued(d, doc)
        produce(kafka.bootstrap, event, times=2)  # delivered twice: one email all the same

        wait_for(lambda: len(smtp.to(address)) == 1, 60, 0.1, "the receipt email")
        (mail,) = smtp.to(address)
        (part,) = list(mail.iter_attachments())
        assert part.get_content_type() == "application/pdf"
        assert part.get_filename() == doc.filename
        assert hashlib.sha256(part.get_content()).hexdigest() == doc.sha256
        link = f"https://dichvucong.danang.gov.vn/ho-so/{d.code}/giay-to/{doc.id}"
        wait_for(
            lambda: any(link in m["text"] for m in sms_a.messages_to("84" + PHONE[1:])),
            30,
            0.1,
            "the SMS naming the link",
        )
        wait_for(
            lambda: (
                states(url, d.code) == {"email": "delivered", "sms": "sending"}
                or states(url, d.code).get("email") == "delivered"
            ),
            30,
            0.1,
            "the email recorded as delivered",
        )
        assert {auth for _, auth in fake.calls} == {f"Bearer {service_token}"}
        assert len(smtp.to(address)) == 1
