"""Fault-drill machinery: a load driver that survives restarts, and a chaos schedule.

Kept apart from the test so the drill reads as what it checks; everything here talks to real
processes on 127.0.0.1 and waits on conditions with deadlines.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc

from harness import Kafka, ServiceProcess

T = TypeVar("T")
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


def retrying(call: Callable[[], T], deadline_s: float = 120.0) -> T:
    """Call until it answers: a service being restarted is UNAVAILABLE for a moment."""
    deadline = time.monotonic() + deadline_s
    delay = 0.05
    while True:
        try:
            return call()
        except grpc.RpcError as exc:
            if exc.code() not in RETRYABLE or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


@dataclass
class Injection:
    at: float
    target: str
    action: str


def _always_done() -> float:
    return 1.0


@dataclass
class Chaos:
    """Kills each service with SIGKILL at random moments and restarts it; stops Kafka once.

    The moments are spread over the run: each injection waits for a random fraction of the
    load (``progress``, 0..1) to be done, so the faults land early, midway and late.
    """

    services: dict[str, ServiceProcess]
    kafka: Kafka
    progress: Callable[[], float] = _always_done
    kills_each: int = 3
    seed: int = 20261129
    log: list[Injection] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _started: float = 0.0

    def _note(self, target: str, action: str) -> None:
        self.log.append(Injection(round(time.monotonic() - self._started, 1), target, action))

    def _reach(self, fraction: float) -> bool:
        """Wait until the load has done ``fraction`` of its work; False when stopped."""
        while self.progress() < fraction:
            if self._stop.wait(0.2):
                return False
        return not self._stop.is_set()

    def _run(self) -> None:
        rng = random.Random(self.seed)
        plan: list[tuple[float, str]] = [
            (rng.uniform(0.02, 0.9), name) for name in self.services for _ in range(self.kills_each)
        ]
        plan.append((rng.uniform(0.2, 0.7), "kafka"))
        for fraction, name in sorted(plan):
            if not self._reach(fraction) or self._stop.wait(rng.uniform(0.5, 2.0)):
                return
            if name == "kafka":
                self._note("kafka", "stop")
                self.kafka.stop()
                self._stop.wait(rng.uniform(2.0, 4.0))
                self.kafka.start()
                self._note("kafka", "start")
                continue
            proc = self.services[name]
            proc.kill9()
            self._note(name, "kill -9")
            proc.start(wait=False)
            proc.wait_serving(120)
            self._note(name, "restarted")

    def start(self) -> None:
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the chaos schedule did not finish"

    def stop(self) -> None:
        self._stop.set()


@dataclass
class Check:
    name: str
    expected: Any
    actual: Any

    @property
    def ok(self) -> bool:
        """An ``expected`` of None marks a figure reported for the reader, not a check."""
        return self.expected is None or bool(self.expected == self.actual)
