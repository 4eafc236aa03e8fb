"""The real broker in its secured mode (ADR 0084): SASL_SSL, SCRAM-SHA-512 users, ACLs.

A throwaway CA and broker certificate made with ``cryptography``, the broker started by
``KAFKA_SECURITY=sasl_ssl infra/kafka.sh start`` on free loopback ports, one SCRAM user per
service and the ACLs each service needs — derived from the topic registry
(contracts/topics.yaml), never listed by hand:

* WRITE on the topics it produces (the outbox relay), and on the ``.dlq`` of each topic it
  consumes (the consumer runner dead-letters there);
* READ on each topic it consumes, and on its own consumer group;
* DESCRIBE on all of those (metadata, offsets).

Nothing else: no CREATE (topics are created by the admin, as the chart's KafkaTopic objects
do in production), no access to other services' topics or groups. The broker is stopped by
its PID (``infra/kafka.sh stop``) when the context ends.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    KafkaAdminClient,
    NewTopic,
    ResourcePattern,
    ResourceType,
    UserScramCredentialUpsertion,
)

from harness import ROOT, free_port
from motcua_kit.consumer import dlq_topic
from motcua_kit.registry import TopicRegistry, default_registry

SERVICES = ("dossier", "payment", "notify", "audit")
MECHANISM = "SCRAM-SHA-512"


# -------------------------------------------------------------------------------- PKI
@dataclass(frozen=True)
class Pki:
    ca_file: Path
    cert_file: Path
    key_file: Path


def make_pki(folder: Path) -> Pki:
    """A CA and a broker certificate for 127.0.0.1 / localhost, valid for a day."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "motcua test Kafka CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kafka-broker")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [x509.ExtendedKeyUsageOID.SERVER_AUTH, x509.ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    pki = Pki(folder / "ca.pem", folder / "broker.pem", folder / "broker-key.pem")
    pki.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,  # Kafka's PEM keystore reads PKCS#8 only
            serialization.NoEncryption(),
        )
    )
    pki.key_file.chmod(0o600)
    return pki


# -------------------------------------------------------------------------------- ACLs
def _acl(principal: str, op: ACLOperation, kind: ResourceType, name: str) -> ACL:
    return ACL(
        principal=principal,
        host="*",
        operation=op,
        permission_type=ACLPermissionType.ALLOW,
        resource_pattern=ResourcePattern(kind, name, ACLResourcePatternType.LITERAL),
    )


def service_acls(
    service: str,
    registry: TopicRegistry | None = None,
    *,
    user: str = "",
    without: tuple[str, ...] = (),
) -> list[ACL]:
    """What ``service``'s principal (``User:<service>``, or ``User:<user>``) may do, from the
    topic registry.

    ``without`` drops grants, for the tests: ``"READ motcua.notify.v1"``, ``"READ group"``
    (its consumer group).
    """
    reg = registry or default_registry()
    principal = f"User:{user or service}"
    group = reg.systems[service].consumer_group or f"motcua-{service}"
    grants: list[tuple[ACLOperation, ResourceType, str]] = []
    for topic in reg.produced_by(service):
        grants += [(ACLOperation.WRITE, ResourceType.TOPIC, topic.name)]
    consumed = sorted(reg.consumed_by(service))
    for name in consumed:
        grants += [
            (ACLOperation.READ, ResourceType.TOPIC, name),
            (ACLOperation.WRITE, ResourceType.TOPIC, dlq_topic(name)),
        ]
    if consumed:
        grants += [(ACLOperation.READ, ResourceType.GROUP, group)]
    # DESCRIBE on everything it reads or writes (READ and WRITE imply it, but explicit is
    # clearer in `kafka-acls --list`).
    grants += [(ACLOperation.DESCRIBE, kind, name) for _, kind, name in grants]
    acls = []
    for op, kind, name in dict.fromkeys(grants):
        label = f"{op.name} {'group' if kind == ResourceType.GROUP else name}"
        if label in without:
            continue
        acls.append(_acl(principal, op, kind, name))
    return acls


# -------------------------------------------------------------------------------- broker
@dataclass
class SecuredKafka:
    """A single-node KRaft broker with only a SASL_SSL client listener and ACLs."""

    state_dir: Path
    pki: Pki
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    passwords: dict[str, str] = field(default_factory=dict)
    admin_user: str = "admin"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _script(self, action: str) -> None:
        env = {
            **os.environ,
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "KAFKA_STATE_DIR": str(self.state_dir),
            "KAFKA_SECURITY": "sasl_ssl",
            "KAFKA_SSL_CERT_FILE": str(self.pki.cert_file),
            "KAFKA_SSL_KEY_FILE": str(self.pki.key_file),
            "KAFKA_SSL_CA_FILE": str(self.pki.ca_file),
            "KAFKA_ADMIN_USER": self.admin_user,
            "KAFKA_ADMIN_PASSWORD": self.admin_password,
        }
        subprocess.run(["bash", str(ROOT / "infra/kafka.sh"), action], env=env, check=True)

    def start(self) -> None:
        self._script("start")

    def stop(self) -> None:
        self._script("stop")

    def client_options(self, user: str, password: str) -> dict[str, Any]:
        """kafka-python options for ``user`` over SASL_SSL (the kit's own mapping)."""
        return {
            "bootstrap_servers": [self.bootstrap],
            "security_protocol": "SASL_SSL",
            "ssl_cafile": str(self.pki.ca_file),
            "sasl_mechanism": MECHANISM,
            "sasl_plain_username": user,
            "sasl_plain_password": password,
            "api_version": (4, 0),
        }

    def admin(self) -> KafkaAdminClient:
        return KafkaAdminClient(**self.client_options(self.admin_user, self.admin_password))

    def add_user(self, user: str, password: str | None = None) -> str:
        """Create (or reset) ``user``'s SCRAM-SHA-512 credential; returns the password."""
        password = password or secrets.token_urlsafe(18)
        admin = self.admin()
        try:
            errors = admin.alter_user_scram_credentials(
                [UserScramCredentialUpsertion(user, MECHANISM, password, iterations=4096)]
            )
        finally:
            admin.close()
        if errors.get(user):
            raise AssertionError(f"could not set the SCRAM credential of {user}: {errors[user]}")
        self.passwords[user] = password
        return password

    def grant(self, acls: list[ACL]) -> None:
        admin = self.admin()
        try:
            result = admin.create_acls(acls)
        finally:
            admin.close()
        if result["failed"]:
            raise AssertionError(f"could not create ACLs: {result['failed']}")

    def create_topics(self, registry: TopicRegistry | None = None) -> None:
        """Every registry topic and its DLQ, as the admin (the services may not create)."""
        reg = registry or default_registry()
        admin = self.admin()
        try:
            existing = set(admin.list_topics())
            new = []
            for name in reg.topic_names():
                if name in existing:
                    continue
                spec = reg.kafka_topic(name, "local")
                new.append(
                    NewTopic(
                        name,
                        num_partitions=spec.partitions,
                        replication_factor=1,
                        topic_configs={"retention.ms": str(spec.retention_ms)},
                    )
                )
            if new:
                admin.create_topics(new)
        finally:
            admin.close()

    def setup_service(self, service: str, *, user: str = "", without: tuple[str, ...] = ()) -> str:
        """A user (``service`` unless named) with the service's registry-derived ACLs, less
        ``without``; returns its password."""
        password = self.add_user(user or service)
        self.grant(service_acls(service, user=user, without=without))
        return password

    def service_env(
        self, service: str, *, user: str = "", password: str | None = None
    ) -> dict[str, str]:
        """The MOTCUA_<SVC>_ settings (without the prefix) a service connects with."""
        user = user or service
        return {
            "KAFKA_BOOTSTRAP": self.bootstrap,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": MECHANISM,
            "KAFKA_SASL_USERNAME": user,
            "KAFKA_SASL_PASSWORD": password if password is not None else self.passwords[user],
            "KAFKA_SSL_CAFILE": str(self.pki.ca_file),
            "KAFKA_CREATE_TOPICS": "false",
        }


@contextmanager
def secured_kafka() -> Iterator[SecuredKafka]:
    """A secured broker of its own (fresh state, fresh CA) with every registry topic."""
    state = Path(tempfile.mkdtemp(prefix="motcua-sasl-kafka-"))
    broker = SecuredKafka(state_dir=state / "broker", pki=make_pki(state / "pki"))
    broker.start()
    try:
        broker.create_topics()
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(state, ignore_errors=True)
