"""One channel's sender: claims only its own channel's due messages and sends them on its own
bounded pool of workers, so a slow or failing provider holds up its own channel only (ADR 0037).

The sender never claims more than it has idle workers (nor, in the service's claim, more than
its channel's token bucket allows), so every claimed message starts sending at once and its
lease has to outlast one send, not a queue. Each outcome is written as soon as its send returns,
and a freed worker makes the sender claim again, without waiting for the other sends of the
claim. What the claim, the send and the outcome mean is the service's: this module only keeps
the workers busy.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from motcua_notify.domain.notification import Notification, SendResult
from motcua_notify.domain.states import Channel
from motcua_notify.metrics import IN_FLIGHT

log = logging.getLogger(__name__)

Claim = Callable[[Channel, int], list[Notification]]
Send = Callable[[Notification], SendResult]
Settle = Callable[[Notification, SendResult], None]
Release = Callable[[list[Notification]], None]


class ChannelSender:
    """Claims, sends and settles one channel's messages with at most ``workers`` in flight.

    ``claim(channel, most)`` takes up to ``most`` due messages for sending (within the rate
    limit); ``send`` hands one to the provider; ``settle`` records its outcome; ``release``
    hands back messages claimed but not sent because a stop came. ``stopping`` says whether
    the service is stopping. ``poll_seconds`` is how often the sender looks for newly due
    messages while sends are in flight and workers are idle.
    """

    def __init__(
        self,
        channel: Channel,
        workers: int,
        *,
        claim: Claim,
        send: Send,
        settle: Settle,
        release: Release,
        stopping: Callable[[], bool],
        poll_seconds: float,
    ) -> None:
        if workers < 1:
            raise ValueError("a sender needs at least one worker")
        self.channel = channel
        self.workers = workers
        self._claim = claim
        self._send = send
        self._settle = settle
        self._release = release
        self._stopping = stopping
        self._poll = poll_seconds
        self._lock = threading.Lock()  # one run at a time (the timer, or a test's dispatch)
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight = IN_FLIGHT.labels(channel.value)

    def run(self) -> int:
        """Send until nothing more is due (or the service stops) and no send is in flight.

        Returns how many messages were claimed. A stop ends the claiming at once; the sends in
        flight finish and their outcomes are written; claimed messages that no worker started
        go back to the queue.
        """
        with self._lock:
            return self._run()

    def _run(self) -> int:
        pool = self._workers()
        in_flight: dict[Future[SendResult | None], Notification] = {}
        unsent: list[Notification] = []
        claimed = 0
        error: Exception | None = None
        try:
            while True:
                free = self.workers - len(in_flight)
                if free > 0 and error is None and not self._stopping():
                    try:
                        batch = self._claim(self.channel, free)
                    except Exception as exc:  # the database: settle what is in flight first
                        error, batch = exc, []
                    for n in batch:
                        in_flight[pool.submit(self._send_unless_stopping, n)] = n
                    claimed += len(batch)
                    self._in_flight.set(len(in_flight))
                if not in_flight:
                    break  # nothing due (idle, throttled, held), or stopping: done
                done, _ = wait(in_flight, timeout=self._poll, return_when=FIRST_COMPLETED)
                for future in done:
                    n = in_flight.pop(future)
                    self._outcome(n, future, unsent)
                self._in_flight.set(len(in_flight))
        finally:
            self._in_flight.set(len(in_flight))
            if unsent:  # a stop came between the claim and the send: back to the queue now
                self._release(unsent)
        if error is not None:
            raise error
        return claimed

    def _outcome(
        self,
        n: Notification,
        future: Future[SendResult | None],
        unsent: list[Notification],
    ) -> None:
        try:
            result = future.result()
            if result is None:
                unsent.append(n)
            else:
                self._settle(n, result)
        except Exception:
            # Not written: the row stays in sending until its lease ends, then it is resent
            # with the same reference (as after a crash). The other sends go on.
            log.exception("%s: could not record the outcome of %s", self.channel.value, n.id)

    def _send_unless_stopping(self, n: Notification) -> SendResult | None:
        """Send, unless the service began stopping since the claim."""
        if self._stopping():
            return None
        return self._send(n)

    def _workers(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=self.workers, thread_name_prefix=f"notify-send-{self.channel.value}"
            )
        return self._pool

    def close(self) -> None:
        """Stop the workers (after the sends in flight, if any, returned)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
