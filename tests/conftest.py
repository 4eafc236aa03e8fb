"""Shared fixtures: the real broker and database, JWT keys, service processes."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from harness import Kafka, Postgres, ServiceProcess
from motcua_documents import devpki
from motcua_documents.devpki import DevPki
from motcua_kit.auth import generate_signing_key, mint_token

_started: list[str] = []


@pytest.fixture(scope="session")
def kafka() -> Iterator[Kafka]:
    """A real Apache Kafka broker (KRaft) from infra/kafka.sh, for the whole session."""
    state = Path(tempfile.mkdtemp(prefix="motcua-kafka-"))
    broker = Kafka(state_dir=state)
    broker.start()
    _started.append(f"Apache Kafka (KRaft, single node) at {broker.bootstrap}")
    try:
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def own_kafka() -> Iterator[Kafka]:
    """A broker for one test alone: for tests that leave garbage or load other tests would read
    (they read the shared topics from the beginning)."""
    state = Path(tempfile.mkdtemp(prefix="motcua-own-kafka-"))
    broker = Kafka(state_dir=state)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(state, ignore_errors=True)


TEST_AGENCIES = {
    "so-tu-phap-qng": "Trung tâm Phục vụ hành chính công tỉnh",
    "ubnd-xa-nghia-dung": "UBND xã Nghĩa Dũng",
}
"""The documents tests' own agencies; the dossier catalogue's agencies are added to them."""


@pytest.fixture(scope="session")
def dev_pki() -> Iterator[DevPki]:
    """One test PKI and one SoftHSM2 token for the whole session: a root, a TSA certificate and
    a signing key per agency (the documents tests' and every agency of the dossier catalogue).

    SoftHSM2 reads SOFTHSM2_CONF once per process, so every test of the session (and every
    service process it starts, which inherits the variable) signs with this one token.
    """
    catalogue = Path(__file__).parent.parent / "services/dossier/motcua_dossier/data/agencies.yaml"
    agencies = dict(TEST_AGENCIES)
    for agency in yaml.safe_load(catalogue.read_text(encoding="utf-8"))["agencies"]:
        agencies[agency["code"]] = agency["name"]
    base = Path(tempfile.mkdtemp(prefix="motcua-pki-"))
    before = os.environ.get("SOFTHSM2_CONF")
    pki = devpki.create(base, agencies)
    os.environ["SOFTHSM2_CONF"] = str(pki.softhsm_conf)
    try:
        yield pki
    finally:
        if before is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = before
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A real PostgreSQL cluster from infra/postgres.sh, for the whole session."""
    pg = Postgres()
    pg.start()
    _started.append(f"PostgreSQL at 127.0.0.1:{pg.port}")
    try:
        yield pg
    finally:
        pg.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _started:
        terminalreporter.write_sep("-", "integration tests ran against")
        for line in _started:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def signing_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Path]:
    """A throwaway identity-provider key: (private PEM, path of the public PEM)."""
    private_pem, public_pem = generate_signing_key()
    path = tmp_path_factory.mktemp("jwt") / "public.pem"
    path.write_bytes(public_pem)
    return private_pem, path


@pytest.fixture(scope="session")
def token(signing_keys: tuple[bytes, Path]) -> Callable[..., str]:
    """``token("citizen", citizen_id=...)`` → a signed bearer token."""
    private_pem, _ = signing_keys

    def make(*roles: str, subject: str = "", agency: str = "", citizen_id: str = "") -> str:
        return mint_token(
            private_pem,
            subject or f"{roles[0]}-{citizen_id or agency or 'x'}",
            roles,
            agency=agency,
            citizen_id=citizen_id,
        )

    return make


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], str]:
    """A factory of fresh database URLs, once on SQLite and once on PostgreSQL.

    The PostgreSQL run is marked ``integration``: ``make test-unit`` (``-m "not integration"``)
    runs a service's use cases on SQLite in-process only; ``make test`` runs both.
    """
    if request.param == "sqlite":
        return lambda name: f"sqlite:///{tmp_path}/{name}.db"
    pg: Postgres = request.getfixturevalue("postgres")
    return lambda name: pg.create_database(name)


@pytest.fixture
def service_factory(
    kafka: Kafka,
    signing_keys: tuple[bytes, Path],
    tmp_path: Path,
) -> Iterator[Callable[..., ServiceProcess]]:
    """Build service processes wired to the test broker; all are killed at the end."""
    made: list[ServiceProcess] = []
    group_suffix = os.urandom(4).hex()

    def make(name: str, database_url: str, **env: str) -> ServiceProcess:
        prefix = f"MOTCUA_{name.upper()}_"
        base = {
            "DATABASE_URL": database_url,
            "KAFKA_BOOTSTRAP": kafka.bootstrap,
            "JWT_PUBLIC_KEY_FILE": str(signing_keys[1]),
            "CONSUMER_GROUP": f"motcua-{name}-{group_suffix}",
            "OUTBOX_POLL_SECONDS": "0.05",
            "SHUTDOWN_GRACE_SECONDS": "5",
            "LOG_LEVEL": "INFO",
        }
        base.update(env)
        proc = ServiceProcess(name, {prefix + k: v for k, v in base.items()}, tmp_path)
        made.append(proc)
        return proc

    yield make
    for proc in made:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait(10)
