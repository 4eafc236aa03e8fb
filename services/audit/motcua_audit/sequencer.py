"""The audit sequencer: staged entries into the Merkle log, one batch per lock (ADR 0046).

Writers only stage (``AuditLogRepository.stage``, in their own transaction, no log-wide lock).
Whoever sequences takes the oldest staged rows, up to ``batch_size``, and appends them in ONE
transaction under the log's ONE lock (PostgreSQL advisory lock, SQLite's write lock): a
group commit, as Trillian's signer and Sunlight sequence their pools.

Who sequences: every replica runs this loop and any of them may run a batch; the database
lock makes them take turns, and each turn appends whatever all replicas staged so far. There
is no leader to elect, hand over or wait for when one dies: a killed sequencer's transaction
rolls back (its staged rows stay) and the next batch, on any replica, takes them. In one
process a thread lock is taken *before* the transaction, so one thread per process waits at
the database lock and SQLite's busy handler is never the queue.

A caller that needs its entry's index (``RecordAccess``) does not wait for the loop: it runs
batches itself until its entry is sequenced (``sequence_until``), usually the first one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from motcua_audit.adapters.db import AuditLogRepository, SequencedBatch
from motcua_audit.metrics import (
    ENTRIES_APPENDED,
    LOG_SIZE,
    SEQUENCER_BATCH_SECONDS,
    SEQUENCER_BATCH_SIZE,
    SEQUENCER_DUPLICATES,
    SEQUENCER_FAILURES,
)
from motcua_kit.db import transaction

log = logging.getLogger(__name__)


class SequencingTimeout(Exception):
    """The entry is staged (durably accepted) but was not sequenced by the deadline."""


class Sequencer:
    """Runs sequencer batches: on demand, and in a background loop woken by new stagings."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        repo: AuditLogRepository,
        *,
        batch_size: int = 1000,
        interval: float = 1.0,
        linger: float = 0.005,
        on_batch: Callable[[SequencedBatch], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._repo = repo
        self.batch_size = batch_size
        self._interval = interval
        self._linger = linger
        self._on_batch = on_batch
        self._lock = threading.Lock()  # one sequencing thread per process at the database lock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one batch -----------------------------------------------------------------------------
    def sequence_once(self) -> SequencedBatch:
        """Sequence one batch (up to ``batch_size`` staged entries); it commits or rolls back."""
        with self._lock:
            return self._sequence_locked()

    def _sequence_locked(self) -> SequencedBatch:
        started = time.perf_counter()
        try:
            with transaction(self._sessions) as session:
                batch = self._repo.sequence_batch(session, self.batch_size)
        except Exception:
            SEQUENCER_FAILURES.inc()
            raise
        if batch.taken:
            SEQUENCER_BATCH_SECONDS.observe(time.perf_counter() - started)
            SEQUENCER_BATCH_SIZE.observe(batch.taken)
        if batch.dropped:
            SEQUENCER_DUPLICATES.inc(batch.dropped)
        if batch.appended:
            for _, kind in batch.appended:
                ENTRIES_APPENDED.labels(kind).inc()
            LOG_SIZE.set(batch.appended[-1][0].index + 1)
        if self._on_batch is not None:
            self._on_batch(batch)
        return batch

    def drain(self, deadline: float | None = None, *, until_stopped: bool = False) -> int:
        """Sequence batches until one is not full (nothing was left), the monotonic
        ``deadline`` passed or, with ``until_stopped`` (the loop), a stop was asked for;
        returns how many staged entries were taken."""
        taken = 0
        while True:
            batch = self.sequence_once()
            taken += batch.taken
            if batch.taken < self.batch_size:
                return taken
            if deadline is not None and time.monotonic() >= deadline:
                return taken
            if until_stopped and self._stop.is_set():
                return taken

    def sequence_until(self, is_staged: Callable[[], bool], deadline: float) -> None:
        """Run batches until ``is_staged()`` is False (this caller's entry left staging).

        Whoever holds the thread lock may already have sequenced it: the check comes first,
        under the lock, so a waiter runs a batch only when its entry still needs one.
        """
        while True:
            with self._lock:
                if not is_staged():
                    return
                if time.monotonic() >= deadline:
                    raise SequencingTimeout("the entry is staged but not sequenced yet")
                self._sequence_locked()

    # -- the background loop -------------------------------------------------------------------
    def wake(self) -> None:
        """Something was staged: run a batch soon (called after the staging commit)."""
        self._wake.set()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="audit-sequencer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        """Finish the batch in hand and stop; staged rows left wait for the next batch on any
        replica or the next start. Returns False if the loop was still busy at ``timeout``."""
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            # Staged rows from a crash, another process or a lost wake-up are picked up on the
            # interval; our own stagings wake the loop at once.
            self._wake.wait(self._interval if not failures else min(0.1 * 2**failures, 5.0))
            if self._stop.is_set():
                return
            self._wake.clear()
            # A short linger lets a burst of stagings share one batch (one lock, one commit).
            self._stop.wait(self._linger)
            try:
                self.drain(until_stopped=True)
                failures = 0
            except Exception:
                failures = min(failures + 1, 6)
                log.exception("audit sequencer batch failed; its staged entries stay staged")
