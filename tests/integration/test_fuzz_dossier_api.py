"""Fuzzing the dossier API: generated requests never crash it and never write half a change.

Every refusal must be a deliberate status with a message; INTERNAL or UNKNOWN is a bug.
The number of examples per RPC is set so the whole file sends well over 10,000 requests.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text

from dossier_client import CITIZEN_ID, DossierClient
from harness import Kafka, Postgres, ServiceProcess
from motcua.dossier.v1 import dossier_pb2

pytestmark = pytest.mark.integration

ALLOWED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED,
}
EXAMPLES = 1700  # × 6 RPCs ≈ 10,200 generated requests
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)

texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "HT-001", "HT-004", "STP-261129-0001", "079203004567", "0905123456"]),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=600),
)
ints = st.one_of(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.integers(-5, 5))
documents = st.lists(
    st.builds(
        dossier_pb2.Document,
        name=texts,
        media_type=st.one_of(texts, st.just("application/pdf")),
        size_bytes=ints,
        sha256=st.one_of(texts, st.text("0123456789abcdef", min_size=64, max_size=64)),
        storage_uri=texts,
    ),
    max_size=3,
)
applicants = st.builds(
    dossier_pb2.Applicant,
    full_name=texts,
    citizen_id=st.one_of(texts, st.just(CITIZEN_ID)),
    phone=st.one_of(texts, st.just("0905123456")),
    email=st.one_of(texts, st.just("a@b.vn")),
    address=texts,
)
channels = st.integers(min_value=-3, max_value=6)


@pytest.fixture(scope="module")
def fuzz_target(
    kafka: Kafka,
    postgres: Postgres,
    signing_keys: tuple[bytes, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServiceProcess, str]]:
    """On PostgreSQL, the production database, which is the stricter about text (no NUL)."""
    folder = tmp_path_factory.mktemp("fuzz")
    url = postgres.create_database("fuzz")
    proc = ServiceProcess(
        "dossier",
        {
            "MOTCUA_DOSSIER_DATABASE_URL": url,
            "MOTCUA_DOSSIER_KAFKA_BOOTSTRAP": kafka.bootstrap,
            "MOTCUA_DOSSIER_JWT_PUBLIC_KEY_FILE": str(signing_keys[1]),
            "MOTCUA_DOSSIER_OUTBOX_RELAY_ENABLED": "false",
            "MOTCUA_DOSSIER_LOG_LEVEL": "WARNING",
            "MOTCUA_DOSSIER_CONSUMER_GROUP": f"fuzz-{uuid.uuid4().hex[:6]}",
        },
        folder,
    )
    proc.start()
    yield proc, url
    proc.terminate()


@pytest.fixture(scope="module")
def client(fuzz_target: tuple[ServiceProcess, str], token_module: str) -> DossierClient:
    return DossierClient(fuzz_target[0].target, token_module)


@pytest.fixture(scope="module")
def token_module(signing_keys: tuple[bytes, Path]) -> str:
    from motcua_kit.auth import mint_token

    return mint_token(signing_keys[0], "fuzzer", ["service"], ttl_seconds=7200)


def _call(fn, request) -> grpc.StatusCode:
    try:
        fn(request, timeout=30)
        return grpc.StatusCode.OK
    except grpc.RpcError as exc:
        code = exc.code()
        assert code in ALLOWED, f"{code}: {exc.details()} for {request!r}"
        assert exc.details(), "a refusal must say why"
        return code


def _counts(url: str) -> tuple[int, int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        result = (
            int(conn.execute(text("SELECT count(*) FROM dossiers")).scalar_one()),
            int(conn.execute(text("SELECT count(*) FROM outbox")).scalar_one()),
        )
    engine.dispose()
    return result


def test_fuzz_submit_dossier(
    client: DossierClient, fuzz_target: tuple[ServiceProcess, str]
) -> None:
    _, url = fuzz_target
    accepted: set[str] = set()

    @FUZZ
    @given(
        procedure=st.one_of(texts, st.sampled_from(["HT-001", "HT-004", "XD-001"])),
        applicant=applicants,
        docs=documents,
        channel=channels,
        key=st.one_of(texts, st.uuids().map(str)),
    )
    def run(procedure, applicant, docs, channel, key) -> None:
        request = dossier_pb2.SubmitDossierRequest(
            procedure_code=procedure,
            applicant=applicant,
            documents=docs,
            channel=channel,
            idempotency_key=key,
        )
        before = _counts(url) if len(accepted) % 50 == 0 else None
        try:
            response = client.stub.SubmitDossier(request, metadata=client.metadata, timeout=30)
            accepted.add(response.dossier.code)
        except grpc.RpcError as exc:
            assert exc.code() in ALLOWED, f"{exc.code()}: {exc.details()}"
            assert exc.details()
            if before is not None:
                assert _counts(url) == before, "a refused submit wrote something"

    run()
    dossiers, events = _counts(url)
    assert dossiers == len(accepted)
    assert events >= dossiers  # every dossier has its submitted event


@pytest.mark.parametrize("rpc", ["get", "list", "transition", "supplement", "withdraw"])
def test_fuzz_other_rpcs(client: DossierClient, rpc: str) -> None:
    stub, md = client.stub, client.metadata

    def call(method, request) -> None:
        _call(lambda r, timeout: method(r, metadata=md, timeout=timeout), request)

    strategies = {
        "get": st.builds(dossier_pb2.GetDossierRequest, code=texts),
        "list": st.builds(
            dossier_pb2.ListDossiersRequest,
            applicant_citizen_id=texts,
            agency_code=texts,
            status=st.integers(-2, 12),
            procedure_code=texts,
            overdue_only=st.booleans(),
            applicant_name=texts,
            page_size=st.integers(-5, 500),
            page_token=texts,
        ),
        "transition": st.builds(
            dossier_pb2.TransitionDossierRequest,
            code=texts,
            action=st.one_of(texts, st.sampled_from(["receive", "approve", "pay", "stop"])),
            comment=texts,
            expected_version=ints,
        ),
        "supplement": st.builds(
            dossier_pb2.SubmitSupplementRequest,
            code=texts,
            documents=documents,
            comment=texts,
            expected_version=ints,
        ),
        "withdraw": st.builds(
            dossier_pb2.WithdrawDossierRequest, code=texts, reason=texts, expected_version=ints
        ),
    }
    methods = {
        "get": stub.GetDossier,
        "list": stub.ListDossiers,
        "transition": stub.TransitionDossier,
        "supplement": stub.SubmitSupplement,
        "withdraw": stub.WithdrawDossier,
    }

    @FUZZ
    @given(request=strategies[rpc])
    def run(request) -> None:
        call(methods[rpc], request)

    run()
