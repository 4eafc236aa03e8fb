"""One shutdown deadline: steps run in parallel, a hung one is abandoned and named."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from motcua_kit.shutdown import Deadline, Step, run_in_parallel
from motcua_kit.worker import ProducingWorker


def test_steps_stop_in_parallel_not_one_after_another() -> None:
    started = time.monotonic()
    abandoned = run_in_parallel(
        [Step(f"s{i}", lambda: time.sleep(0.4)) for i in range(4)], Deadline(5)
    )
    assert abandoned == []
    assert time.monotonic() - started < 1.2  # 4 x 0.4 s in turn would be 1.6 s


def test_a_hung_step_is_abandoned_at_the_deadline_with_its_stack(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = threading.Event()

    def stuck_in_a_handler() -> None:
        release.wait()

    worker = threading.Thread(target=stuck_in_a_handler, name="handler", daemon=True)
    worker.start()
    started = time.monotonic()
    try:
        with caplog.at_level(logging.ERROR):
            abandoned = run_in_parallel(
                [
                    Step("quick", lambda: None),
                    Step("grpc", worker.join, lambda: [worker]),
                    Step("gave up", lambda: False),
                ],
                Deadline(0.5),
            )
        elapsed = time.monotonic() - started
    finally:
        release.set()
    assert sorted(abandoned) == ["gave up", "grpc"]
    assert 0.4 < elapsed < 1.5
    assert "abandoning grpc" in caplog.text and "stuck_in_a_handler" in caplog.text


def test_a_failing_step_is_logged_and_not_waited_for(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> None:
        raise RuntimeError("boom")

    assert run_in_parallel([Step("broken", broken)], Deadline(2)) == []
    assert "stopping broken failed" in caplog.text


def test_deadline_keeps_a_share_for_later_steps() -> None:
    deadline = Deadline(10)
    assert 7.5 < deadline.before(2).remaining() <= 8.0
    assert Deadline(1).before(5).remaining() == 0.0
    assert Deadline(0).expired()


class _Busy(ProducingWorker):
    """A loop that ignores its stop flag for a while (a record in hand that takes long)."""

    def __init__(self, busy_for: float) -> None:
        super().__init__("busy", lambda: None)  # type: ignore[arg-type, return-value]
        self.busy_for = busy_for

    def run(self) -> None:
        time.sleep(self.busy_for)
        self._stop.wait()


def test_a_worker_stop_is_one_budget_and_says_when_it_gave_up() -> None:
    worker = _Busy(busy_for=5)
    worker.start()
    started = time.monotonic()
    assert worker.stop(0.3) is False
    assert time.monotonic() - started < 1.0
    quick = _Busy(busy_for=0)
    quick.start()
    assert quick.stop(2) is True


def test_a_worker_stop_bounds_the_producer_close_by_the_same_budget() -> None:
    closed: list[Any] = []

    class Producer:
        def close(self, timeout: float) -> None:
            closed.append(timeout)

    worker = _Busy(busy_for=0)
    worker._producer = Producer()  # type: ignore[assignment]
    worker.start()
    assert worker.stop(2) is True
    assert len(closed) == 1 and 0 < closed[0] <= 2
