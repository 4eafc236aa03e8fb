"""`make run` (scripts/run.sh) twice on the same .state/, Ctrl-C, and a run after a killed one.

Issue 14, point 2: the second run failed because the sandbox gateway restarted its transaction
numbers and the payment service refused the IPN as a replay; Ctrl-C ended in make's "Error 130".
Each run here is the real script: its own Kafka broker and state folder, free ports, a bounded
time, and whatever it started stopped by PID at the end.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from harness import ROOT, free_port
from motcua.dossier.v1 import dossier_pb2, dossier_pb2_grpc

pytestmark = pytest.mark.integration

RUN_TIMEOUT = 300.0  # one demo: broker start, four services, one dossier walked through
_STARTED = re.compile(r"^started (\w+) \(pid (\d+)\) (?:gRPC 127\.0\.0\.1:(\d+))?")
_TXN = re.compile(r"gateway transaction (\d+)")
_DONE = re.compile(r"demo finished: dossier (\S+) result returned")


class Run:
    """scripts/run.sh as a process in its own process group, as a terminal would run it."""

    def __init__(self, env: dict[str, str], once: bool) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            ["bash", "scripts/run.sh"],
            cwd=ROOT,
            env={**env, "MOTCUA_DEMO_ONCE": "1" if once else "0"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            process_group=0,
            # A terminal's foreground job gets SIGINT with its default action, whatever ours is.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float = RUN_TIMEOUT) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if m := re.search(pattern, line):
                    return m
            if self.proc.poll() is not None:
                self._reader.join(5)
                pytest.fail(
                    f"run.sh exited {self.proc.returncode} before {pattern!r}:\n{self.output}"
                )
            time.sleep(0.1)
        pytest.fail(f"no {pattern!r} within {timeout:.0f}s:\n{self.output}")

    def wait(self, timeout: float = RUN_TIMEOUT) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"run.sh did not end within {timeout:.0f}s:\n{self.output}")
        self._reader.join(5)
        return code

    def started(self) -> dict[str, tuple[int, int]]:
        """name → (pid, gRPC port or 0) of what the demo said it started."""
        out = {}
        for line in self.lines:
            if m := _STARTED.match(line):
                out[m[1]] = (int(m[2]), int(m[3] or 0))
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def _ours(pid: int, state: Path) -> bool:
    """Whether ``pid`` is still a process of a demo on ``state`` (not a reused PID)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"MOTCUA_DEMO_STATE={state}".encode() in environ.split(b"\0")


def _stop_what_is_left(state: Path, runs: list[Run], env: dict[str, str]) -> None:
    for run in runs:
        run.kill()
    for run in runs:
        for pid, _ in run.started().values():
            if _ours(pid, state):
                os.kill(pid, signal.SIGKILL)
    subprocess.run(["bash", "infra/kafka.sh", "stop"], cwd=ROOT, env=env, timeout=90, check=False)


@pytest.fixture
def demo_env(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path, list[Run]]]:
    """The environment of a `make run` of our own: state, broker ports, free demo ports."""
    state = (tmp_path / "state").resolve()
    env = {
        **os.environ,
        "MOTCUA_STATE_DIR": str(state),
        "KAFKA_STATE_DIR": str(state / "kafka"),
        "KAFKA_PORT": str(free_port()),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "MOTCUA_DEMO_FREE_PORTS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    runs: list[Run] = []
    try:
        yield env, state, runs
    finally:
        _stop_what_is_left(state, runs, env)


def _kafka_running(env: dict[str, str]) -> bool:
    status = subprocess.run(
        ["bash", "infra/kafka.sh", "status"], cwd=ROOT, env=env, capture_output=True, timeout=30
    )
    return status.returncode == 0


def test_the_demo_runs_twice_on_one_state_and_ctrl_c_ends_the_second_with_status_0(
    demo_env: tuple[dict[str, str], Path, list[Run]],
) -> None:
    env, state, runs = demo_env
    runs.append(first := Run(env, once=True))
    assert first.wait() == 0, first.output
    assert _DONE.search(first.output), first.output
    assert (state / "dossier.db").exists()

    runs.append(second := Run(env, once=False))  # the same .state/, as the next day
    second.wait_for_line(r"services keep running")
    assert _DONE.search(second.output), second.output
    first_txn, second_txn = (_TXN.search(r.output) for r in (first, second))
    assert first_txn and second_txn and first_txn[1] != second_txn[1]

    # The README's way in: a token for the demo's keys, accepted by the running services.
    token = subprocess.run(
        [
            sys.executable,
            "-m",
            "motcua_ops",
            "dev",
            "token",
            "--role",
            "officer",
            "--agency",
            "STP",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert token.returncode == 0, token.stderr
    code = _DONE.search(second.output)[1]  # type: ignore[index]
    _, dossier_port = second.started()["dossier"]
    with grpc.insecure_channel(f"127.0.0.1:{dossier_port}") as channel:
        got = dossier_pb2_grpc.DossierServiceStub(channel).GetDossier(
            dossier_pb2.GetDossierRequest(code=code),
            metadata=[("authorization", f"Bearer {token.stdout.strip()}")],
            timeout=30,
        )
    assert got.dossier.status == dossier_pb2.DOSSIER_STATUS_RESULT_RETURNED

    os.killpg(second.proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
    assert second.wait(120) == 0, second.output
    assert "stopped audit" in second.output
    assert not [n for n, (pid, _) in second.started().items() if _ours(pid, state)]
    assert not _kafka_running(env)
    assert not (state / "demo.pids").exists()


def test_a_run_after_a_killed_run_stops_what_it_left_and_passes(
    demo_env: tuple[dict[str, str], Path, list[Run]],
) -> None:
    env, state, runs = demo_env
    runs.append(killed := Run(env, once=False))
    killed.wait_for_line(r"^started audit ")
    killed.kill()  # run.sh and the demo die at once; the services and the broker live on
    left = killed.started()
    assert any(_ours(pid, state) for pid, _ in left.values())
    assert _kafka_running(env)

    runs.append(after := Run(env, once=True))
    assert after.wait() == 0, after.output
    assert "stopping what an interrupted run left running" in after.output
    assert _DONE.search(after.output), after.output
    assert not [n for n, (pid, _) in left.items() if _ours(pid, state)]
    assert not _kafka_running(env)  # adopted from the killed run, and stopped
