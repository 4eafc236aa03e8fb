"""The lifecycle the outbox relay and the consumer runner share.

Both run a loop on a daemon thread and own a Kafka producer made on first use (the relay
publishes with it, the runner dead-letters with it). Stopping finishes what is in hand, then
flushes and closes the producer, so nothing accepted is left in its buffer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Self

from kafka import KafkaProducer


class ProducingWorker:
    """A background loop (``run``, which returns once ``_stop`` is set) with its producer."""

    def __init__(self, thread_name: str, producer_factory: Callable[[], KafkaProducer]) -> None:
        self._thread_name = thread_name
        self._producer_factory = producer_factory
        self._producer: KafkaProducer | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run(self) -> None:  # pragma: no cover - each worker has its own loop
        raise NotImplementedError

    def _ensure_producer(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = self._producer_factory()
        return self._producer

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=self._thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the work in hand, then flush and close the producer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._producer is not None:
            self._producer.flush(timeout=timeout)
            self._producer.close(timeout=timeout)
            self._producer = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
