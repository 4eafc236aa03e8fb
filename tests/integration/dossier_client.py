"""A small typed client for the tests: SubmitDossier / GetDossier with a bearer token."""

from __future__ import annotations

import hashlib
from typing import Any

import grpc

from motcua.dossier.v1 import dossier_pb2, dossier_pb2_grpc

# Procedure codes from the shipped catalogue (services/dossier/motcua_dossier/data).
CITIZEN_ID = "079203004567"


def document(name: str = "Tờ khai đăng ký khai sinh") -> dossier_pb2.Document:
    return dossier_pb2.Document(
        name=name,
        media_type="application/pdf",
        size_bytes=52_113,
        sha256=hashlib.sha256(name.encode()).hexdigest(),
        storage_uri="s3://motcua-docs/x.pdf",
    )


def submit_request(
    procedure_code: str, key: str, **applicant: Any
) -> dossier_pb2.SubmitDossierRequest:
    fields = {
        "full_name": "Nguyễn Thị Thu Hà",
        "citizen_id": CITIZEN_ID,
        "phone": "0905123456",
        "email": "thuha@example.vn",
        "address": "12 Trần Phú, phường Hội An, thành phố Đà Nẵng",
    }
    fields.update(applicant)
    return dossier_pb2.SubmitDossierRequest(
        procedure_code=procedure_code,
        applicant=dossier_pb2.Applicant(**fields),
        documents=[document()],
        channel=dossier_pb2.CHANNEL_ONLINE,
        idempotency_key=key,
    )


class DossierClient:
    def __init__(self, target: str, token: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.stub = dossier_pb2_grpc.DossierServiceStub(self.channel)
        self.metadata = [("authorization", f"Bearer {token}")]

    def submit(
        self, request: dossier_pb2.SubmitDossierRequest
    ) -> dossier_pb2.SubmitDossierResponse:
        return self.stub.SubmitDossier(request, metadata=self.metadata, timeout=30)

    def get(self, code: str) -> dossier_pb2.Dossier:
        return self.stub.GetDossier(
            dossier_pb2.GetDossierRequest(code=code), metadata=self.metadata, timeout=30
        ).dossier

    def close(self) -> None:
        self.channel.close()
