"""The fault drill: thousands of dossiers through the whole suite while it is under fire.

During a run of DRILL_DOSSIERS dossiers (2,000 by default; half pay a fee through the sandbox
gateway) every service — dossier, payment, notify, audit — is killed with SIGKILL at random
moments spread over the run, at least three times each, and restarted; the Kafka broker is
stopped and started once. Afterwards: every dossier in its final state, no payment captured
twice, no SMS sent twice for one (event, recipient), the audit log holding every event once
and verifying. The drill prints what it injected and what it checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, text

from dossier_client import DossierClient, submit_request
from drill import Chaos, Check, retrying
from harness import ROOT, Kafka, Postgres, read_topic, wait_for
from motcua.dossier.v1 import dossier_pb2
from motcua.payment.v1 import payment_pb2, payment_pb2_grpc
from motcua_payment.sandbox.client import SandboxClient
from suite import Suite, running_suite

pytestmark = pytest.mark.integration

# Issue 8 asks for at least 2,000; DRILL_DOSSIERS makes a quicker local run.
DOSSIERS = int(os.environ.get("DRILL_DOSSIERS", "2000"))
DRILL_RATES = {c: {"per_second": 1000, "burst": 1000} for c in ("email", "sms")}
FREE = ["receive", "process", "approve", "return_result"]  # HT-001 (PHOIAN), no fee
FEE_BEFORE = ["receive", "request_payment"]  # HT-004 (STP), 8,000 VND
FEE_AFTER = ["approve", "return_result"]


def _act(client: DossierClient, code: str, action: str) -> dossier_pb2.Dossier:
    """One workflow action, safe to retry across restarts (the status says if it happened).

    Every drill action changes the dossier's status, so a retry after a lost answer that meets
    ABORTED or FAILED_PRECONDITION and finds the status moved on knows its earlier attempt did
    commit. A version that moved while the status did not was someone else's change — the
    deadline scanner marking the dossier due soon (HT-001 has no processing days) — and the
    action is tried again on that version, as any client re-reads and retries on ABORTED.
    """
    start = retrying(lambda: client.get(code))
    expected = start.version
    deadline = time.monotonic() + 120

    def attempt() -> dossier_pb2.Dossier:
        return client.stub.TransitionDossier(
            dossier_pb2.TransitionDossierRequest(
                code=code, action=action, expected_version=expected
            ),
            metadata=client.metadata,
            timeout=20,
        ).dossier

    while True:
        try:
            return retrying(attempt)
        except grpc.RpcError as exc:
            if exc.code() not in (grpc.StatusCode.ABORTED, grpc.StatusCode.FAILED_PRECONDITION):
                raise
            again = retrying(lambda: client.get(code))
            if again.status != start.status:  # our earlier attempt did commit
                return again
            if exc.code() is not grpc.StatusCode.ABORTED or time.monotonic() > deadline:
                raise
            expected = again.version


def _walk(suite: Suite, n: int) -> str:
    fee = n % 2 == 0
    phone = f"09{n:08d}"
    email = f"drill.{n}@example.vn"
    agency = "STP" if fee else "PHOIAN"
    citizen = suite.dossiers("citizen", citizen_id=f"0792{n:08d}")
    officer = suite.dossiers("officer", agency=agency)
    request = submit_request(
        "HT-004" if fee else "HT-001",
        f"drill-{n}",
        citizen_id=f"0792{n:08d}",
        phone=phone,
        email=email,
    )
    code = retrying(lambda: citizen.submit(request).dossier).code
    if not fee:
        for action in FREE:
            _act(officer, code, action)
        return code
    for action in FEE_BEFORE:
        _act(officer, code, action)
    with suite.channel("payment") as channel:
        payments = payment_pb2_grpc.PaymentServiceStub(channel)

        def pending() -> payment_pb2.Payment | None:
            listed = payments.ListPayments(
                payment_pb2.ListPaymentsRequest(dossier_code=code),
                metadata=citizen.metadata,
                timeout=10,
            ).payments
            return next((p for p in listed if p.redirect_url), None)

        payment = wait_for(lambda: retrying(pending), 300, 0.2, f"payment request of {code}")
    with SandboxClient(suite.sandbox.url) as gateway:
        gateway.pay(payment.redirect_url)  # the IPN may hit a dead payment: reconciliation settles
    wait_for(
        lambda: retrying(lambda: officer.get(code)).status == dossier_pb2.DOSSIER_STATUS_PROCESSING,
        300,
        0.2,
        f"{code} paid",
    )
    for action in FEE_AFTER:
        _act(officer, code, action)
    return code


def _scalar(url: str, sql: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(sql)).scalar_one())
    finally:
        engine.dispose()


def _column(url: str, sql: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


@pytest.mark.timeout(1800)  # 2,000 dossiers through four services under fire take minutes
def test_fault_drill(
    own_kafka: Kafka,
    postgres: Postgres,
    signing_keys: tuple[bytes, Path],
    token: Callable[..., str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    quiet = {"LOG_LEVEL": "WARNING"}
    extra = {
        "dossier": quiet,
        # The providers' contract rates (20 email/s, 10 SMS/s by default) would make a 2,000-
        # dossier drill wait ten minutes on the token buckets; the drill is about faults.
        # A provider that answers after the timeout may still have sent the SMS, and failing
        # over then sends a second copy (accepted in ADR 0033); on a saturated 2-core machine
        # the stand-in providers can be that slow. Provider slowness is not a drill fault.
        "notify": {**quiet, "RATE_LIMITS": json.dumps(DRILL_RATES), "SMS_TIMEOUT_SECONDS": "20"},
        "audit": quiet,
        "payment": {
            **quiet,
            "RECONCILE_INTERVAL_SECONDS": "1",
            "RECONCILE_AFTER_SECONDS": "2",
        },
    }
    kafka = own_kafka  # its ~40,000 records and its restarts stay off the shared broker
    with running_suite(kafka, postgres, signing_keys, token, tmp_path, extra) as suite:
        finished: list[str] = []  # list.append is atomic: the walkers' progress counter

        def walk(n: int) -> str:
            code = _walk(suite, n)
            finished.append(code)
            return code

        chaos = Chaos(suite.services, kafka, progress=lambda: len(finished) / DOSSIERS)
        chaos.start()
        try:
            with ThreadPoolExecutor(max_workers=16) as pool:
                codes = list(pool.map(walk, range(DOSSIERS)))
        except BaseException:
            chaos.stop()  # no more faults while the suite is torn down
            raise
        chaos.join(900)
        urls = suite.urls
        for service in ("dossier", "payment", "notify"):
            wait_for(
                lambda s=service: (
                    _scalar(urls[s], "SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
                ),
                300,
                0.5,
                f"{service}'s outbox drained",
            )

        def outboxes() -> set[str]:
            return set().union(
                *(
                    _column(urls[s], "SELECT event_id FROM outbox")
                    for s in ("dossier", "payment", "notify")
                )
            )

        def audited_ids() -> set[str]:
            return set(_column(urls["audit"], "SELECT event_id FROM audit_entries"))

        # Notify may still be finishing sends (and writing their events) after the load ends:
        # settled when every event of the outboxes is audited and no new one has appeared.
        settled: list[set[str]] = []
        seen: dict[str, object] = {}
        trail: list[int] = []  # missing count at each poll: shrinking = slow, stuck = lost

        def settled_now() -> bool:
            before = outboxes()
            missing = before - audited_ids()
            seen.update(events=len(before), missing=len(missing), sample=sorted(missing)[:3])
            trail.append(len(missing))
            if missing:
                return False
            if settled and settled[-1] == before:
                return True
            settled.append(before)
            return False

        try:
            _wait_while_progressing(
                settled_now, lambda: (seen.get("events"), seen.get("missing")), 900, 120
            )
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; last seen {seen}; missing every 30 polls {trail[::30]};"
                f" dead letters {_dead_letters(kafka)}"
            ) from exc
        every_event = settled[-1]
        audited = _column(urls["audit"], "SELECT event_id FROM audit_entries")
        strays = sorted(set(audited) - outboxes())  # audited, yet no service wrote it
        final = _scalar(urls["dossier"], "SELECT count(*) FROM dossiers WHERE status = 10")
        captured = Counter(
            _column(urls["payment"], "SELECT dossier_code FROM payments WHERE state = 'succeeded'")
        )
        sent_sms: dict[tuple[str, str], list[str]] = {}
        for provider in (suite.sms_a, suite.sms_b):
            for m in provider.messages:
                sent_sms.setdefault((m["to"], m["text"]), []).append(
                    f"{provider.name}:{m['idempotency_key']}"
                )
        twice = {k: v for k, v in sent_sms.items() if len(v) > 1}
        sms_twice = [(v, _history(urls["notify"], v)) for v in list(twice.values())[:3]]
        # SMTP has no idempotency key: a kill between the server's accept and notify's state
        # write sends the mail again, but under the same Message-ID, which mailboxes collapse.
        # A second Message-ID for the same mail would be a duplicate the citizen sees.
        mail_ids: dict[tuple[str, str, str], set[str]] = {}
        for rcpt, msg in suite.smtp.messages:
            body = msg.get_body()
            what = (",".join(rcpt), str(msg["Subject"]), body.get_content() if body else "")
            mail_ids.setdefault(what, set()).add(str(msg["Message-ID"]))
        resent_mails = len(suite.smtp.messages) - len(mail_ids)
        verified = _verify_audit_log(urls["audit"], tmp_path)

    fee_dossiers = (DOSSIERS + 1) // 2
    killed = Counter(i.target for i in chaos.log if i.action == "kill -9")
    checks = [
        Check("dossiers filed", DOSSIERS, len(set(codes))),
        Check("dossiers in state 10 (result returned)", DOSSIERS, final),
        Check(
            "fee dossiers with exactly one captured payment",
            fee_dossiers,
            sum(1 for n in captured.values() if n == 1),
        ),
        Check("payments captured twice", 0, sum(1 for n in captured.values() if n > 1)),
        Check("SMS sent twice for one (recipient, text)", [], sms_twice),
        Check(
            "emails with two Message-IDs for one (recipient, text)",
            0,
            sum(1 for ids in mail_ids.values() if len(ids) > 1),
        ),
        Check("info: emails resent under their Message-ID after a kill", None, resent_mails),
        Check("audit entries that no service's outbox holds", [], strays[:5]),
        Check("audit entries without duplicates", len(audited), len(set(audited))),
        Check("every event audited", set(), every_event - set(audited)),
        Check("audit log export verifies against a signed tree head", "ok", verified),
        Check(
            "each service killed at least 3 times",
            True,
            all(killed[name] >= 3 for name in suite.services),
        ),
        Check(
            "broker stopped and started once",
            1,
            sum(1 for i in chaos.log if i.target == "kafka" and i.action == "stop"),
        ),
    ]
    injected = Table(title="fault drill: injected")
    for column in ("t (s)", "target", "action"):
        injected.add_column(column)
    for i in chaos.log:
        injected.add_row(str(i.at), i.target, i.action)
    checked = Table(title=f"fault drill: checked ({DOSSIERS} dossiers, half paying a fee)")
    for column in ("check", "expected", "actual", "ok"):
        checked.add_column(column)
    for c in checks:
        checked.add_row(
            c.name,
            "—" if c.expected is None else str(c.expected),
            str(c.actual),
            "yes" if c.ok else "NO",
        )
    report = tmp_path / "drill.txt"
    with open(report, "w") as out:
        Console(file=out, width=110).print(injected, checked)
    with capsys.disabled():  # the CI log shows the table whether the drill passes or not
        print("\n" + report.read_text())
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]


def _wait_while_progressing(
    done: Callable[[], bool], state: Callable[[], object], limit_s: float, stall_s: float
) -> None:
    """Poll ``done`` each second; fail at ``limit_s``, or when ``state()`` has not changed for
    ``stall_s`` (a backlog that drains is slow, one that does not move is lost)."""
    start = last_change = time.monotonic()
    last: object = None
    while not done():
        now = time.monotonic()
        current = state()
        if current != last:
            last, last_change = current, now
        if now - start > limit_s:
            raise AssertionError(f"not settled within {limit_s:.0f}s (at {last})")
        if now - last_change > stall_s:
            raise AssertionError(f"no progress for {stall_s:.0f}s (stuck at {last})")
        time.sleep(1.0)


def _history(notify_url: str, sends: list[str]) -> list[str]:
    """What notify recorded for the notifications behind some sends (to explain a duplicate)."""
    ids = sorted({send.split(":", 1)[1].rsplit(".", 1)[0] for send in sends})
    engine = create_engine(notify_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT notification_id, state, attempt, provider, detail, at"
                    " FROM notification_history WHERE notification_id = ANY(:ids) ORDER BY seq"
                ),
                {"ids": ids},
            )
            return [
                f"{r.at:%H:%M:%S.%f} {r.state} #{r.attempt} {r.provider} {r.detail}" for r in rows
            ]
    finally:
        engine.dispose()


def _dead_letters(kafka: Kafka) -> dict[str, int]:
    """How many records each dead-letter topic holds (a lost event shows up here)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=[kafka.bootstrap], api_version=(4, 0))
    try:
        topics = sorted(t for t in consumer.topics() if t.endswith(".dlq"))
    finally:
        consumer.close()
    return {t: len(read_topic(kafka.bootstrap, t)) for t in topics}


def _verify_audit_log(audit_url: str, folder: Path) -> str:
    """Export the log with a freshly signed head and check it with the offline verifier."""
    key_file = ROOT / ".state" / "audit-signing-key.pem"  # the dev key the service generated
    private = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    public = folder / "audit-public.pem"
    public.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    env = {
        **os.environ,
        "MOTCUA_AUDIT_DATABASE_URL": audit_url,
        "MOTCUA_AUDIT_SIGNING_KEY_FILE": str(key_file),
    }
    export, head = folder / "audit.jsonl", folder / "head.json"
    run = [sys.executable, "-m", "motcua_audit"]
    exported = subprocess.run(
        [*run, "export", "--output", str(export), "--head-output", str(head), "--sign-now"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    if exported.returncode != 0:
        return f"export failed: {exported.stderr[-300:]}"
    verified = subprocess.run(
        [*run, "verify", "--export", str(export), "--head", str(head), "--public-key", str(public)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    return "ok" if verified.returncode == 0 else f"verify failed: {verified.stdout[-300:]}"
