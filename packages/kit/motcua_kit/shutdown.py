"""One shutdown deadline for a whole process, and the steps that run within it.

A service stops within ``SHUTDOWN_GRACE_SECONDS`` counted from the signal, not per component:
the components stop in parallel against one :class:`Deadline`, whatever is still running at
the deadline is abandoned (and logged with its stack), and a watchdog ends the process shortly
after the deadline even if something — an atexit hook, a non-daemon thread, a start that never
returned — would keep it alive. See docs/adr/0010-one-shutdown-deadline.md.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)

EXIT_MARGIN_SECONDS = 1.0
"""How long after the deadline the watchdog waits for a clean exit before ending the process."""

ABANDONED_EXIT_CODE = 1
"""The exit status when something had to be abandoned at the deadline (0 when all finished)."""


class Deadline:
    """A point in monotonic time; every step of a shutdown asks it how long it may still take."""

    def __init__(self, seconds: float, *, at: float | None = None) -> None:
        self.at = at if at is not None else time.monotonic() + max(seconds, 0.0)

    @classmethod
    def until(cls, at: float) -> Deadline:
        return cls(0.0, at=at)

    def remaining(self) -> float:
        return max(self.at - time.monotonic(), 0.0)

    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def before(self, seconds: float) -> Deadline:
        """A deadline ``seconds`` earlier (never before now): a share kept for later steps."""
        return Deadline.until(max(self.at - seconds, time.monotonic()))


@dataclass(frozen=True)
class Step:
    """One component's stop: a name for the logs, the call, and the threads doing its work.

    ``run`` returns False when it gave up on work still in hand (e.g. a handler still busy at
    the deadline); anything else means the component stopped.
    """

    name: str
    run: Callable[[], object]
    threads: Callable[[], Iterable[threading.Thread | None]] = lambda: ()


def thread_stack(thread: threading.Thread, limit: int = 40) -> str:
    """Where ``thread`` is now, innermost ``limit`` frames (for the log of an abandoned step)."""
    frame = sys._current_frames().get(thread.ident or -1)
    if frame is None:
        return f"  (thread {thread.name} has no frame)"
    return "".join(traceback.format_stack(frame)[-limit:]).rstrip()


def run_in_parallel(steps: Iterable[Step], deadline: Deadline) -> list[str]:
    """Run every step in its own daemon thread; wait for them until ``deadline``.

    Returns the names of the steps abandoned: still running at the deadline, or returning
    False (their work is left to daemon threads, and the caller decides how to exit). A step
    that raises is logged and counts as stopped: there is nothing more to wait for.
    """
    started: list[tuple[Step, threading.Thread]] = []
    gave_up: set[str] = set()
    for step in steps:

        def run(step: Step = step) -> None:
            try:
                if step.run() is False:
                    gave_up.add(step.name)
            except Exception:
                log.exception("stopping %s failed", step.name)

        thread = threading.Thread(target=run, name=f"stop-{step.name}", daemon=True)
        thread.start()
        started.append((step, thread))
    for _, thread in started:
        thread.join(deadline.remaining())
    abandoned = []
    for step, thread in started:
        if not thread.is_alive() and step.name not in gave_up:
            continue
        abandoned.append(step.name)
        # Where the component's own threads are stuck; the stopping thread's stack otherwise.
        busy = [t for t in step.threads() if t is not None and t.is_alive()] or (
            [thread] if thread.is_alive() else []
        )
        stacks = [f"  -- thread {t.name}:\n{thread_stack(t)}" for t in busy]
        log.error(
            "shutdown deadline passed: abandoning %s\n%s",
            step.name,
            "\n".join(stacks),
            extra={"component": step.name},
        )
    return abandoned


def exit_process(code: int, deadline: Deadline) -> None:
    """End the process now: atexit hooks within the deadline, then ``os._exit``.

    After a graceful stop nothing is left for the interpreter's own shutdown to do but to
    join threads and collect garbage, which on a loaded machine took seconds (measured 1-10 s);
    a hook still running at the deadline is left behind.
    """
    hooks = threading.Thread(target=atexit._run_exitfuncs, name="atexit-hooks", daemon=True)
    hooks.start()
    hooks.join(deadline.remaining())
    if hooks.is_alive():
        log.error("atexit hooks still running at the shutdown deadline:\n%s", thread_stack(hooks))
    flush_logs()
    os._exit(code)


def flush_logs() -> None:
    """Flush every handler without taking the logging module's global lock."""
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:  # nothing can be reported once logging fails
            continue


class Watchdog:
    """Ends the process at a point in time unless disarmed: the last resort of a shutdown."""

    def __init__(self, at: float, code: int = ABANDONED_EXIT_CODE) -> None:
        self._at = at
        self._code = code
        self._disarmed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shutdown-watchdog", daemon=True)

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def disarm(self) -> None:
        self._disarmed.set()

    def _run(self) -> None:
        if self._disarmed.wait(max(self._at - time.monotonic(), 0.0)):
            return
        alive = [t for t in threading.enumerate() if t is not threading.current_thread()]
        log.error(
            "process did not exit by the shutdown deadline; exiting now with %d threads left",
            len(alive),
            extra={"threads": [t.name for t in alive]},
        )
        for t in alive:
            if not t.daemon and t is not threading.main_thread():
                log.error("non-daemon thread %s still running:\n%s", t.name, thread_stack(t))
        log.error("main thread:\n%s", thread_stack(threading.main_thread()))
        flush_logs()
        os._exit(self._code)
