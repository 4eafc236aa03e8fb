"""The example subscriber against the live suite: the dossier service as a process, the real
broker, the projector as a process (killed and restarted midway) — and its counts per agency
equal the dossier service's GetStatistics for the same dossiers.

The dossiers belong to two agencies only this test uses (added to a copy of the reference
data), so the other tests' dossier events on the shared topic are not counted by either side.
One dossier is made late by moving its appointment into the past in the service's database
(the service process has no clock to turn), before an officer approves it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import grpc
import pytest
from sqlalchemy import create_engine, text

from dossier_client import CITIZEN_ID, DossierClient, submit_request
from harness import ROOT, Kafka, ServiceProcess, wait_for
from motcua.dossier.v1 import dossier_pb2
from motcua_dossier.domain.reference_data import DATA_DIR

pytestmark = pytest.mark.integration

PROJECTOR_DIR = ROOT / "examples" / "stats-projector"
AGENCIES = """
  - code: TKA
    name: Cơ quan thử nghiệm A (kiểm thử thống kê)
    province: Thành phố Đà Nẵng

  - code: TKB
    name: Cơ quan thử nghiệm B (kiểm thử thống kê)
    province: Thành phố Đà Nẵng
"""
PROCEDURES = """
  - code: TKA-0D
    name: Thủ tục thử trả kết quả trong ngày
    agency: TKA
    fee_vnd: null
    processing_days: 0
    online_level: full
    workflow: standard
    required_documents:
      - {name: Đơn đề nghị, mandatory: true}

  - code: TKA-15D
    name: Thủ tục thử 15 ngày làm việc
    agency: TKA
    fee_vnd: null
    processing_days: 15
    online_level: partial
    workflow: standard
    required_documents:
      - {name: Đơn đề nghị, mandatory: true}

  - code: TKB-3D
    name: Thủ tục thử 3 ngày làm việc
    agency: TKB
    fee_vnd: null
    processing_days: 3
    online_level: full
    workflow: standard
    required_documents:
      - {name: Đơn đề nghị, mandatory: true}
"""


@pytest.fixture
def reference_data(tmp_path: Path) -> Path:
    data = tmp_path / "reference-data"
    shutil.copytree(DATA_DIR, data)
    agencies = (data / "agencies.yaml").read_text()
    (data / "agencies.yaml").write_text(agencies.rstrip() + "\n" + AGENCIES)
    (data / "procedures.yaml").write_text((data / "procedures.yaml").read_text() + PROCEDURES)
    return data


class Projector:
    """``python -m stats_projector`` from its folder, with the workspace's Python."""

    def __init__(self, kafka: Kafka, folder: Path, holidays_file: Path) -> None:
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(PROJECTOR_DIR), os.environ.get("PYTHONPATH")])
            ),
            "STATS_PROJECTOR_KAFKA_BOOTSTRAP": kafka.bootstrap,
            "STATS_PROJECTOR_DATABASE_URL": f"sqlite:///{folder}/stats-projector.db",
            "STATS_PROJECTOR_CONSUMER_GROUP": f"stats-projector-{uuid.uuid4().hex[:8]}",
            "STATS_PROJECTOR_HOLIDAYS_EXTRA_FILE": str(holidays_file),
            "STATS_PROJECTOR_SHUTDOWN_GRACE_SECONDS": "5",
        }
        self.log = folder / "stats-projector.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stats_projector", "run"],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError("the projector did not stop on SIGTERM") from None

    def report(self, agency: str, *dates: str) -> dict[str, int]:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"the projector exited:\n{self.log.read_text()[-3000:]}")
        period = ["--from", dates[0], "--to", dates[1]] if dates else []
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "stats_projector",
                "report",
                "--json",
                "--agency",
                agency,
                *period,
            ],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        rows = json.loads(out)
        return _counts(rows[0]) if rows else _counts({})


def _counts(source: object) -> dict[str, int]:
    fields = ("received", "early", "on_time", "late", "in_progress")
    if isinstance(source, dict):
        return {f: int(source.get(f, 0)) for f in fields}
    return {f: int(getattr(source, f)) for f in fields}


@pytest.fixture
def projector(kafka: Kafka, tmp_path: Path, reference_data: Path) -> Iterator[Projector]:
    running = Projector(kafka, tmp_path, reference_data / "holidays_extra.yaml")
    try:
        yield running
    finally:
        if running.proc is not None and running.proc.poll() is None:
            running.proc.kill()
            running.proc.wait(10)


class Office:
    """The citizen and the officers of both agencies, over real gRPC."""

    def __init__(self, target: str, token: Callable[..., str]) -> None:
        self.citizen = DossierClient(target, token("citizen", citizen_id=CITIZEN_ID))
        self.officers = {
            a: DossierClient(target, token("officer", agency=a)) for a in ("TKA", "TKB")
        }
        self.admin = DossierClient(target, token("admin"))

    def file(self, procedure: str) -> str:
        return self.citizen.submit(submit_request(procedure, f"k-{uuid.uuid4()}")).dossier.code

    def act(self, code: str, *actions: str) -> dossier_pb2.Dossier:
        for action in actions:
            client = self.citizen if action == "withdraw" else self.officers[code.split("-")[0]]
            current = self.admin.get(code)
            client.stub.TransitionDossier(
                dossier_pb2.TransitionDossierRequest(
                    code=code,
                    action=action,
                    comment=f"lý do: {action}",
                    expected_version=current.version,
                ),
                metadata=client.metadata,
                timeout=30,
            )
        return self.admin.get(code)

    def statistics(self, agency: str, *dates: str) -> dict[str, int]:
        request = dossier_pb2.GetStatisticsRequest(agency_code=agency)
        if dates:
            request.from_date, request.to_date = dates
        response = self.admin.stub.GetStatistics(request, metadata=self.admin.metadata, timeout=30)
        return _counts(response)

    def close(self) -> None:
        for client in (self.citizen, self.admin, *self.officers.values()):
            client.close()


def _move_appointment_into_the_past(database_url: str, code: str) -> None:
    past = date.today() - timedelta(days=14)
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            moved = conn.execute(
                text(
                    "UPDATE dossiers SET appointment_date = :d, original_appointment_date = :d "
                    "WHERE code = :c"
                ),
                {"d": past, "c": code},
            ).rowcount
        assert moved == 1
    finally:
        engine.dispose()


def test_projector_counts_equal_get_statistics_for_the_same_dossiers(
    tmp_path: Path,
    reference_data: Path,
    projector: Projector,
    service_factory: Callable[..., ServiceProcess],
    token: Callable[..., str],
) -> None:
    database_url = f"sqlite:///{tmp_path}/dossier.db"
    dossier = service_factory(
        "dossier", database_url, REFERENCE_DATA_DIR=str(reference_data)
    ).start()
    office = Office(dossier.target, token)
    try:
        projector.start()
        # Before the projector is killed: two completed dossiers.
        office.act(office.file("TKA-0D"), "receive", "process", "approve")  # on the day: on time
        office.act(office.file("TKA-15D"), "receive", "process", "approve")  # early
        wait_for(
            lambda: projector.report("TKA") == office.statistics("TKA"),
            60,
            0.5,
            "the projector to count the first two dossiers",
        )
        projector.kill9()  # mid-stream: what it committed stays, what follows waits in Kafka

        late = office.file("TKA-15D")
        office.act(late, "receive", "process")
        _move_appointment_into_the_past(database_url, late)
        assert office.act(late, "approve").status == dossier_pb2.DOSSIER_STATUS_PROCESSED
        office.act(office.file("TKA-15D"), "receive")  # in progress
        office.act(office.file("TKA-0D"), "reject")  # never received: not counted
        office.act(office.file("TKA-0D"), "receive", "withdraw")  # received, closed
        office.act(office.file("TKA-15D"), "receive", "process", "approve", "return_result")
        office.act(office.file("TKB-3D"), "receive", "process", "approve")
        office.act(office.file("TKB-3D"), "receive")

        expected = {a: office.statistics(a) for a in ("TKA", "TKB")}
        assert expected["TKA"]["received"] == 6 and expected["TKB"]["received"] == 2
        assert expected["TKA"]["late"] == 1 and expected["TKA"]["in_progress"] == 1
        assert expected["TKA"]["early"] + expected["TKA"]["on_time"] == 3
        assert expected["TKB"]["early"] == 1 and expected["TKB"]["in_progress"] == 1

        projector.start()
        for agency in ("TKA", "TKB"):
            wait_for(
                lambda agency=agency: projector.report(agency) == expected[agency],
                90,
                0.5,
                f"the projector's {agency} counts to equal GetStatistics",
            )
        today = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).date().isoformat()
        assert projector.report("TKA", today, today) == office.statistics("TKA", today, today)
        assert projector.stop() == 0
    except (AssertionError, grpc.RpcError):
        log = projector.log.read_text()[-4000:] if projector.log.exists() else ""
        print(f"--- projector log ---\n{log}")
        print(f"--- dossier log ---\n{dossier.log_tail()}")
        raise
    finally:
        office.close()
