"""The whole suite as separate processes for end-to-end tests.

dossier, payment (with the sandbox gateway), notify (with a real SMTP server and two SMS
providers) and audit, each on its own PostgreSQL database, all on the test broker, every
consumer group positioned at the end of the topics so other tests' events stay out.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from dossier_client import DossierClient
from harness import Kafka, Postgres, ServiceProcess, free_port
from motcua.dossier.v1 import dossier_pb2
from motcua_payment.sandbox import Merchant, SandboxGateway
from notify_providers import SmsProviderServer, SmtpSink, fresh_group, notify_env, providers

TOPICS = ("motcua.dossier.v1", "motcua.payment.v1", "motcua.notify.v1")
MERCHANT = "MOTCUA01"
SECRET = "suite-hash-secret-0123456789abcdef"


@dataclass
class Suite:
    kafka: Kafka
    services: dict[str, ServiceProcess]
    urls: dict[str, str]
    sandbox: SandboxGateway
    smtp: SmtpSink
    sms_a: SmsProviderServer
    sms_b: SmsProviderServer
    token: Callable[..., str]
    started_ms: int = 0

    def dossiers(self, *roles: str, **claims: str) -> DossierClient:
        return DossierClient(self.services["dossier"].target, self.token(*roles, **claims))

    def channel(self, service: str) -> grpc.Channel:
        return grpc.insecure_channel(self.services[service].target)


def transition(
    client: DossierClient, d: dossier_pb2.Dossier, action: str, comment: str = ""
) -> dossier_pb2.Dossier:
    return client.stub.TransitionDossier(
        dossier_pb2.TransitionDossierRequest(
            code=d.code, action=action, comment=comment, expected_version=d.version
        ),
        metadata=client.metadata,
        timeout=30,
    ).dossier


@contextmanager
def running_suite(
    kafka: Kafka,
    postgres: Postgres,
    signing_keys: tuple[bytes, Path],
    token: Callable[..., str],
    folder: Path,
    extra_env: dict[str, dict[str, str]] | None = None,
) -> Iterator[Suite]:
    started_ms = int(time.time() * 1000)
    with ExitStack() as stack:
        smtp, sms_a, sms_b = stack.enter_context(providers())
        secret_file = folder / "gateway.secret"
        secret_file.write_text(SECRET)
        callback_port = free_port()
        ipn = f"http://127.0.0.1:{callback_port}/payment/sandbox/ipn"
        sandbox = stack.enter_context(
            SandboxGateway(merchants=[Merchant(MERCHANT, SECRET.encode(), ipn)])
        )
        urls = {
            name: postgres.create_database(name)
            for name in ("dossier", "payment", "notify", "audit")
        }
        extra = {
            "payment": {
                "GATEWAY_BASE_URL": sandbox.url,
                "GATEWAY_MERCHANT_CODE": MERCHANT,
                "GATEWAY_HASH_SECRET_FILE": str(secret_file),
                "CALLBACK_PORT": str(callback_port),
            },
            "notify": notify_env(smtp, sms_a, sms_b),
            "dossier": {"OUTBOX_POLL_SECONDS": "0.05"},
            "audit": {},
        }
        for name, env_ in (extra_env or {}).items():
            extra[name] = {**extra[name], **env_}
        services: dict[str, ServiceProcess] = {}
        for name in ("audit", "notify", "payment", "dossier"):
            prefix = f"MOTCUA_{name.upper()}_"
            env = {
                "DATABASE_URL": urls[name],
                "KAFKA_BOOTSTRAP": kafka.bootstrap,
                "JWT_PUBLIC_KEY_FILE": str(signing_keys[1]),
                "CONSUMER_GROUP": fresh_group(kafka.bootstrap, TOPICS),
                "OUTBOX_POLL_SECONDS": "0.05",
                "LOG_LEVEL": "INFO",
                **extra[name],
            }
            proc = ServiceProcess(name, {prefix + k: v for k, v in env.items()}, folder)
            services[name] = proc
            stack.callback(_kill, proc)
            proc.start()
        yield Suite(kafka, services, urls, sandbox, smtp, sms_a, sms_b, token, started_ms)
        for proc in services.values():
            proc.terminate()


def _kill(proc: ServiceProcess) -> None:
    if proc.proc is not None and proc.proc.poll() is None:
        proc.proc.kill()
        proc.proc.wait(10)


def unique_email() -> str:
    return f"cd.{uuid.uuid4().hex[:10]}@example.vn"
