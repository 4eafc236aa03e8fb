"""The fault drill: thousands of dossiers while services are killed and the broker restarts.

During a run of DRILL_DOSSIERS dossiers (2,000 by default) every service is killed with
SIGKILL at random moments, at least three times each, and restarted; the Kafka broker is
stopped and started once. Afterwards every dossier must be in its final state, and the audit
log must hold every event exactly once. The drill prints what it injected and what it checked.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, text

from dossier_client import DossierClient, submit_request
from drill import Chaos, Check, retrying
from harness import Kafka, Postgres, ServiceProcess, wait_for
from motcua.dossier.v1 import dossier_pb2

pytestmark = pytest.mark.integration

DOSSIERS = int(os.environ.get("DRILL_DOSSIERS", "2000"))
WALK = ["receive", "process", "approve", "return_result"]  # HT-001, standard workflow


def _walk(client: DossierClient, n: int) -> str:
    """File one dossier and walk it to "result returned", surviving restarts on the way."""
    citizen_id = f"0792{n:08d}"
    request = submit_request("HT-001", f"drill-{n}", citizen_id=citizen_id)
    dossier = retrying(lambda: client.submit(request).dossier)
    for action in WALK:
        version = dossier.version

        def act(
            version: int = version, action: str = action, code: str = dossier.code
        ) -> dossier_pb2.Dossier:
            try:
                return client.stub.TransitionDossier(
                    dossier_pb2.TransitionDossierRequest(
                        code=code, action=action, expected_version=version
                    ),
                    metadata=client.metadata,
                    timeout=20,
                ).dossier
            except grpc.RpcError as exc:
                # The first attempt may have committed before the process died.
                if exc.code() in (grpc.StatusCode.ABORTED, grpc.StatusCode.FAILED_PRECONDITION):
                    current = client.get(code)
                    if current.version == version + 1:
                        return current
                raise

        dossier = retrying(act)
    return dossier.code


def test_fault_drill(
    kafka: Kafka,
    postgres: Postgres,
    service_factory: Callable[..., ServiceProcess],
    token: Callable[..., str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dossier_url, audit_url = (
        postgres.create_database("drill_d"),
        postgres.create_database("drill_a"),
    )
    services = {
        "dossier": service_factory("dossier", dossier_url, LOG_LEVEL="WARNING").start(),
        "audit": service_factory("audit", audit_url, LOG_LEVEL="WARNING").start(),
    }
    officer_token = token("officer", agency="PHOIAN")
    client = DossierClient(services["dossier"].target, officer_token)
    chaos = Chaos(services, kafka)
    chaos.start()
    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(lambda n: _walk(client, n), range(DOSSIERS)))
    chaos.join(600)

    d_engine, a_engine = create_engine(dossier_url), create_engine(audit_url)

    def scalar(engine, sql: str) -> int:
        with engine.connect() as conn:
            return int(conn.execute(text(sql)).scalar_one())

    wait_for(
        lambda: scalar(d_engine, "SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0,
        300,
        0.5,
        "the outbox drained",
    )
    published = scalar(d_engine, "SELECT count(*) FROM outbox")
    wait_for(
        lambda: scalar(a_engine, "SELECT count(DISTINCT event_id) FROM audit_entries") >= published,
        300,
        0.5,
        "the audit caught up",
    )
    with d_engine.connect() as conn:
        ids = {r[0] for r in conn.execute(text("SELECT event_id FROM outbox"))}
        final = conn.execute(text("SELECT count(*) FROM dossiers WHERE status = 10")).scalar_one()
    with a_engine.connect() as conn:
        audited = [r[0] for r in conn.execute(text("SELECT event_id FROM audit_entries"))]

    killed = {
        name: sum(1 for i in chaos.log if i.target == name and i.action == "kill -9")
        for name in services
    }
    checks = [
        Check("dossiers filed", DOSSIERS, len(set(codes))),
        Check("dossiers in state 10 (result returned)", DOSSIERS, final),
        Check("events in the outbox (5 per dossier)", DOSSIERS * 5, published),
        Check("audit entries, one per event", published, len(audited)),
        Check("audit entries without duplicates", len(audited), len(set(audited))),
        Check("every event audited", set(), ids - set(audited)),
        Check("each service killed at least 3 times", True, all(k >= 3 for k in killed.values())),
        Check(
            "broker stopped and started once",
            1,
            sum(1 for i in chaos.log if i.target == "kafka" and i.action == "stop"),
        ),
    ]
    d_engine.dispose()
    a_engine.dispose()

    injected = Table(title="fault drill: injected")
    for column in ("t (s)", "target", "action"):
        injected.add_column(column)
    for i in chaos.log:
        injected.add_row(str(i.at), i.target, i.action)
    checked = Table(title=f"fault drill: checked ({DOSSIERS} dossiers)")
    for column in ("check", "expected", "actual", "ok"):
        checked.add_column(column)
    for c in checks:
        checked.add_row(c.name, str(c.expected), str(c.actual), "yes" if c.ok else "NO")
    console = Console(force_terminal=False, width=110)
    with open(tmp_path / "drill.txt", "w") as out:
        Console(file=out, width=110).print(injected, checked)
    print("\n" + (tmp_path / "drill.txt").read_text())
    _ = console
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]
    for proc in services.values():
        proc.terminate()
    assert uuid
