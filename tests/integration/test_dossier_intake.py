"""SubmitDossier / GetDossier over real gRPC: validation, idempotency, codes, authorisation."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from urllib.request import urlopen

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy import create_engine, text

from dossier_client import CITIZEN_ID, DossierClient, submit_request
from harness import ServiceProcess
from motcua.dossier.v1 import dossier_pb2

pytestmark = pytest.mark.integration


@pytest.fixture
def dossier_service(
    database: Callable[[str], str], service_factory: Callable[..., ServiceProcess]
) -> tuple[ServiceProcess, str]:
    url = database("dossier")
    return service_factory("dossier", url).start(OUTBOX_RELAY_ENABLED="false"), url


def _counts(url: str) -> tuple[int, int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        result = (
            conn.execute(text("SELECT count(*) FROM dossiers")).scalar_one(),
            # Submitted events only: the service also consumes the shared broker's payment
            # topic, where other tests' events for a repeated code are refused and recorded.
            conn.execute(
                text("SELECT count(*) FROM outbox WHERE event_type = :t"),
                {"t": "vn.motcua.dossier.submitted.v1"},
            ).scalar_one(),
        )
    engine.dispose()
    return result


def _violations(err: grpc.RpcError) -> list[str]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    fields = []
    for detail in status.details:
        br = error_details_pb2.BadRequest()
        detail.Unpack(br)
        fields += [v.field for v in br.field_violations]
    return fields


def _bad(**changes: object) -> dossier_pb2.SubmitDossierRequest:
    req = submit_request("HT-001", f"k-{uuid.uuid4()}")
    for path, value in changes.items():
        target = req
        parts = path.split("__")
        for part in parts[:-1]:
            target = getattr(target, part)
        if isinstance(value, list):
            field = getattr(target, parts[-1])
            del field[:]
            field.extend(value)
        else:
            setattr(target, parts[-1], value)
    return req


BAD_INPUT = [
    ("unknown procedure", {"procedure_code": "NO-SUCH-1"}, "procedure_code"),
    ("missing procedure", {"procedure_code": ""}, "procedure_code"),
    ("CCCD 11 digits", {"applicant__citizen_id": "07920300456"}, "applicant.citizen_id"),
    ("CCCD letters", {"applicant__citizen_id": "07920300456A"}, "applicant.citizen_id"),
    ("phone not Vietnamese", {"applicant__phone": "12345"}, "applicant.phone"),
    ("missing phone", {"applicant__phone": ""}, "applicant.phone"),
    ("bad email", {"applicant__email": "thuha@"}, "applicant.email"),
    ("missing full name", {"applicant__full_name": "   "}, "applicant.full_name"),
    ("missing address", {"applicant__address": ""}, "applicant.address"),
    ("no channel", {"channel": 0}, "channel"),
    ("no idempotency key", {"idempotency_key": ""}, "idempotency_key"),
    (
        "bad sha256",
        {
            "documents": [
                dossier_pb2.Document(
                    name="a", media_type="application/pdf", size_bytes=1, sha256="xyz"
                )
            ]
        },
        "documents[0].sha256",
    ),
    (
        "empty document",
        {
            "documents": [
                dossier_pb2.Document(
                    name="a", media_type="application/pdf", size_bytes=0, sha256="a" * 64
                )
            ]
        },
        "documents[0].size_bytes",
    ),
]


@pytest.mark.parametrize(("case", "changes", "field"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_refused_naming_the_field_and_nothing_is_written(
    dossier_service: tuple[ServiceProcess, str],
    token: Callable[..., str],
    case: str,
    changes: dict[str, object],
    field: str,
) -> None:
    proc, url = dossier_service
    client = DossierClient(proc.target, token("service"))
    before = _counts(url)
    with pytest.raises(grpc.RpcError) as info:
        client.submit(_bad(**changes))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, case
    assert info.value.details().startswith(f"{field}:"), info.value.details()
    assert _violations(info.value) == [field]
    assert _counts(url) == before


def test_text_is_normalised_to_nfc(
    dossier_service: tuple[ServiceProcess, str], token: Callable[..., str]
) -> None:
    proc, _ = dossier_service
    client = DossierClient(proc.target, token("citizen", citizen_id=CITIZEN_ID))
    decomposed = "Nguye\u0302\u0303n  Thi\u0323 Ha\u0300"  # NFD, double space
    d = client.submit(submit_request("HT-001", "nfc-1", full_name=decomposed)).dossier
    assert d.applicant.full_name == "Nguyễn Thị Hà"
    assert client.get(d.code).applicant.full_name == "Nguyễn Thị Hà"


def test_idempotency_same_body_replays_other_body_is_refused(
    dossier_service: tuple[ServiceProcess, str], token: Callable[..., str]
) -> None:
    proc, url = dossier_service
    client = DossierClient(proc.target, token("citizen", citizen_id=CITIZEN_ID))
    first = client.submit(submit_request("HT-004", "same-key"))
    again = client.submit(submit_request("HT-004", "same-key"))
    assert not first.replayed and again.replayed
    assert again.dossier == first.dossier
    with pytest.raises(grpc.RpcError) as info:
        client.submit(submit_request("HT-004", "same-key", address="99 Lê Lợi, Đà Nẵng"))
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "different submission" in info.value.details()
    assert first.dossier.code in info.value.details()
    assert _counts(url) == (1, 1)


def test_fifty_concurrent_submits_get_fifty_consecutive_codes(
    dossier_service: tuple[ServiceProcess, str], token: Callable[..., str]
) -> None:
    proc, url = dossier_service
    client = DossierClient(proc.target, token("officer", agency="STP"))
    with ThreadPoolExecutor(max_workers=50) as pool:
        codes = list(
            pool.map(
                lambda i: client.submit(submit_request("HT-004", f"c-{i}")).dossier.code,
                range(50),
            )
        )
    assert len(set(codes)) == 50
    prefixes = {c.rsplit("-", 1)[0] for c in codes}
    assert len(prefixes) == 1 and prefixes.pop().startswith("STP-")
    assert sorted(int(c.rsplit("-", 1)[1]) for c in codes) == list(range(1, 51))
    assert _counts(url) == (50, 50)


def test_authentication_and_authorisation(
    dossier_service: tuple[ServiceProcess, str], token: Callable[..., str]
) -> None:
    proc, _ = dossier_service
    owner = DossierClient(proc.target, token("citizen", citizen_id=CITIZEN_ID))
    code = owner.submit(submit_request("HT-004", "auth-1")).dossier.code

    with pytest.raises(grpc.RpcError) as info:
        DossierClient(proc.target, "not-a-jwt").get(code)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    anonymous = dossier_pb2.GetDossierRequest(code=code)
    with pytest.raises(grpc.RpcError) as info:
        owner.stub.GetDossier(anonymous, timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED

    stranger = DossierClient(proc.target, token("citizen", citizen_id="001099000111"))
    with pytest.raises(grpc.RpcError) as info:
        stranger.get(code)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as info:
        stranger.submit(submit_request("HT-004", "auth-2"))  # someone else's CCCD
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED

    other_agency = DossierClient(proc.target, token("officer", agency="SXD"))
    with pytest.raises(grpc.RpcError) as info:
        other_agency.get(code)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as info:
        other_agency.submit(submit_request("HT-004", "auth-3"))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED

    assert DossierClient(proc.target, token("officer", agency="STP")).get(code).code == code


def test_metrics_health_and_readiness_endpoints(
    dossier_service: tuple[ServiceProcess, str], token: Callable[..., str]
) -> None:
    proc, _ = dossier_service
    client = DossierClient(proc.target, token("citizen", citizen_id=CITIZEN_ID))
    client.submit(submit_request("HT-001", "metrics-1"))
    with pytest.raises(grpc.RpcError):
        client.submit(submit_request("HT-001", "metrics-2", citizen_id="1"))
    base = f"http://127.0.0.1:{proc.metrics_port}"
    assert urlopen(f"{base}/healthz", timeout=5).status == 200
    assert urlopen(f"{base}/readyz", timeout=5).status == 200
    body = urlopen(f"{base}/metrics", timeout=5).read().decode()
    submit = 'method="/motcua.dossier.v1.DossierService/SubmitDossier"'
    assert f'motcua_grpc_requests_total{{code="OK",{submit},service="dossier"}} 1.0' in body
    assert (
        f'motcua_grpc_requests_total{{code="INVALID_ARGUMENT",{submit},service="dossier"}} 1.0'
        in body
    )
    assert "motcua_grpc_request_seconds_bucket" in body
