"""A Go-built backend (Jaeger, Prometheus, the OpenTelemetry Collector) run for the tests.

Each binary comes from an ``infra/<tool>.sh fetch|path`` script that builds it into the cache
from the Go module proxy (on first use when absent: that takes minutes). :class:`GoBackend`
starts it on free loopback ports, waits with a deadline until it answers, retries with other
ports when one was taken meanwhile, and stops it by PID. Subclasses say how to run and probe it.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from harness import ROOT, StopWaiting, free_port, wait_for

BUILD_TIMEOUT = 1800.0
"""Seconds a first build may take (Jaeger: some 6.5 min on 2 cores)."""


def script_binary(script: str, *, build: bool = True) -> Path | None:
    """The cached binary of ``infra/<script>``: built first when ``build``, else None if absent."""
    done = subprocess.run(
        ["bash", str(ROOT / "infra" / script), "fetch" if build else "path"],
        stdout=subprocess.PIPE,
        stderr=None if build else subprocess.DEVNULL,
        text=True,
        check=build,
        timeout=BUILD_TIMEOUT,
    )
    if done.returncode != 0:
        return None
    return Path(done.stdout.strip().splitlines()[-1])


@dataclass
class GoBackend:
    """One process of a backend; ``ports`` maps the subclass's port names to free ports."""

    work_dir: Path
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    name: ClassVar[str] = "backend"
    script: ClassVar[str] = ""  # infra/<script> fetch|path
    port_names: ClassVar[tuple[str, ...]] = ()

    @property
    def log_path(self) -> Path:
        return self.work_dir / f"{self.name}.log"

    def command(self, binary: Path) -> list[str]:
        """The command line, once ``ports`` are chosen (files it needs are written here)."""
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return {}

    def ready(self) -> bool:
        """True once it answers; raise while it cannot yet (the wait goes on until its deadline)."""
        raise NotImplementedError

    def start(self, timeout: float = 60.0, attempts: int = 3) -> GoBackend:
        binary = script_binary(self.script)
        assert binary is not None
        self.work_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, attempts + 1):
            # Free ports are only free when picked: another process may take one meanwhile.
            self.ports = {name: free_port() for name in self.port_names}
            try:
                self._start(binary, timeout)
                return self
            except AssertionError:
                if attempt == attempts or "address already in use" not in self.log_tail():
                    raise
        raise AssertionError("unreachable")

    def _start(self, binary: Path, timeout: float) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(binary),
                env={**os.environ, **self.environment()},
                cwd=self.work_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def answering() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise StopWaiting(f"{self.name} exited with {self.proc.returncode}")
            return self.ready()

        try:
            wait_for(answering, timeout, 0.1, f"{self.name} to be ready")
        except (AssertionError, StopWaiting) as exc:
            self.stop()
            raise AssertionError(f"{exc}\n--- {self.name} log ---\n{self.log_tail()}") from None

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to its PID and wait; SIGKILL if it does not stop in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"
