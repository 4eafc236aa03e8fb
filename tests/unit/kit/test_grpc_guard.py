"""The edge guard names the exact field, however deep, before any service code runs."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from motcua.audit.v1 import audit_pb2
from motcua.dossier.v1 import dossier_pb2
from motcua_kit.grpc_server import malformed_field

NUL = "must not contain NUL characters"


def test_clean_requests_pass() -> None:
    req = dossier_pb2.SubmitDossierRequest(
        procedure_code="HT-001",
        applicant=dossier_pb2.Applicant(full_name="Nguyễn An"),
        documents=[dossier_pb2.Document(name="a")],
    )
    assert malformed_field(req) is None
    edge = Timestamp(seconds=253_402_300_799, nanos=999_999_999)  # 9999-12-31T23:59:59.999…
    assert malformed_field(audit_pb2.RecordAccessRequest(accessed_at=edge)) is None


def test_nul_is_found_in_nested_and_repeated_fields() -> None:
    assert malformed_field(dossier_pb2.GetDossierRequest(code="a\x00")) == ("code", NUL)
    req = dossier_pb2.SubmitDossierRequest(applicant=dossier_pb2.Applicant(address="x\x00y"))
    assert malformed_field(req) == ("applicant.address", NUL)
    req = dossier_pb2.SubmitDossierRequest(
        documents=[dossier_pb2.Document(name="ok"), dossier_pb2.Document(storage_uri="\x00")]
    )
    assert malformed_field(req) == ("documents[1].storage_uri", NUL)


def test_a_timestamp_python_cannot_hold_is_refused_by_name() -> None:
    for bad in (Timestamp(nanos=-1), Timestamp(seconds=2**62), Timestamp(nanos=10**9)):
        found = malformed_field(audit_pb2.RecordAccessRequest(accessed_at=bad))
        assert found is not None and found[0] == "accessed_at"
        assert "valid timestamp" in found[1]
