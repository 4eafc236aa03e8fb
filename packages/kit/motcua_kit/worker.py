"""The lifecycle the outbox relay and the consumer runner share.

Both run a loop on a daemon thread and own a Kafka producer made on first use (the relay
publishes with it, the runner dead-letters with it). Stopping finishes what is in hand, then
flushes and closes the producer, so nothing accepted is left in its buffer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Self

from kafka import KafkaProducer
from kafka.errors import KafkaError

log = logging.getLogger(__name__)


class ProducingWorker:
    """A background loop (``run``, which returns once ``_stop`` is set) with its producer."""

    def __init__(self, thread_name: str, producer_factory: Callable[[], KafkaProducer]) -> None:
        self._thread_name = thread_name
        self._producer_factory = producer_factory
        self._producer: KafkaProducer | None = None
        self._stop = threading.Event()
        self._stop_by: float | None = None  # monotonic deadline of the stop, once asked to
        self._thread: threading.Thread | None = None

    def run(self) -> None:  # pragma: no cover - each worker has its own loop
        raise NotImplementedError

    def _ensure_producer(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = self._producer_factory()
        return self._producer

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def _remaining(self, otherwise: float) -> float:
        """Seconds left of the stop's budget, or ``otherwise`` when not stopping."""
        if self._stop_by is None:
            return otherwise
        return max(self._stop_by - time.monotonic(), 0.0)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=self._thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Finish the work in hand, then flush and close the producer, all within ``timeout``.

        One budget for the whole stop (not ``timeout`` per step). Returns False when the loop
        was still busy at the end of it: its thread is a daemon and is abandoned.
        """
        self._stop_by = time.monotonic() + max(timeout, 0.0)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self._remaining(0.0))
        finished = self._thread is None or not self._thread.is_alive()
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=self._remaining(0.0))  # flushes first
            except KafkaError as exc:
                log.warning("%s: producer not flushed by the deadline: %s", self._thread_name, exc)
                finished = False
        return finished

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
