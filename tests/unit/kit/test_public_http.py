"""The public HTTP server's per-source token bucket and its guard (motcua_kit.public_http),
without a socket: a fake clock, and ASGI calls made by hand."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from motcua_kit.public_http import Guard, PublicHttpOptions, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the rate limiter ---------------------------------------------------------------------------
def test_a_burst_is_let_in_then_refused_with_the_wait() -> None:
    clock = Clock()
    limiter = RateLimiter(2.0, 3, clock=clock)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(0.5)  # one token comes in 1 / 2 s
    clock.now += 0.5
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") == pytest.approx(0.5)


def test_the_bucket_refills_at_the_rate_up_to_the_burst_only() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 2, clock=clock)
    limiter.acquire("a")
    limiter.acquire("a")
    clock.now += 3600  # an hour idle: still only the burst
    assert [limiter.acquire("a") for _ in range(2)] == [0.0, 0.0]
    assert limiter.acquire("a") > 0


def test_a_refused_request_takes_no_token() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 1, clock=clock)
    assert limiter.acquire("a") == 0.0
    for _ in range(10):
        assert limiter.acquire("a") > 0  # hammering does not push the wait further out
    clock.now += 1.0
    assert limiter.acquire("a") == 0.0


def test_each_source_has_its_own_bucket() -> None:
    limiter = RateLimiter(1.0, 1, clock=Clock())
    assert limiter.acquire("10.0.0.1") == 0.0
    assert limiter.acquire("10.0.0.1") > 0
    assert limiter.acquire("10.0.0.2") == 0.0


def test_the_least_recently_seen_source_is_forgotten() -> None:
    limiter = RateLimiter(1.0, 1, max_sources=2, clock=Clock())
    limiter.acquire("a")
    limiter.acquire("b")
    limiter.acquire("a")  # a seen again: b is now the oldest
    limiter.acquire("c")
    assert len(limiter) == 2
    assert limiter.acquire("a") > 0  # remembered, still empty
    assert limiter.acquire("b") == 0.0  # forgotten: a full bucket again


@pytest.mark.parametrize("args", [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_a_limit_that_lets_nothing_in_is_refused(args: tuple[float, int]) -> None:
    with pytest.raises(ValueError):
        RateLimiter(*args)


# -- the guard ----------------------------------------------------------------------------------
def _scope(path: str = "/cb", headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers or [],
        "client": ("192.0.2.7", 5555),
    }


def _call(
    guard: Guard, scope: dict[str, Any], chunks: list[bytes]
) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Run ``guard`` on one request; (messages sent, bodies the app received)."""
    sent: list[dict[str, Any]] = []
    pending = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def run() -> None:
        await guard(scope, receive, send)

    asyncio.run(run())
    return sent, received


received: list[bytes] = []


async def _app(scope: Any, receive: Any, send: Any) -> None:
    message = await receive()
    received.append(message["body"])
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(autouse=True)
def _fresh() -> None:
    received.clear()


def _status(sent: list[dict[str, Any]]) -> int:
    return int(sent[0]["status"])


def _headers(sent: list[dict[str, Any]]) -> dict[bytes, bytes]:
    return dict(sent[0]["headers"])


def test_the_app_gets_the_whole_body_in_one_message() -> None:
    guard = Guard(_app, PublicHttpOptions(max_body_bytes=10))
    sent, bodies = _call(guard, _scope(), [b"abc", b"def", b""])
    assert _status(sent) == 200 and bodies == [b"abcdef"]


def test_an_announced_body_over_the_limit_is_413_unread() -> None:
    guard = Guard(_app, PublicHttpOptions(max_body_bytes=10))
    sent, bodies = _call(guard, _scope(headers=[(b"content-length", b"11")]), [b"x" * 11])
    assert _status(sent) == 413 and bodies == []
    assert _headers(sent)[b"connection"] == b"close"


def test_a_streamed_body_over_the_limit_is_413() -> None:
    guard = Guard(_app, PublicHttpOptions(max_body_bytes=10))
    sent, bodies = _call(guard, _scope(), [b"x" * 6, b"x" * 6])
    assert _status(sent) == 413 and bodies == []


def test_headers_over_the_limit_are_431() -> None:
    guard = Guard(_app, PublicHttpOptions(max_header_bytes=1024))
    sent, _ = _call(guard, _scope(headers=[(b"x-pad", b"p" * 1100)]), [b""])
    assert _status(sent) == 431


def test_the_rate_limit_applies_to_the_paths_named_only() -> None:
    options = PublicHttpOptions(rate_per_second=0.01, rate_burst=1)
    guard = Guard(_app, options, rate_limited=lambda path: path.startswith("/cb"))
    assert _status(_call(guard, _scope("/cb"), [b""])[0]) == 200
    sent, _ = _call(guard, _scope("/cb"), [b""])
    assert _status(sent) == 429
    assert int(_headers(sent)[b"retry-after"]) >= 1
    assert _status(_call(guard, _scope("/healthz"), [b""])[0]) == 200
    assert _status(_call(guard, _scope("/healthz"), [b""])[0]) == 200


def test_a_rate_of_zero_turns_the_limit_off() -> None:
    guard = Guard(_app, PublicHttpOptions(rate_per_second=0, rate_burst=1), rate_limited=bool)
    assert guard.limiter is None
    assert all(_status(_call(guard, _scope(), [b""])[0]) == 200 for _ in range(5))


def test_refusals_take_the_services_form() -> None:
    def as_json(status: int, message: str) -> tuple[str, bytes]:
        return "application/json", f'{{"error": "{message}"}}'.encode()

    guard = Guard(_app, PublicHttpOptions(max_body_bytes=1), refusal=as_json)
    sent, _ = _call(guard, _scope(headers=[(b"content-length", b"2")]), [b"xx"])
    assert _headers(sent)[b"content-type"] == b"application/json"
    assert sent[1]["body"] == b'{"error": "request body too large"}'
