"""Test harness: the real Kafka broker and PostgreSQL (via infra/ scripts), service processes.

Everything binds to 127.0.0.1 on free ports, waits on conditions with deadlines (never fixed
sleeps), and is stopped by PID when the session ends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port the kernel says is free, never one this process was given before: two ports
    chosen before either is bound (a fixture's and running_suite's) must not be the same."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


class StopWaiting(Exception):
    """Raised by a condition when waiting longer cannot help (e.g. the process died)."""


def wait_for(
    condition: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except StopWaiting:
            raise
        except Exception as exc:  # conditions may fail while things start
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}: {last_exc}")


@dataclass
class Kafka:
    """A single-node KRaft broker started by infra/kafka.sh in its own state directory."""

    state_dir: Path
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _script(self, action: str) -> None:
        env = {
            **os.environ,
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "KAFKA_STATE_DIR": str(self.state_dir),
        }
        subprocess.run(["bash", str(ROOT / "infra/kafka.sh"), action], env=env, check=True)

    def start(self) -> None:
        self._script("start")

    def stop(self) -> None:
        self._script("stop")

    def kill(self) -> None:
        self._script("kill")


@dataclass
class Postgres:
    """A throwaway PostgreSQL cluster started by infra/postgres.sh."""

    port: int = field(default_factory=free_port)
    state_dir: Path | None = None

    def _env(self) -> dict[str, str]:
        env = {**os.environ, "PG_PORT": str(self.port), "PG_DATABASES": "postgres"}
        if self.state_dir is not None:
            env["PG_STATE_DIR"] = str(self.state_dir)
        return env

    def start(self) -> None:
        subprocess.run(
            ["bash", str(ROOT / "infra/postgres.sh"), "start"], env=self._env(), check=True
        )

    def stop(self) -> None:
        subprocess.run(
            ["bash", str(ROOT / "infra/postgres.sh"), "stop"], env=self._env(), check=True
        )

    @property
    def base_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}"

    def create_database(self, prefix: str = "t") -> str:
        """A fresh empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"{self.base_url}/{name}"


class ServiceProcess:
    """One motcua service run as its own process (``python -m motcua_<svc> serve``)."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.prefix = f"MOTCUA_{name.upper()}_"
        self.grpc_port = int(env.get(self.prefix + "GRPC_PORT") or free_port())
        self.metrics_port = int(env.get(self.prefix + "METRICS_PORT") or free_port())
        self.env = {
            **os.environ,
            **env,
            self.prefix + "GRPC_PORT": str(self.grpc_port),
            self.prefix + "METRICS_PORT": str(self.metrics_port),
            self.prefix + "BIND_HOST": "127.0.0.1",
        }
        self.log_path = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def command(self) -> list[str]:
        """What runs the service (the bench's FastStream peer runs something else)."""
        return [sys.executable, "-m", f"motcua_{self.name}", "serve"]

    def start(self, wait: bool = True, **extra_env: str) -> ServiceProcess:
        env = {**self.env, **{self.prefix + k: v for k, v in extra_env.items()}}
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child process owns it
        self.proc = subprocess.Popen(
            self.command(),
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        if wait:
            self.wait_serving()
        return self

    def wait_serving(self, timeout: float = 60.0) -> None:
        def serving() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise StopWaiting(f"{self.name} exited with {self.proc.returncode}")
            with grpc.insecure_channel(self.target) as ch:
                resp = health_pb2_grpc.HealthStub(ch).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=1
                )
            return resp.status == health_pb2.HealthCheckResponse.SERVING

        try:
            wait_for(serving, timeout, 0.1, f"{self.name} to serve")
        except (AssertionError, StopWaiting) as exc:
            raise AssertionError(f"{exc}\n--- {self.name} log ---\n{self.log_tail()}") from None

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait: the graceful path."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"{self.name} did not stop within {timeout}s") from None


@contextmanager
def running(*procs: ServiceProcess) -> Iterator[None]:
    try:
        yield
    finally:
        for p in procs:
            if p.proc is not None and p.proc.poll() is None:
                p.proc.kill()
                p.proc.wait(10)


def read_topic(bootstrap: str, topic: str, timeout: float = 20.0) -> list[Any]:
    """Every record now in ``topic``, from the beginning to the current end (no group)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=[bootstrap], api_version=(4, 0), enable_auto_commit=False
    )
    try:
        parts = wait_for(lambda: consumer.partitions_for_topic(topic), timeout, 0.2, topic)
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end in {timeout}s")
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def header(record: Any, name: str) -> bytes | None:
    """The value of one Kafka header of a record (None when absent)."""
    for key, value in record.headers or []:
        if key == name:
            return bytes(value)
    return None
