"""Issue 3 over real gRPC: every workflow step, authorisation, concurrency, payment events."""

from __future__ import annotations

import unicodedata
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import grpc
import httpx
import pytest
from sqlalchemy import bindparam, create_engine, text

from dossier_client import CITIZEN_ID, DossierClient, document, submit_request
from harness import Kafka, ServiceProcess, wait_for
from motcua.dossier.v1 import dossier_pb2, events_pb2
from motcua.payment.v1 import events_pb2 as payment_events_pb2
from motcua.payment.v1 import payment_pb2
from motcua_dossier.domain.catalogue import Catalogue
from motcua_dossier.events import PAYMENT_REQUESTED, PAYMENT_SUCCEEDED
from motcua_kit.envelope import Event, encode

pytestmark = pytest.mark.integration

CATALOGUE = Catalogue.load()
OTHER_CITIZEN = "001099000111"


@pytest.fixture(scope="module")
def shared(
    kafka: Kafka,
    signing_keys: tuple[bytes, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServiceProcess, str]]:
    """One dossier service (SQLite) for the whole module: most tests make their own dossiers."""
    folder = tmp_path_factory.mktemp("dossier-workflow")
    url = f"sqlite:///{folder}/dossier.db"
    proc = ServiceProcess(
        "dossier",
        {
            "MOTCUA_DOSSIER_DATABASE_URL": url,
            "MOTCUA_DOSSIER_KAFKA_BOOTSTRAP": kafka.bootstrap,
            "MOTCUA_DOSSIER_JWT_PUBLIC_KEY_FILE": str(signing_keys[1]),
            "MOTCUA_DOSSIER_CONSUMER_GROUP": f"dossier-{uuid.uuid4().hex[:6]}",
        },
        folder,
    )
    proc.start()
    yield proc, url
    proc.terminate()


class Actors:
    """Clients for every role the matrix needs."""

    def __init__(self, target: str, token: Callable[..., str], agency: str) -> None:
        self.owner = DossierClient(target, token("citizen", citizen_id=CITIZEN_ID))
        self.other_citizen = DossierClient(target, token("citizen", citizen_id=OTHER_CITIZEN))
        self.officer = DossierClient(target, token("officer", agency=agency))
        self.other_officer = DossierClient(target, token("officer", agency="SXD"))
        self.admin = DossierClient(target, token("admin"))
        self.service = DossierClient(target, token("service"))

    def for_role(self, role: str) -> DossierClient:
        return {"citizen": self.owner, "officer": self.officer, "admin": self.admin}.get(
            role, self.service
        )


def _transition(
    client: DossierClient, code: str, action: str, version: int, comment: str = "lý do"
) -> dossier_pb2.Dossier:
    return client.stub.TransitionDossier(
        dossier_pb2.TransitionDossierRequest(
            code=code, action=action, comment=comment, expected_version=version
        ),
        metadata=client.metadata,
        timeout=30,
    ).dossier


def _outbox_types(url: str, code: str) -> list[str]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT event_type FROM outbox WHERE event_key = :c ORDER BY id"), {"c": code}
        ).all()
    engine.dispose()
    return [r[0] for r in rows]


def _paths(workflow_id: str) -> dict[int, list[str]]:
    """Shortest action path from the initial state to every state."""
    wf = CATALOGUE.workflow(workflow_id)
    paths: dict[int, list[str]] = {wf.initial: []}
    queue = deque([wf.initial])
    while queue:
        state = queue.popleft()
        for action in wf.actions:
            if state in action.from_states and action.to_state not in paths:
                paths[action.to_state] = [*paths[state], action.name]
                queue.append(action.to_state)
    return paths


def _role_for(workflow_id: str, action: str) -> str:
    roles = CATALOGUE.workflow(workflow_id).action(action).roles
    for role in ("officer", "citizen", "service", "admin"):
        if role in roles:
            return role
    raise AssertionError(roles)


PROCEDURE_OF = {"standard": "HT-001", "with_payment": "HT-004"}
AGENCY_OF = {"standard": "PHOIAN", "with_payment": "STP"}

LEGAL = [
    (wf, state, action.name, action.to_state)
    for wf in PROCEDURE_OF
    for action in CATALOGUE.workflow(wf).actions
    for state in action.from_states
]
ILLEGAL = [
    (wf, state.code, action.name)
    for wf in PROCEDURE_OF
    for state in CATALOGUE.workflow(wf).states
    for action in CATALOGUE.workflow(wf).actions
    if state.code not in action.from_states and not state.terminal
] + [
    (wf, state.code, "receive")
    for wf in PROCEDURE_OF
    for state in CATALOGUE.workflow(wf).states
    if state.terminal
]


def _drive(actors: Actors, workflow_id: str, state: int) -> tuple[str, int]:
    """A fresh dossier of the workflow, walked to ``state``; returns (code, version)."""
    d = actors.owner.submit(submit_request(PROCEDURE_OF[workflow_id], f"k-{uuid.uuid4()}")).dossier
    for action in _paths(workflow_id)[state]:
        d = _transition(actors.for_role(_role_for(workflow_id, action)), d.code, action, d.version)
    assert d.status == state
    return d.code, d.version


@pytest.mark.parametrize(
    ("workflow_id", "state", "action", "target"),
    LEGAL,
    ids=[f"{w}:{s}-{a}->{t}" for w, s, a, t in LEGAL],
)
def test_every_legal_transition_succeeds_and_emits_one_event(
    shared: tuple[ServiceProcess, str],
    token: Callable[..., str],
    workflow_id: str,
    state: int,
    action: str,
    target: int,
) -> None:
    from motcua_dossier import events

    proc, url = shared
    actors = Actors(proc.target, token, AGENCY_OF[workflow_id])
    code, version = _drive(actors, workflow_id, state)
    before = _outbox_types(url, code)
    after = _transition(actors.for_role(_role_for(workflow_id, action)), code, action, version)
    assert after.status == target
    assert after.version == version + 1
    emitted = _outbox_types(url, code)[len(before) :]
    assert emitted == [events.ACTION_EVENTS[action]]


@pytest.mark.parametrize(
    ("workflow_id", "state", "action"),
    ILLEGAL,
    ids=[f"{w}:{s}-{a}" for w, s, a in ILLEGAL],
)
def test_every_illegal_transition_is_refused_naming_state_and_allowed_actions(
    shared: tuple[ServiceProcess, str],
    token: Callable[..., str],
    workflow_id: str,
    state: int,
    action: str,
) -> None:
    proc, url = shared
    actors = Actors(proc.target, token, AGENCY_OF[workflow_id])
    code, version = _drive(actors, workflow_id, state)
    before = _outbox_types(url, code)
    role = _role_for(workflow_id, action)
    with pytest.raises(grpc.RpcError) as info:
        _transition(actors.for_role(role), code, action, version)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = info.value.details()
    assert f"state {state}" in details
    allowed = CATALOGUE.workflow(workflow_id).allowed_actions(state, role)
    for a in allowed:
        assert a.name in details
    assert _outbox_types(url, code) == before
    assert actors.admin.get(code).version == version


def test_supplement_and_withdraw_rpcs(
    shared: tuple[ServiceProcess, str], token: Callable[..., str]
) -> None:
    proc, url = shared
    actors = Actors(proc.target, token, "PHOIAN")
    code, version = _drive(actors, "standard", 5)
    answered = actors.owner.stub.SubmitSupplement(
        dossier_pb2.SubmitSupplementRequest(
            code=code,
            documents=[document("Bản sao CCCD")],
            comment="Bổ sung bản sao",
            expected_version=version,
        ),
        metadata=actors.owner.metadata,
        timeout=30,
    ).dossier
    assert answered.status == dossier_pb2.DOSSIER_STATUS_PROCESSING
    assert [d.name for d in answered.documents][-1] == "Bản sao CCCD"

    code2, version2 = _drive(actors, "standard", 2)
    withdrawn = actors.owner.stub.WithdrawDossier(
        dossier_pb2.WithdrawDossierRequest(
            code=code2, reason="Nộp nhầm thủ tục", expected_version=version2
        ),
        metadata=actors.owner.metadata,
        timeout=30,
    ).dossier
    assert withdrawn.status == dossier_pb2.DOSSIER_STATUS_WITHDRAWN
    assert _outbox_types(url, code2)[-1] == "vn.motcua.dossier.withdrawn.v1"


def test_procedures_are_listed_from_the_catalogue(
    shared: tuple[ServiceProcess, str], token: Callable[..., str]
) -> None:
    proc, _ = shared
    client = DossierClient(proc.target, token("citizen", citizen_id=CITIZEN_ID))
    all_procs = client.stub.ListProcedures(
        dossier_pb2.ListProceduresRequest(), metadata=client.metadata, timeout=10
    ).procedures
    assert len(all_procs) == len(CATALOGUE.procedures())
    stp = client.stub.ListProcedures(
        dossier_pb2.ListProceduresRequest(agency_code="STP"), metadata=client.metadata
    ).procedures
    assert {p.agency_code for p in stp} == {"STP"}
    one = client.stub.GetProcedure(
        dossier_pb2.GetProcedureRequest(code="HT-004"), metadata=client.metadata
    ).procedure
    assert one.fee_vnd == 8000 and one.name.startswith("Cấp bản sao trích lục")
    free = client.stub.GetProcedure(
        dossier_pb2.GetProcedureRequest(code="HT-001"), metadata=client.metadata
    ).procedure
    assert not free.HasField("fee_vnd")
    with pytest.raises(grpc.RpcError) as info:
        client.stub.GetProcedure(
            dossier_pb2.GetProcedureRequest(code="NOPE"), metadata=client.metadata
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_list_pages_are_stable_and_nfd_queries_find_nfc_names(
    shared: tuple[ServiceProcess, str], token: Callable[..., str]
) -> None:
    proc, _ = shared
    citizen_id = "079299" + uuid.uuid4().hex[:6].translate(str.maketrans("abcdef", "123456"))
    client = DossierClient(proc.target, token("citizen", citizen_id=citizen_id))
    name = "Trần Thị Ngọc Ánh"
    nfd = unicodedata.normalize("NFD", name)
    assert nfd != name
    codes = [
        client.submit(
            submit_request("HT-001", f"p-{i}", citizen_id=citizen_id, full_name=nfd)
        ).dossier.code
        for i in range(7)
    ]
    seen: list[str] = []
    token_ = ""
    while True:
        page = client.stub.ListDossiers(
            dossier_pb2.ListDossiersRequest(page_size=3, page_token=token_),
            metadata=client.metadata,
            timeout=10,
        )
        seen += [d.code for d in page.dossiers]
        assert all(d.applicant.full_name == name for d in page.dossiers)
        token_ = page.next_page_token
        if not token_:
            break
    assert sorted(seen) == sorted(codes) and len(seen) == 7
    found = client.stub.ListDossiers(
        dossier_pb2.ListDossiersRequest(applicant_name=unicodedata.normalize("NFD", "Ngọc Ánh")),
        metadata=client.metadata,
    ).dossiers
    assert len(found) == 7
    with pytest.raises(grpc.RpcError) as info:
        client.stub.ListDossiers(
            dossier_pb2.ListDossiersRequest(page_size=3, page_token="garbage!"),
            metadata=client.metadata,
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in info.value.details()


# -- the authorisation matrix -------------------------------------------------------------------
WHO = ["owner", "other_citizen", "officer", "other_officer", "admin", "service"]
OK, NF, PD, UA = "OK", "NOT_FOUND", "PERMISSION_DENIED", "UNAUTHENTICATED"
MATRIX = {
    #                  owner other_cit officer other_off admin service
    "GetDossier": [OK, NF, OK, NF, OK, OK],
    "ListDossiers": [OK, OK, OK, OK, OK, OK],
    "Receive": [PD, NF, OK, NF, PD, PD],
    "Withdraw": [OK, NF, PD, NF, PD, PD],
    "SubmitSupplement": [OK, NF, PD, NF, PD, PD],
    "GetStatistics": [PD, PD, OK, PD, OK, OK],
    "SubmitDossier": [OK, PD, OK, PD, OK, OK],
    "ListProcedures": [OK, OK, OK, OK, OK, OK],
    "GetProcedure": [OK, OK, OK, OK, OK, OK],
}
CELLS = [(rpc, who, MATRIX[rpc][i]) for rpc in MATRIX for i, who in enumerate(WHO)]


@pytest.mark.parametrize(("rpc", "who", "expected"), CELLS, ids=[f"{r}-{w}" for r, w, _ in CELLS])
def test_authorisation_matrix(
    shared: tuple[ServiceProcess, str],
    token: Callable[..., str],
    rpc: str,
    who: str,
    expected: str,
) -> None:
    proc, _ = shared
    actors = Actors(proc.target, token, "STP")
    client: DossierClient = getattr(actors, who)
    state = 5 if rpc == "SubmitSupplement" else 1
    code, version = _drive(actors, "with_payment", 1) if state == 1 else (None, 0)
    if state == 5:
        # with_payment reaches 5 through the payment step.
        code, version = _drive(actors, "with_payment", 5)
    md = client.metadata
    calls = {
        "GetDossier": lambda: client.get(code),
        "ListDossiers": lambda: client.stub.ListDossiers(
            dossier_pb2.ListDossiersRequest(), metadata=md
        ),
        "Receive": lambda: _transition(client, code, "receive", version),
        "Withdraw": lambda: client.stub.WithdrawDossier(
            dossier_pb2.WithdrawDossierRequest(code=code, reason="x", expected_version=version),
            metadata=md,
        ),
        "SubmitSupplement": lambda: client.stub.SubmitSupplement(
            dossier_pb2.SubmitSupplementRequest(
                code=code, documents=[document("Bổ sung")], expected_version=version
            ),
            metadata=md,
        ),
        "GetStatistics": lambda: client.stub.GetStatistics(
            dossier_pb2.GetStatisticsRequest(agency_code="STP"), metadata=md
        ),
        "SubmitDossier": lambda: client.submit(submit_request("HT-004", f"m-{uuid.uuid4()}")),
        "ListProcedures": lambda: client.stub.ListProcedures(
            dossier_pb2.ListProceduresRequest(), metadata=md
        ),
        "GetProcedure": lambda: client.stub.GetProcedure(
            dossier_pb2.GetProcedureRequest(code="HT-004"), metadata=md
        ),
    }
    if expected == OK:
        calls[rpc]()
    else:
        with pytest.raises(grpc.RpcError) as info:
            calls[rpc]()
        assert info.value.code().name == expected, info.value.details()
    if rpc == "ListDossiers" and who in ("other_citizen", "other_officer"):
        listed = client.stub.ListDossiers(dossier_pb2.ListDossiersRequest(), metadata=md)
        assert code not in {d.code for d in listed.dossiers}


def test_calls_without_a_token_are_unauthenticated(shared: tuple[ServiceProcess, str]) -> None:
    proc, _ = shared
    client = DossierClient(proc.target, "x")
    for call in (
        lambda: client.stub.ListDossiers(dossier_pb2.ListDossiersRequest(), timeout=5),
        lambda: client.stub.ListProcedures(dossier_pb2.ListProceduresRequest(), timeout=5),
        lambda: client.stub.TransitionDossier(dossier_pb2.TransitionDossierRequest(), timeout=5),
    ):
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


# -- concurrency and payment events ---------------------------------------------------------------
def test_twenty_parallel_transitions_one_wins_nineteen_aborted(
    database: Callable[[str], str],
    service_factory: Callable[..., ServiceProcess],
    token: Callable[..., str],
) -> None:
    url = database("dossier")
    proc = service_factory("dossier", url).start(OUTBOX_RELAY_ENABLED="false")
    officers = [DossierClient(proc.target, token("officer", agency="STP")) for _ in range(20)]
    d = officers[0].submit(submit_request("HT-004", "race")).dossier

    def attempt(client: DossierClient) -> str:
        try:
            _transition(client, d.code, "receive", d.version)
            return "OK"
        except grpc.RpcError as exc:
            return exc.code().name

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(attempt, officers))
    assert sorted(results) == ["ABORTED"] * 19 + ["OK"]
    assert _outbox_types(url, d.code).count("vn.motcua.dossier.received.v1") == 1
    assert officers[0].get(d.code).version == d.version + 1


def _payment_event(
    event_type: str, code: str, payment_id: str, amount: int, agency: str = "STP"
) -> Event:
    """A payment event as the payment service publishes it (key = the dossier code)."""
    return Event.new(
        source="/motcua/payment",
        type=event_type,
        subject=code,
        message=payment_events_pb2.PaymentEvent(
            payment=payment_pb2.Payment(
                id=payment_id, dossier_code=code, agency_code=agency, amount_vnd=amount
            )
        ),
    )


def _send(kafka: Kafka, *sent: Event) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=[kafka.bootstrap], api_version=(4, 0))
    for event in sent:
        record = encode(event)
        producer.send(
            "motcua.payment.v1", key=record.key, value=record.value, headers=record.headers
        ).get(30)
    producer.close()


def _handled(url: str, *sent: Event) -> None:
    engine = create_engine(url)
    ids = sorted({e.id for e in sent})
    with engine.connect() as conn:
        wait_for(
            lambda: (
                conn.execute(
                    text("SELECT count(*) FROM inbox WHERE event_id IN :ids").bindparams(
                        bindparam("ids", expanding=True)
                    ),
                    {"ids": ids},
                ).scalar()
                == len(ids)
            ),
            60,
            0.2,
            "payment events handled",
        )
    engine.dispose()


def test_payment_succeeded_delivered_twice_moves_the_dossier_once(
    own_kafka: Kafka,
    database: Callable[[str], str],
    service_factory: Callable[..., ServiceProcess],
    token: Callable[..., str],
) -> None:
    url = database("dossier")
    # A broker of its own: these payment ids and dossier codes must meet no other test's.
    kafka = own_kafka
    proc = service_factory("dossier", url, KAFKA_BOOTSTRAP=kafka.bootstrap).start()
    actors = Actors(proc.target, token, "STP")
    code, version = _drive(actors, "with_payment", 6)
    fee = actors.admin.get(code).fee_vnd
    payment_id = uuid.uuid4().hex
    announced = _payment_event(PAYMENT_REQUESTED, code, payment_id, fee)
    first = _payment_event(PAYMENT_SUCCEEDED, code, payment_id, fee)
    second = _payment_event(PAYMENT_SUCCEEDED, code, payment_id, fee)
    # A redelivery, and a second report of the same payment.
    _send(kafka, announced, first, first, second)
    wait_for(
        lambda: actors.admin.get(code).status == dossier_pb2.DOSSIER_STATUS_PROCESSING,
        60,
        0.2,
        "dossier paid",
    )
    _handled(url, announced, first, second)
    assert _outbox_types(url, code).count("vn.motcua.dossier.paid.v1") == 1
    assert "vn.motcua.dossier.payment_refused.v1" not in _outbox_types(url, code)
    assert actors.admin.get(code).version == version + 1


def test_a_success_that_is_not_the_dossiers_own_fee_request_is_refused_and_recorded(
    own_kafka: Kafka,
    database: Callable[[str], str],
    service_factory: Callable[..., ServiceProcess],
    token: Callable[..., str],
) -> None:
    """1 VND, another agency's payment, a payment never announced, an unknown dossier: none
    moves the dossier; each is counted and published for the audit log; the right payment
    still settles it afterwards."""
    url = database("dossier")
    # A broker of its own: these payment ids and dossier codes must meet no other test's.
    kafka = own_kafka
    proc = service_factory("dossier", url, KAFKA_BOOTSTRAP=kafka.bootstrap).start()
    actors = Actors(proc.target, token, "STP")
    code, version = _drive(actors, "with_payment", 6)
    fee = actors.admin.get(code).fee_vnd
    cheap, foreign, unannounced, right = (uuid.uuid4().hex for _ in range(4))
    abuse = [
        _payment_event(PAYMENT_REQUESTED, code, cheap, 1),
        _payment_event(PAYMENT_SUCCEEDED, code, cheap, 1),
        _payment_event(PAYMENT_REQUESTED, code, foreign, fee, agency="PHAICHAU"),
        _payment_event(PAYMENT_SUCCEEDED, code, foreign, fee, agency="PHAICHAU"),
        _payment_event(PAYMENT_SUCCEEDED, code, unannounced, fee),
        _payment_event(PAYMENT_SUCCEEDED, "STP-991231-5977", unannounced, 5_000_000),
    ]
    _send(kafka, *abuse)
    _handled(url, *abuse)
    after = actors.admin.get(code)
    assert after.status == dossier_pb2.DOSSIER_STATUS_PAYMENT_REQUIRED
    assert after.version == version
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT event_key, payload FROM outbox WHERE event_type = :t ORDER BY id"),
            {"t": "vn.motcua.dossier.payment_refused.v1"},
        ).all()
    engine.dispose()
    refused = [(r.event_key, events_pb2.PaymentRefused.FromString(r.payload)) for r in rows]
    # One dossier's events keep their order; the unknown dossier's may be on another partition.
    assert sorted((key, m.reason, m.payment_id) for key, m in refused) == sorted(
        [
            (code, "amount", cheap),
            (code, "agency", foreign),
            (code, "unknown_payment", unannounced),
            ("STP-991231-5977", "unknown_dossier", unannounced),
        ]
    )
    [cheap_refusal] = [m for _, m in refused if m.payment_id == cheap]
    assert (cheap_refusal.fee_vnd, cheap_refusal.payment_amount_vnd) == (fee, 1)
    metrics = httpx.get(f"http://127.0.0.1:{proc.metrics_port}/metrics", timeout=10).text
    for reason in ("amount", "agency", "unknown_payment", "unknown_dossier"):
        assert f'motcua_dossier_payments_refused_total{{reason="{reason}"}} 1.0' in metrics
    # The citizen's own payment still settles the dossier.
    _send(
        kafka,
        _payment_event(PAYMENT_REQUESTED, code, right, fee),
        _payment_event(PAYMENT_SUCCEEDED, code, right, fee),
    )
    wait_for(
        lambda: actors.admin.get(code).status == dossier_pb2.DOSSIER_STATUS_PROCESSING,
        60,
        0.2,
        "dossier paid by its own fee request",
    )


def test_a_broken_reference_data_file_stops_the_service_naming_file_line_and_field(
    service_factory: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    import shutil

    from motcua_dossier.domain.reference_data import DATA_DIR

    data = tmp_path / "data"
    shutil.copytree(DATA_DIR, data)
    text_ = (data / "procedures.yaml").read_text()
    (data / "procedures.yaml").write_text(text_.replace("fee_vnd: 75000", "fee_vnd: 75000.5", 1))
    proc = service_factory("dossier", f"sqlite:///{tmp_path}/d.db", REFERENCE_DATA_DIR=str(data))
    proc.start(wait=False)
    assert proc.proc is not None
    assert proc.proc.wait(60) != 0
    log = proc.log_tail(200)
    assert "procedures.yaml:" in log and "fee_vnd" in log, log


def test_statistics_count_received_and_in_progress(
    shared: tuple[ServiceProcess, str], token: Callable[..., str]
) -> None:
    proc, _ = shared
    actors = Actors(proc.target, token, "PHAICHAU")
    officer = actors.officer
    before = officer.stub.GetStatistics(
        dossier_pb2.GetStatisticsRequest(), metadata=officer.metadata
    )
    d = officer.submit(submit_request("HT-003", f"s-{uuid.uuid4()}")).dossier
    d = _transition(officer, d.code, "receive", d.version)
    today = datetime.now(UTC).date().isoformat()
    after = officer.stub.GetStatistics(
        dossier_pb2.GetStatisticsRequest(), metadata=officer.metadata
    )
    assert after.received == before.received + 1
    assert after.in_progress == before.in_progress + 1
    d = _transition(officer, d.code, "process", d.version)
    _transition(officer, d.code, "approve", d.version)
    done = officer.stub.GetStatistics(dossier_pb2.GetStatisticsRequest(), metadata=officer.metadata)
    assert done.in_progress == before.in_progress
    assert done.early + done.on_time == before.early + before.on_time + 1
    assert 0 < done.on_time_ratio <= 1
    with pytest.raises(grpc.RpcError) as info:
        officer.stub.GetStatistics(
            dossier_pb2.GetStatisticsRequest(from_date="29/11/2026"), metadata=officer.metadata
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "from_date" in info.value.details()
    assert today
