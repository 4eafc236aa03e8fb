"""PostgreSQL least privilege (docs/adr/0077-postgres-roles.md), on the harness's real server.

infra/postgres-roles.sql (run by `infra/postgres.sh roles`) gives each service its database
motcua_<svc>, a migration role motcua_<svc>_migrator that owns the schema and a runtime role
motcua_<svc>_app that reads and writes rows. Each service is migrated here the way the chart's
migration Job does it (`python -m motcua_<svc> migrate` with the runtime URL in DATABASE_URL and
the migrator's in MIGRATION_DATABASE_URL); then, as each app role: no other service's database,
no DROP / ALTER / CREATE / TRUNCATE, but rows; and dossier runs end to end on its app role, the
outbox relay LISTENing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import errors

from dossier_client import CITIZEN_ID, DossierClient, submit_request
from harness import ROOT, Kafka, Postgres, ServiceProcess, header, read_topic, running, wait_for
from motcua.dossier.v1 import events_pb2
from motcua_dossier.service import DossierService
from motcua_kit.db import migrate
from motcua_kit.outbox import notify_channel

pytestmark = pytest.mark.integration

SERVICES = ("dossier", "notify", "payment", "audit")
TOPIC = "motcua.dossier.v1"


def dsn(pg: Postgres, user: str, dbname: str) -> str:
    return f"host=127.0.0.1 port={pg.port} user={user} dbname={dbname} connect_timeout=10"


def url(pg: Postgres, svc: str, role: str) -> str:
    """The SQLAlchemy URL of motcua_<svc> as motcua_<svc>_<role> (migrator or app)."""
    return f"postgresql+psycopg://motcua_{svc}_{role}@127.0.0.1:{pg.port}/motcua_{svc}"


def bootstrap(pg: Postgres, *services: str) -> str:
    """`infra/postgres.sh roles`, on the harness's cluster; returns its output."""
    env = {**os.environ, "PG_PORT": str(pg.port), "PG_DATABASES": "postgres"}
    if pg.state_dir is not None:
        env["PG_STATE_DIR"] = str(pg.state_dir)
    result = subprocess.run(
        ["bash", str(ROOT / "infra/postgres.sh"), "roles", *services],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def as_superuser(pg: Postgres, dbname: str, sql: str, *params: object) -> list[tuple]:
    with psycopg.connect(dsn(pg, "postgres", dbname), autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def tables(pg: Postgres, svc: str) -> dict[str, str]:
    """Table name -> owner, in motcua_<svc>'s schema public."""
    sql = "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'"
    rows = as_superuser(pg, f"motcua_{svc}", sql)
    return dict(rows)


@pytest.fixture(scope="module")
def roles(postgres: Postgres) -> Iterator[Postgres]:
    """The four databases and their roles, each migrated as the migration Job does it."""
    bootstrap(postgres)
    for svc in SERVICES:
        prefix = f"MOTCUA_{svc.upper()}_"
        env = {
            **os.environ,
            prefix + "DATABASE_URL": url(postgres, svc, "app"),
            prefix + "MIGRATION_DATABASE_URL": url(postgres, svc, "migrator"),
        }
        result = subprocess.run(
            [sys.executable, "-m", f"motcua_{svc}", "migrate"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"{svc} migrate:\n{result.stdout}\n{result.stderr}"
    yield postgres


def test_bootstrap_is_idempotent_and_shuts_public_out(roles: Postgres) -> None:
    # A second run (after the migrations) changes nothing and fails on nothing.
    assert "roles ready for: dossier notify payment audit" in bootstrap(roles)
    for svc in SERVICES:
        db = f"motcua_{svc}"
        ((connect, temp, owner),) = as_superuser(
            roles,
            db,
            "SELECT has_database_privilege('public', %s, 'CONNECT'),"
            " has_database_privilege('public', %s, 'TEMPORARY'),"
            " pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
            db,
            db,
            db,
        )
        assert (connect, temp, owner) == (False, False, f"motcua_{svc}_migrator")
        ((create, usage, schema_owner),) = as_superuser(
            roles,
            db,
            "SELECT has_schema_privilege('public', 'public', 'CREATE'),"
            " has_schema_privilege('public', 'public', 'USAGE'),"
            " pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'public'",
        )
        assert (create, usage, schema_owner) == (False, False, f"motcua_{svc}_migrator")
        (attributes,) = as_superuser(
            roles,
            db,
            "SELECT bool_or(rolsuper OR rolcreatedb OR rolcreaterole OR rolreplication"
            " OR rolbypassrls), bool_and(rolcanlogin) FROM pg_roles WHERE rolname IN (%s, %s)",
            f"motcua_{svc}_migrator",
            f"motcua_{svc}_app",
        )
        assert attributes == (False, True)


@pytest.mark.parametrize("svc", SERVICES)
def test_the_migration_ran_as_the_migration_role(roles: Postgres, svc: str) -> None:
    owners = tables(roles, svc)
    assert "alembic_version" in owners and "inbox" in owners, owners
    assert set(owners.values()) == {f"motcua_{svc}_migrator"}, owners
    ((version,),) = as_superuser(roles, f"motcua_{svc}", "SELECT version_num FROM alembic_version")
    assert version


def test_the_app_role_cannot_migrate(roles: Postgres) -> None:
    """Without MIGRATION_DATABASE_URL the runtime role would run the DDL: PostgreSQL refuses."""
    bootstrap(roles, "rolecheck")  # an empty database with the same two roles
    with pytest.raises(Exception, match="permission denied for schema public"):
        migrate(url(roles, "rolecheck", "app"), "motcua_dossier:migrations")
    assert tables(roles, "rolecheck") == {}


@pytest.mark.parametrize("svc", SERVICES)
def test_a_service_cannot_reach_another_services_database(roles: Postgres, svc: str) -> None:
    for other in SERVICES:
        if other == svc:
            continue
        for role in ("app", "migrator"):
            user = f"motcua_{svc}_{role}"
            with pytest.raises(psycopg.OperationalError) as refused:
                psycopg.connect(dsn(roles, user, f"motcua_{other}")).close()
            message = str(refused.value)
            assert f'permission denied for database "motcua_{other}"' in message, message
            assert "does not have CONNECT privilege" in message, message
    # Nor another service's tables through its own connection: there is nothing to read them
    # with (PostgreSQL has no cross-database queries), and a role of its own database cannot
    # become the other service's role.
    with psycopg.connect(dsn(roles, f"motcua_{svc}_app", f"motcua_{svc}")) as conn:
        other = next(o for o in SERVICES if o != svc)
        with pytest.raises(errors.InsufficientPrivilege, match="permission denied to set role"):
            conn.execute(f"SET ROLE motcua_{other}_app")


@pytest.mark.parametrize("svc", SERVICES)
def test_the_app_role_cannot_drop_alter_or_create(roles: Postgres, svc: str) -> None:
    owned = tables(roles, svc)
    statements = [
        *(f'DROP TABLE "{t}"' for t in owned),
        *(f'ALTER TABLE "{t}" ADD COLUMN pwned text' for t in owned),
        *(f'ALTER TABLE "{t}" OWNER TO motcua_{svc}_app' for t in owned),
        *(f'TRUNCATE "{t}"' for t in owned),
        'CREATE INDEX ix_pwned ON inbox ("offset")',
        "CREATE TABLE pwned (id int)",
        "CREATE TEMPORARY TABLE pwned (id int)",
        "CREATE SCHEMA pwned",
    ]
    refusals = {
        "must be owner of table",
        "must be owner of relation",
        "permission denied for table",
        "permission denied for schema public",
        "permission denied to create temporary tables",
        "permission denied for database",
    }
    with psycopg.connect(dsn(roles, f"motcua_{svc}_app", f"motcua_{svc}")) as conn:
        for sql in statements:
            with pytest.raises(errors.InsufficientPrivilege) as refused, conn.transaction():
                conn.execute(sql)
            assert any(r in str(refused.value) for r in refusals), (sql, str(refused.value))
    assert tables(roles, svc) == owned


@pytest.mark.parametrize("svc", SERVICES)
def test_the_app_role_reads_and_writes_rows(roles: Postgres, svc: str) -> None:
    group = f"roles-test-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn(roles, f"motcua_{svc}_app", f"motcua_{svc}")) as conn:
        for table in tables(roles, svc):
            privileges = conn.execute(
                "SELECT has_table_privilege(%s, 'SELECT'), has_table_privilege(%s, 'INSERT'),"
                " has_table_privilege(%s, 'UPDATE'), has_table_privilege(%s, 'DELETE')",
                (table,) * 4,
            ).fetchone()
            assert privileges == (True, True, True, True), table
        conn.execute(
            'INSERT INTO inbox (consumer_group, event_id, topic, partition, "offset", processed_at)'
            " VALUES (%s, 'e-1', 't', 0, 1, now())",
            (group,),
        )
        conn.execute('UPDATE inbox SET "offset" = 2 WHERE consumer_group = %s', (group,))
        row = conn.execute(
            'SELECT event_id, "offset" FROM inbox WHERE consumer_group = %s', (group,)
        ).fetchone()
        assert row == ("e-1", 2)
        conn.execute("DELETE FROM inbox WHERE consumer_group = %s", (group,))
        conn.commit()
        if svc != "audit":  # the outbox's id comes from a sequence the migrator owns
            (next_id,) = conn.execute("SELECT nextval('outbox_id_seq')").fetchone()  # type: ignore[misc]
            assert next_id >= 1
            conn.rollback()


def test_the_app_role_can_listen_and_notify(roles: Postgres) -> None:
    """The outbox's NOTIFY rides on the insert and the relay LISTENs: neither needs a grant."""
    channel = notify_channel(DossierService.outbox_table)
    app = dsn(roles, "motcua_dossier_app", "motcua_dossier")
    with psycopg.connect(app, autocommit=True) as listener, psycopg.connect(app) as sender:
        listener.execute(f'LISTEN "{channel}"')
        sender.execute("SELECT pg_notify(%s, 'x')", (channel,))
        sender.commit()
        got = [n.payload for n in listener.notifies(timeout=10, stop_after=1)]
        assert got == ["x"]
        # The relay's one-at-a-time lock is an advisory lock: no grant either.
        assert sender.execute("SELECT pg_try_advisory_xact_lock(42)").fetchone() == (True,)


class ChartServe(ServiceProcess):
    """`serve --no-migrate-first`, as the chart's Deployment runs it after the migration Job."""

    def command(self) -> list[str]:
        return [*super().command(), "--no-migrate-first"]


def test_dossier_runs_end_to_end_on_its_app_role(
    roles: Postgres,
    kafka: Kafka,
    signing_keys: tuple[bytes, Path],
    token: Callable[..., str],
    tmp_path: Path,
) -> None:
    started_ms = int(time.time() * 1000)
    prefix = "MOTCUA_DOSSIER_"
    env = {
        "DATABASE_URL": url(roles, "dossier", "app"),
        "KAFKA_BOOTSTRAP": kafka.bootstrap,
        "JWT_PUBLIC_KEY_FILE": str(signing_keys[1]),
        "CONSUMER_GROUP": f"motcua-dossier-roles-{uuid.uuid4().hex[:8]}",
        # Polling slowly: an event that arrives well before the poll was woken, not polled.
        "OUTBOX_POLL_SECONDS": "30",
        "SHUTDOWN_GRACE_SECONDS": "5",
    }
    dossier = ChartServe("dossier", {prefix + k: v for k, v in env.items()}, tmp_path)
    with running(dossier):
        dossier.start()

        def listening() -> bool:
            rows = as_superuser(
                roles,
                "postgres",
                "SELECT 1 FROM pg_stat_activity WHERE usename = 'motcua_dossier_app'"
                " AND datname = 'motcua_dossier' AND query LIKE 'LISTEN %%'",
            )
            return bool(rows)

        wait_for(listening, 30, 0.1, "the dossier outbox relay to LISTEN as motcua_dossier_app")

        client = DossierClient(dossier.target, token("citizen", citizen_id=CITIZEN_ID))
        submitted = client.submit(submit_request("HT-004", f"k-{uuid.uuid4()}")).dossier
        assert client.get(submitted.code) == submitted

        def published() -> list:
            # Codes repeat across the tests' fresh databases on the shared broker: this
            # dossier's event is the submitted event that carries this very dossier.
            return [
                r
                for r in read_topic(kafka.bootstrap, TOPIC)
                if r.key == submitted.code.encode()
                and r.timestamp >= started_ms
                and header(r, "ce_type") == b"vn.motcua.dossier.submitted.v1"
                and events_pb2.DossierSubmitted.FromString(r.value).dossier == submitted
            ]

        # Well inside the 30 s poll.
        records = wait_for(published, 20, 0.2, "the submitted event on Kafka")
        assert len(records) == 1, [(header(r, "ce_id"), r.partition, r.offset) for r in records]
        assert dossier.terminate() == 0
    log = dossier.log_tail(400)
    assert "permission denied" not in log, log
    assert "cannot LISTEN" not in log, log
    ((pending,),) = as_superuser(
        roles, "motcua_dossier", "SELECT count(*) FROM outbox WHERE published_at IS NULL"
    )
    assert pending == 0
