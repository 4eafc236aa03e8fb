"""Fuzzing every RPC of every service with requests generated from the protos themselves.

The dossier API has hand-written strategies (test_fuzz_dossier_api.py, ~10,200 requests);
here each request message is generated from its descriptor — every field, nested messages,
repeated fields, out-of-range enums, NUL characters, huge integers — so an RPC added to a
proto is fuzzed without anyone writing a strategy. Callers vary too: no token, a citizen,
an officer of another agency, an admin, a service. Each service runs as a process on
PostgreSQL (the stricter database). Every answer must be OK or a deliberate refusal with a
message, and a refused call must leave the service's database as it was.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, inspect, text

from harness import Kafka, Postgres, ServiceProcess, free_port
from motcua.audit.v1 import audit_pb2
from motcua.dossier.v1 import dossier_pb2
from motcua.notify.v1 import notify_pb2
from motcua.payment.v1 import payment_pb2
from motcua_payment.sandbox import Merchant, SandboxGateway

pytestmark = pytest.mark.integration

EXAMPLES = 400  # per RPC: 26 RPCs → ~10,000 requests, on top of the dossier file's 10,200
REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.OUT_OF_RANGE,
}
CITIZEN = "079203004567"
SERVICES = {  # service name → the module of its protos
    "dossier": dossier_pb2,
    "payment": payment_pb2,
    "notify": notify_pb2,
    "audit": audit_pb2,
}

TEXTS = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        ["", " ", "HT-001", "STP", "PHOIAN", "STP-261129-0001", CITIZEN, "0905123456", "a@b.vn"]
    ),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=400),
    st.uuids().map(str),
)
_INTS = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _scalar(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return TEXTS
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, width=32 if kind == FieldDescriptor.TYPE_FLOAT else 64)
    if kind == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        return st.integers(-3, len(field.enum_type.values) + 3)  # proto3 enums are open
    if kind == FieldDescriptor.TYPE_MESSAGE:
        assert field.message_type is not None
        return messages(field.message_type, depth + 1)
    low, high = _INTS[kind]
    return st.one_of(
        st.integers(-5, 1000).filter(lambda v: low <= v <= high), st.integers(low, high)
    )


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Any message of ``descriptor``: each field left unset or given a generated value."""
    cls = message_factory.GetMessageClass(descriptor)
    if depth > 2:
        return st.just(cls())
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        value = _scalar(field, depth)
        if field.is_repeated:
            value = st.lists(value, max_size=3)
        fields[field.name] = st.one_of(st.none(), value)

    def build(values: dict[str, Any]) -> Message:
        message = cls()
        for name, value in values.items():
            if value is None:
                continue
            field = descriptor.fields_by_name[name]
            if field.is_repeated:
                target = getattr(message, name)
                if field.type == FieldDescriptor.TYPE_MESSAGE:
                    for item in value:
                        target.add().CopyFrom(item)
                else:
                    target.extend(value)
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                getattr(message, name).CopyFrom(value)
            else:
                setattr(message, name, value)
        return message

    return st.fixed_dictionaries(fields).map(build)


def _methods() -> list[tuple[str, MethodDescriptor]]:
    return [
        (name, method)
        for name, module in SERVICES.items()
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    ]


@pytest.fixture(scope="module")
def targets(
    kafka: Kafka,
    postgres: Postgres,
    signing_keys: tuple[bytes, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[ServiceProcess, str]]]:
    """All four services on PostgreSQL, each with its own database; relays and timers quiet."""
    folder = tmp_path_factory.mktemp("fuzz-all")
    secret = folder / "gateway.secret"
    secret.write_text("fuzz-gateway-secret-0123456789abcdef")
    extra = {
        "dossier": {"OUTBOX_RELAY_ENABLED": "false"},
        "payment": {
            "OUTBOX_RELAY_ENABLED": "false",
            "GATEWAY_MERCHANT_CODE": "MOTCUA01",
            "GATEWAY_HASH_SECRET_FILE": str(secret),
            "RECONCILE_AFTER_SECONDS": "86400",
            "PAYMENT_EXPIRY_SECONDS": "86400",
            "CALLBACK_PORT": str(free_port()),
        },
        "notify": {
            "OUTBOX_RELAY_ENABLED": "false",
            "QUIET_HOURS": "",
            "RECEIPTS_PORT": str(free_port()),
        },
        # Tree heads are signed by a timer, not by a request: a head signed while a refused
        # call was being counted is not the call's write (seen in CI at the 60 s default).
        "audit": {"TREE_HEAD_INTERVAL_SECONDS": "86400"},
    }
    procs: dict[str, tuple[ServiceProcess, str]] = {}
    with SandboxGateway(merchants=[Merchant("MOTCUA01", secret.read_bytes(), "")]) as sandbox:
        extra["payment"]["GATEWAY_BASE_URL"] = sandbox.url
        try:
            for name in SERVICES:
                url = postgres.create_database(f"fuzz_{name}")
                env = {
                    "DATABASE_URL": url,
                    "KAFKA_BOOTSTRAP": kafka.bootstrap,
                    "JWT_PUBLIC_KEY_FILE": str(signing_keys[1]),
                    "LOG_LEVEL": "WARNING",
                    "CONSUMER_GROUP": f"fuzz-{name}-{uuid.uuid4().hex[:6]}",
                    **extra[name],
                }
                prefix = f"MOTCUA_{name.upper()}_"
                proc = ServiceProcess(name, {prefix + k: v for k, v in env.items()}, folder)
                procs[name] = (proc, url)
                proc.start()
            yield procs
        finally:
            for proc, _ in procs.values():
                if proc.proc is not None and proc.proc.poll() is None:
                    proc.terminate()


@pytest.fixture(scope="module")
def callers(token: Callable[..., str]) -> list[tuple[tuple[str, str], ...]]:
    """Who calls: nobody, a citizen, an officer of one agency, an admin, a service."""
    tokens = [
        token("citizen", citizen_id=CITIZEN),
        token("officer", agency="STP"),
        token("admin"),
        token("service", subject="motcua-fuzz"),
    ]
    return [(), *((("authorization", f"Bearer {t}"),) for t in tokens)]


def _rows(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        tables = [t for t in inspect(engine).get_table_names() if t != "alembic_version"]
        with engine.connect() as conn:
            return {
                t: int(conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar_one())
                for t in tables
            }
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("service", "method"), _methods(), ids=[f"{s}.{m.name}" for s, m in _methods()]
)
def test_generated_requests_get_an_answer_or_a_reasoned_refusal_and_refusals_write_nothing(
    service: str,
    method: MethodDescriptor,
    targets: dict[str, tuple[ServiceProcess, str]],
    callers: list[tuple[tuple[str, str], ...]],
) -> None:
    proc, url = targets[service]
    request_type = method.input_type
    reply = message_factory.GetMessageClass(method.output_type)
    seen: dict[grpc.StatusCode, int] = {}
    with grpc.insecure_channel(proc.target) as channel:
        call = channel.unary_unary(
            f"/{method.containing_service.full_name}/{method.name}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=reply.FromString,
        )

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(
            request=messages(request_type), who=st.sampled_from(callers), check=st.integers(0, 9)
        )
        def run(request: Message, who: tuple[tuple[str, str], ...], check: int) -> None:
            before = _rows(url) if check == 0 else None  # a tenth of the calls, to keep it quick
            try:
                call(request, metadata=who, timeout=30)
                seen[grpc.StatusCode.OK] = seen.get(grpc.StatusCode.OK, 0) + 1
            except grpc.RpcError as exc:
                code = exc.code()
                seen[code] = seen.get(code, 0) + 1
                assert code in REFUSALS, f"{code}: {exc.details()} for {request!r}"
                assert exc.details(), f"{code} without a message"
                if before is not None:
                    assert _rows(url) == before, f"a refused {method.name} wrote something"

        run()
    assert proc.proc is not None and proc.proc.poll() is None, f"{service} died"
    # A request without fields leaves only the callers and the check to vary: 5 × 10 cases.
    assert sum(seen.values()) >= (EXAMPLES if request_type.fields else 50)
