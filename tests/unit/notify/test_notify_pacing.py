"""Retry delays, token buckets and quiet hours, with time given by the test."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from motcua_notify.domain.pacing import QuietHours, TokenBucket
from motcua_notify.domain.retry import RetryPolicy


def test_retry_delays_grow_exponentially_up_to_the_cap() -> None:
    policy = RetryPolicy(max_attempts=10, base_seconds=1, max_delay_seconds=30, jitter=0.0)
    rng = random.Random(0)
    assert [policy.delay(n, rng) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


@given(st.integers(0, 2**32), st.floats(0, 0.5))
def test_with_jitter_up_to_a_half_delays_never_shrink(seed: int, jitter: float) -> None:
    policy = RetryPolicy(max_attempts=20, base_seconds=0.5, max_delay_seconds=100, jitter=jitter)
    rng = random.Random(seed)
    delays = [policy.delay(n, rng) for n in range(1, 9)]  # ceilings 0.5 … 64, below the cap
    assert all(a <= b for a, b in itertools.pairwise(delays))
    assert all(
        policy.ceiling(n) * (1 - jitter) <= d <= policy.ceiling(n) for n, d in enumerate(delays, 1)
    )


def test_jitter_spreads_delays() -> None:
    policy = RetryPolicy(max_attempts=5, base_seconds=10, max_delay_seconds=10, jitter=0.5)
    rng = random.Random(3)
    assert len({round(policy.delay(1, rng), 3) for _ in range(20)}) > 10


def test_policy_bound() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert not policy.exhausted(2)
    assert policy.exhausted(3)
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=2, burst=3, now=100.0)
    assert [bucket.try_take(100.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.try_take(100.4)
    assert bucket.try_take(100.5)  # one token every half second
    assert not bucket.try_take(100.5)
    assert bucket.available(200.0) == 3  # never more than the burst


def test_token_bucket_ignores_a_clock_stepping_back() -> None:
    bucket = TokenBucket(rate=1, burst=1, now=100.0)
    assert bucket.try_take(100.0)
    assert not bucket.try_take(50.0)
    assert bucket.try_take(101.0)


def vn(hour: int, minute: int = 0, day: int = 29) -> datetime:
    return datetime(2026, 11, day, (hour - 7) % 24, minute, tzinfo=UTC).replace(
        day=day if hour >= 7 else day - 1
    )


def test_quiet_hours_across_midnight_hold_until_morning() -> None:
    quiet = QuietHours.parse("21:00-07:00", "Asia/Ho_Chi_Minh")
    assert quiet is not None
    assert quiet.hold_until(vn(20, 59)) is None
    evening = quiet.hold_until(vn(21, 0))
    assert evening is not None and evening.astimezone(quiet.tz).time() == time(7, 0)
    assert evening.astimezone(quiet.tz).day == 30
    night = quiet.hold_until(vn(3, 30, day=30))
    assert night == evening
    assert quiet.hold_until(vn(7, 0, day=30)) is None


def test_quiet_hours_within_a_day() -> None:
    quiet = QuietHours.parse("12:00-13:30", "Asia/Ho_Chi_Minh")
    assert quiet is not None
    until = quiet.hold_until(vn(12, 15))
    assert until is not None and until.astimezone(quiet.tz).time() == time(13, 30)
    assert quiet.hold_until(vn(13, 30)) is None


@pytest.mark.parametrize("spec", ["", "  ", "07:00-07:00"])
def test_no_quiet_hours(spec: str) -> None:
    assert QuietHours.parse(spec, "Asia/Ho_Chi_Minh") is None


@pytest.mark.parametrize("spec", ["21-07", "21:00", "25:00-07:00", "late"])
def test_malformed_quiet_hours_are_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="21:00-07:00"):
        QuietHours.parse(spec, "Asia/Ho_Chi_Minh")


def test_settings_keep_default_rate_limits_for_channels_left_out() -> None:
    from motcua_notify.domain.states import Channel
    from motcua_notify.settings import NotifySettings

    s = NotifySettings(rate_limits={"sms": {"per_second": 1, "burst": 1}})
    assert s.rate_limits[Channel.SMS].per_second == 1
    assert s.rate_limits[Channel.EMAIL].per_second == 20


def test_settings_refuse_a_lease_shorter_than_a_send() -> None:
    from pydantic import ValidationError

    from motcua_notify.settings import NotifySettings

    with pytest.raises(ValidationError, match="send_lease_seconds"):
        NotifySettings(
            sms_provider_a_url="http://a",
            sms_provider_b_url="http://b",
            sms_timeout_seconds=5,
            send_lease_seconds=8,
        )
    assert NotifySettings(
        sms_provider_a_url="http://a", sms_timeout_seconds=5, send_lease_seconds=8
    )
