"""A channel's sender (ADR 0037) with its claim, send and outcome given by the test: bounded
workers, claims only for idle workers, channels independent of each other, and a stop that
hands back what no worker started. Sends wait on events the test sets, never on a clock."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from harness import wait_for
from motcua_notify.domain.notification import Notification, SendResult, Verdict
from motcua_notify.domain.states import Channel, State
from motcua_notify.sender import ChannelSender
from motcua_notify.settings import NotifySettings

NOW = datetime(2026, 11, 30, 5, 0, tzinfo=UTC)
_BASE = Notification(
    id="n0",
    event_id="e0",
    event_type="t",
    dossier_code="D",
    agency_code="A",
    citizen_id="079203004567",
    template="receipt",
    channel=Channel.SMS,
    recipient="0905123456",
    subject="",
    body="x",
    payload={},
    sms_segments=1,
    state=State.SENDING,
    attempts=1,
    reference="n0.1",
    provider="",
    provider_ref="",
    created_at=NOW,
    updated_at=NOW,
    next_attempt_at=None,
)


class FakeChannel:
    """A queue of due messages and a provider the test controls.

    ``gate`` open: sends return at once; closed: they wait until the test opens it.
    """

    def __init__(self, channel: Channel, due: int, *, workers: int = 3) -> None:
        self.channel = channel
        self.due = [replace(_BASE, id=f"{channel.value}-{i}", channel=channel) for i in range(due)]
        self.asked: list[tuple[int, int]] = []  # (most asked for, sends in flight then)
        self.settled: list[str] = []
        self.released: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.gate = threading.Event()
        self.gate.set()
        self.stop = threading.Event()
        self.stop_at_claim = False
        self.fail_claim_after = -1  # this many claims succeed, then the database "goes away"
        self.fail_settle: set[str] = set()
        self._lock = threading.Lock()
        self.sender = ChannelSender(
            channel,
            workers,
            claim=self.claim,
            send=self.send,
            settle=self.settle,
            release=self.release,
            stopping=self.stop.is_set,
            poll_seconds=0.01,
        )

    def claim(self, channel: Channel, most: int) -> list[Notification]:
        assert channel is self.channel
        with self._lock:
            if len(self.asked) == self.fail_claim_after:
                raise RuntimeError("database gone")
            self.asked.append((most, self.in_flight))
            taken, self.due = self.due[:most], self.due[most:]
        if self.stop_at_claim and taken:
            self.stop.set()  # the stop comes between the claim and the sends
        return taken

    def send(self, n: Notification) -> SendResult:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.gate.wait(30)
        with self._lock:
            self.in_flight -= 1
        return SendResult(Verdict.DELIVERED, provider="fake")

    def settle(self, n: Notification, result: SendResult) -> None:
        if n.id in self.fail_settle:
            raise RuntimeError("could not write")
        with self._lock:
            self.settled.append(n.id)

    def release(self, unsent: list[Notification]) -> None:
        self.released += [n.id for n in unsent]

    def run_in_thread(self) -> tuple[threading.Thread, list[object]]:
        out: list[object] = []

        def target() -> None:
            try:
                out.append(self.sender.run())
            except Exception as exc:
                out.append(exc)

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        return thread, out


@pytest.fixture
def channels() -> list[FakeChannel]:
    made: list[FakeChannel] = []
    yield made
    for fake in made:
        fake.gate.set()
        fake.sender.close()


def test_no_more_than_its_workers_are_in_flight_and_it_claims_only_for_idle_ones(
    channels: list[FakeChannel],
) -> None:
    sms = FakeChannel(Channel.SMS, 10, workers=3)
    channels.append(sms)
    sms.gate.clear()
    thread, out = sms.run_in_thread()
    wait_for(lambda: sms.in_flight == 3, 10, 0.005, "three sends in flight")
    assert sms.asked[0] == (3, 0)
    assert len(sms.due) == 7  # the rest stays in the queue: no lease runs on it
    sms.gate.set()
    thread.join(10)
    assert out == [10]
    assert sorted(sms.settled) == sorted(f"sms-{i}" for i in range(10))
    assert sms.most_in_flight <= 3
    assert all(most <= 3 - busy for most, busy in sms.asked)
    assert sms.released == []


def test_a_slow_channel_does_not_hold_up_another(channels: list[FakeChannel]) -> None:
    sms, email = FakeChannel(Channel.SMS, 5), FakeChannel(Channel.EMAIL, 20)
    channels += [sms, email]
    sms.gate.clear()  # the SMS provider answers nothing
    sms_thread, _ = sms.run_in_thread()
    wait_for(lambda: sms.in_flight == 3, 10, 0.005, "the SMS in flight")
    email_thread, email_out = email.run_in_thread()
    email_thread.join(10)
    assert email_out == [20] and len(email.settled) == 20
    assert sms.settled == [] and sms.in_flight == 3  # still waiting on its provider
    sms.gate.set()
    sms_thread.join(10)
    assert len(sms.settled) == 5


def test_a_stop_claims_nothing_more_and_lets_the_sends_in_flight_finish(
    channels: list[FakeChannel],
) -> None:
    sms = FakeChannel(Channel.SMS, 10, workers=2)
    channels.append(sms)
    sms.gate.clear()
    thread, out = sms.run_in_thread()
    wait_for(lambda: sms.in_flight == 2, 10, 0.005, "two sends in flight")
    sms.stop.set()
    sms.gate.set()
    thread.join(10)
    assert out == [2]
    assert sorted(sms.settled) == ["sms-0", "sms-1"]
    assert len(sms.asked) == 1 and len(sms.due) == 8
    assert sms.released == []


def test_what_was_claimed_but_not_started_when_the_stop_came_goes_back(
    channels: list[FakeChannel],
) -> None:
    sms = FakeChannel(Channel.SMS, 10, workers=2)
    channels.append(sms)
    sms.stop_at_claim = True
    assert sms.sender.run() == 2
    assert sorted(sms.released) == ["sms-0", "sms-1"]
    assert sms.settled == [] and sms.most_in_flight == 0


def test_an_outcome_that_cannot_be_written_does_not_stop_the_others(
    channels: list[FakeChannel],
) -> None:
    email = FakeChannel(Channel.EMAIL, 6)
    channels.append(email)
    email.fail_settle = {"email-2"}
    assert email.sender.run() == 6
    assert sorted(email.settled) == [f"email-{i}" for i in (0, 1, 3, 4, 5)]


def test_a_failing_claim_lets_the_sends_in_flight_finish_then_raises(
    channels: list[FakeChannel],
) -> None:
    sms = FakeChannel(Channel.SMS, 2, workers=4)
    channels.append(sms)
    sms.fail_claim_after = 1
    sms.gate.clear()
    thread, out = sms.run_in_thread()
    wait_for(lambda: sms.in_flight == 2, 10, 0.005, "two sends in flight")
    sms.gate.set()
    thread.join(10)
    (error,) = out
    assert isinstance(error, RuntimeError) and "database gone" in str(error)
    assert sorted(sms.settled) == ["sms-0", "sms-1"]


def test_workers_are_set_once_for_every_channel_or_per_channel() -> None:
    s = NotifySettings(sender_concurrency=4, sender_concurrency_by_channel={"sms": 16})
    assert s.sender_workers(Channel.SMS) == 16
    assert s.sender_workers(Channel.EMAIL) == 4
    with pytest.raises(ValidationError, match="at least one sender worker"):
        NotifySettings(sender_concurrency_by_channel={"sms": 0})
