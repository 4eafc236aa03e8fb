"""The dead-letter command: list shows the error; replay re-publishes once, consumers take it."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaProducer
from sqlalchemy import create_engine, func, select

from harness import ROOT, Kafka, ServiceProcess, header, read_topic, wait_for
from motcua.dossier.v1 import dossier_pb2, events_pb2
from motcua_audit.adapters.db import entries
from motcua_kit.dlq import read_dead_letters, replay
from motcua_kit.envelope import Event, encode

pytestmark = pytest.mark.integration
TOPIC = "motcua.dossier.v1"


def _recorded(url: str, event_id: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        n = conn.scalar(select(func.count()).where(entries.c.event_id == event_id)) or 0
    engine.dispose()
    return int(n)


def test_list_shows_dead_letters_and_replay_brings_them_back_once(
    kafka: Kafka,
    tmp_path: Path,
    service_factory: Callable[..., ServiceProcess],
) -> None:
    audit_url = f"sqlite:///{tmp_path}/audit.db"
    audit = service_factory("audit", audit_url).start()
    producer = KafkaProducer(bootstrap_servers=[kafka.bootstrap], api_version=(4, 0))
    poison_key = f"POISON-{uuid.uuid4().hex[:8]}".encode()
    producer.send(TOPIC, key=poison_key, value=b"no envelope", headers=[]).get(30)

    # A good event that was dead-lettered while its handler was failing (now fixed).
    code = f"STP-261129-{uuid.uuid4().int % 10000:04d}"
    event = Event.new(
        source="/motcua/dossier",
        type="vn.motcua.dossier.submitted.v1",
        subject=code,
        message=events_pb2.DossierSubmitted(dossier=dossier_pb2.Dossier(code=code)),
    )
    record = encode(event)
    producer.send(
        TOPIC + ".dlq",
        key=record.key,
        value=record.value,
        headers=[
            *record.headers,
            ("motcua_error", b"database unavailable"),
            ("motcua_error_type", b"OperationalError"),
            ("motcua_original_topic", TOPIC.encode()),
        ],
    ).get(30)
    producer.close()

    letters = wait_for(
        lambda: [d for d in read_dead_letters(kafka.bootstrap, TOPIC) if d.key == poison_key],
        30,
        0.3,
        "the poison record dead-lettered",
    )
    assert letters[0].header("motcua_error_type") == "EnvelopeError"

    listing = subprocess.run(
        [sys.executable, "-m", "motcua_kit.dlq", "list", TOPIC, "--bootstrap", kafka.bootstrap],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={"COLUMNS": "250", "PATH": "/usr/bin:/bin"},
    )
    assert listing.returncode == 0, listing.stderr
    assert "OperationalError" in listing.stdout and "EnvelopeError" in listing.stdout

    group = f"replay-{uuid.uuid4().hex[:6]}"
    # Undecodable records are passed over: replaying them would only dead-letter them again.
    # (The broker is shared with other tests, so count what this group will find.)
    curable = [
        d
        for d in read_dead_letters(kafka.bootstrap, TOPIC)
        if d.header("motcua_error_type") != "EnvelopeError"
    ]
    assert event.id in {d.header("ce_id") for d in curable}
    assert replay(kafka.bootstrap, TOPIC, group) == len(curable)
    wait_for(lambda: _recorded(audit_url, event.id) == 1, 30, 0.2, "replayed event recorded")
    replayed = [
        r for r in read_topic(kafka.bootstrap, TOPIC) if header(r, "ce_id") == event.id.encode()
    ]
    assert len(replayed) == 1
    assert header(replayed[0], "motcua_error") is None
    assert replay(kafka.bootstrap, TOPIC, group) == 0  # the group remembers
    assert _recorded(audit_url, event.id) == 1
    audit.terminate()
