"""The NUL guard names the exact field, however deep, before any service code runs."""

from __future__ import annotations

from motcua.dossier.v1 import dossier_pb2
from motcua_kit.grpc_server import field_with_nul


def test_clean_requests_pass() -> None:
    req = dossier_pb2.SubmitDossierRequest(
        procedure_code="HT-001",
        applicant=dossier_pb2.Applicant(full_name="Nguyễn An"),
        documents=[dossier_pb2.Document(name="a")],
    )
    assert field_with_nul(req) is None


def test_nul_is_found_in_nested_and_repeated_fields() -> None:
    assert field_with_nul(dossier_pb2.GetDossierRequest(code="a\x00")) == "code"
    req = dossier_pb2.SubmitDossierRequest(applicant=dossier_pb2.Applicant(address="x\x00y"))
    assert field_with_nul(req) == "applicant.address"
    req = dossier_pb2.SubmitDossierRequest(
        documents=[dossier_pb2.Document(name="ok"), dossier_pb2.Document(storage_uri="\x00")]
    )
    assert field_with_nul(req) == "documents[1].storage_uri"
