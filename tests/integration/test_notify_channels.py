"""Notify as a process: each channel sends on its own, so a slow provider holds up only its own
channel (ADR 0037).

The SMS provider stand-in is told to *hold* its answers: it takes each SMS as it arrives, as a
real provider does, and answers none until the test releases it. That is a provider as slow as
the test needs, with no clock in the assertions: everything below waits on conditions.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from harness import Kafka, ServiceProcess, wait_for
from notify_providers import (
    dossier,
    fresh_group,
    notify_env,
    produce,
    produce_all,
    providers,
    rows,
    submitted,
)

pytestmark = pytest.mark.integration

BURST = 30


def _international(phone: str) -> str:
    return "84" + phone[1:]


def test_a_slow_sms_provider_stalls_only_the_sms_and_every_email_of_a_burst_goes_meanwhile(
    kafka: Kafka,
    database: Callable[[str], str],
    service_factory: Callable[..., ServiceProcess],
) -> None:
    with providers() as (smtp, sms_a, _sms_b):
        sms_a.hold()
        url = database("notify")
        env = notify_env(
            smtp,
            sms_a,
            None,
            CONSUMER_GROUP=fresh_group(kafka.bootstrap),
            # Longer than the test waits for the emails: on a sender that waits for every
            # channel's sends before claiming more, no email of the burst could go meanwhile.
            SMS_TIMEOUT_SECONDS="120",
            SEND_LEASE_SECONDS="150",
        )
        notify = service_factory("notify", url, **env).start()
        try:
            # An SMS is in flight: the provider took it and is not answering.
            first = dossier(email_address="", phone="0911000000")
            produce(kafka.bootstrap, submitted(first))
            wait_for(lambda: sms_a.received("/messages"), 60, 0.05, "the first SMS in flight")

            tag = uuid.uuid4().hex[:8]
            burst = [
                dossier(phone=f"09{i:08d}", email_address=f"burst{i}.{tag}@example.vn")
                for i in range(BURST)
            ]
            produce_all(kafka.bootstrap, [submitted(d) for d in burst])
            wait_for(
                lambda: all(smtp.to(d.applicant.email) for d in burst),
                60,
                0.1,
                f"the {BURST} emails of the burst",
            )
            # …and all that while not one SMS has been answered: the SMS are still in flight.
            assert sms_a.answered == 0
            (sms,) = rows(url, first.code)
            assert (sms.state, sms.attempts, sms.provider_ref) == ("sending", 1, "")
            for d in burst:
                email_row = next(r for r in rows(url, d.code) if r.channel == "email")
                assert email_row.state == "delivered"
            # The SMS sender keeps to its bounded workers (8 by default), no more in flight.
            assert len(sms_a.received("/messages")) <= 8
        finally:
            sms_a.release()

        # Once the provider answers, the SMS channel catches up: exactly one of each.
        everyone = [first, *burst]
        wait_for(
            lambda: all(
                next(r for r in rows(url, d.code) if r.channel == "sms").provider_ref
                for d in everyone
            ),
            120,
            0.2,
            "every SMS accepted by the provider",
        )
        for d in everyone:
            assert len(sms_a.messages_to(_international(d.applicant.phone))) == 1
            assert sorted(r.channel for r in rows(url, d.code)) == (
                ["sms"] if d is first else ["email", "sms"]
            )
        for d in burst:
            assert len(smtp.to(d.applicant.email)) == 1
        assert notify.terminate() == 0
