"""The operator CLI (``motcua``) against the live suite: every subcommand, run as a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from dossier_client import CITIZEN_ID
from harness import ROOT, Kafka, ServiceProcess, wait_for

pytestmark = pytest.mark.integration


def motcua(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "motcua_ops", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **env},
    )


def test_operator_cli_against_the_live_suite(
    own_kafka: Kafka,
    service_factory: Callable[..., ServiceProcess],
    token: Callable[..., str],
    tmp_path: Path,
) -> None:
    kafka = own_kafka  # dossier codes repeat across tests: keep other tests' trails out
    audit_url = f"sqlite:///{tmp_path}/audit.db"
    private_key, public_key = tmp_path / "audit-key.pem", tmp_path / "audit-key.pub.pem"
    keygen = motcua(
        "audit",
        "keygen",
        "--private-key",
        str(private_key),
        "--public-key",
        str(public_key),
        env={},
    )
    assert keygen.returncode == 0, keygen.stderr
    dossier = service_factory(
        "dossier", f"sqlite:///{tmp_path}/dossier.db", KAFKA_BOOTSTRAP=kafka.bootstrap
    ).start()
    audit = service_factory(
        "audit", audit_url, SIGNING_KEY_FILE=str(private_key), KAFKA_BOOTSTRAP=kafka.bootstrap
    ).start()
    env = {
        "MOTCUA_DOSSIER_TARGET": dossier.target,
        "MOTCUA_AUDIT_TARGET": audit.target,
        "MOTCUA_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "MOTCUA_TOKEN": token("officer", agency="PHOIAN", citizen_id=CITIZEN_ID),
        "MOTCUA_AUDIT_DATABASE_URL": audit_url,
        "MOTCUA_AUDIT_SIGNING_KEY_FILE": str(private_key),
    }

    request = tmp_path / "dossier.yaml"
    request.write_text(
        yaml.safe_dump(
            {
                "procedureCode": "HT-001",
                "applicant": {
                    "fullName": "Phạm Minh Khoa",
                    "citizenId": CITIZEN_ID,
                    "phone": "0905123456",
                    "email": "khoa@example.vn",
                    "address": "Hội An, Đà Nẵng",
                },
                "documents": [
                    {
                        "name": "Tờ khai",
                        "mediaType": "application/pdf",
                        "sizeBytes": 1200,
                        "sha256": "ab" * 32,
                    }
                ],
                "channel": "CHANNEL_IN_PERSON",
                "idempotencyKey": f"cli-{uuid.uuid4()}",
            },
            allow_unicode=True,
        ),
        encoding="utf-8",
    )
    filed = motcua("dossier", "submit", str(request), env=env)
    assert filed.returncode == 0, filed.stdout + filed.stderr
    code = filed.stdout.split("filed ", 1)[1].split()[0].rstrip(",")
    assert code.startswith("PHOIAN-")

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"procedureCode": "HT-001"}))
    refused = motcua("dossier", "submit", str(bad), env=env)
    assert refused.returncode == 1 and "INVALID_ARGUMENT" in refused.stdout

    def shown() -> dict | None:
        result = motcua("dossier", "show", code, "--json", env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        doc = json.loads(result.stdout)
        return doc if doc["trail"].get("entries") else None

    doc = wait_for(shown, 60, 0.5, "the dossier's trail")
    assert doc["dossier"]["code"] == code
    assert doc["trail"]["entries"][0]["eventType"] == "vn.motcua.dossier.submitted.v1"
    table = motcua("dossier", "show", code, env=env)
    assert code in table.stdout and "submitted" in table.stdout

    tailed = motcua(
        "events", "tail", "motcua.dossier.v1", "--from-beginning", "--idle-seconds", "3", env=env
    )
    assert tailed.returncode == 0, tailed.stderr
    lines = [json.loads(line) for line in tailed.stdout.splitlines() if line.strip()]
    # Codes repeat across tests on the shared broker: pick this test's submitted event.
    mine = [
        line
        for line in lines
        if line.get("subject") == code
        and line.get("type") == "vn.motcua.dossier.submitted.v1"
        and line["data"]["dossier"]["applicant"]["fullName"] == "Phạm Minh Khoa"
    ]
    assert mine, "the submitted event, decoded"
    assert mine[-1]["data"]["dossier"]["procedureCode"] == "HT-001"

    listed = motcua("dlq", "list", "motcua.dossier.v1", "--bootstrap", kafka.bootstrap, env=env)
    assert listed.returncode == 0 and "dead letters" in listed.stdout
    replayed = motcua(
        "dlq",
        "replay",
        "motcua.dossier.v1",
        "--bootstrap",
        kafka.bootstrap,
        "--group",
        f"cli-{uuid.uuid4().hex[:6]}",
        env=env,
    )
    assert replayed.returncode == 0 and "replayed" in replayed.stdout

    export, head = tmp_path / "export.jsonl", tmp_path / "head.json"
    exported = motcua(
        "audit",
        "export",
        "--output",
        str(export),
        "--head-output",
        str(head),
        "--sign-now",
        env=env,
    )
    assert exported.returncode == 0, exported.stdout + exported.stderr
    verified = motcua(
        "audit",
        "verify",
        "--export",
        str(export),
        "--head",
        str(head),
        "--public-key",
        str(public_key),
        env=env,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    lines_ = export.read_text().splitlines()
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("\n".join(lines_[:1] + lines_[2:]) + "\n")
    failed = motcua(
        "audit",
        "verify",
        "--export",
        str(tampered),
        "--head",
        str(head),
        "--public-key",
        str(public_key),
        env=env,
    )
    assert failed.returncode != 0 and "FAILED" in failed.stdout + failed.stderr
    dossier.terminate()
    audit.terminate()
