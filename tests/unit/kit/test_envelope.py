"""CloudEvents binary-mode envelope: what subscribers rely on, header by header."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from motcua.dossier.v1 import dossier_pb2, events_pb2
from motcua_kit.envelope import EnvelopeError, Event, decode, encode

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _event(**kw: object) -> Event:
    msg = events_pb2.DossierSubmitted(dossier=dossier_pb2.Dossier(code="STP-261129-0001"))
    args: dict = dict(
        source="/motcua/dossier",
        type="vn.motcua.dossier.submitted.v1",
        subject="STP-261129-0001",
        message=msg,
        trace_headers={"traceparent": TRACEPARENT},
        time=datetime(2026, 11, 29, 3, 4, 5, 123456, tzinfo=UTC),
    )
    args.update(kw)
    return Event.new(**args)


def test_encode_uses_binary_mode_headers_and_dossier_code_as_key() -> None:
    event = _event()
    record = encode(event)
    headers = dict(record.headers)
    assert record.key == b"STP-261129-0001"
    assert headers["ce_id"] == event.id.encode()
    assert headers["ce_source"] == b"/motcua/dossier"
    assert headers["ce_type"] == b"vn.motcua.dossier.submitted.v1"
    assert headers["ce_subject"] == b"STP-261129-0001"
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_time"] == b"2026-11-29T03:04:05.123456Z"
    assert headers["content-type"] == b"application/protobuf"
    assert headers["traceparent"] == TRACEPARENT.encode()
    assert events_pb2.DossierSubmitted.FromString(record.value).dossier.code == "STP-261129-0001"


def test_decode_roundtrip() -> None:
    event = _event()
    record = encode(event)
    assert decode(record.key, record.value, record.headers) == event


@pytest.mark.parametrize(
    "drop", ["ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time", "ce_subject"]
)
def test_decode_refuses_records_missing_required_attributes(drop: str) -> None:
    record = encode(_event())
    headers = [(k, v) for k, v in record.headers if k != drop]
    with pytest.raises(EnvelopeError):
        decode(record.key, record.value, headers)


def test_decode_refuses_other_content_types() -> None:
    record = encode(_event())
    headers = [(k, b"application/json" if k == "content-type" else v) for k, v in record.headers]
    with pytest.raises(EnvelopeError, match="content-type"):
        decode(record.key, record.value, headers)


def test_unparseable_payload_is_an_envelope_error() -> None:
    event = Event(**{**_event().__dict__, "data": b"\xff\xff\xff"})
    with pytest.raises(EnvelopeError, match="DossierSubmitted"):
        event.parse(events_pb2.DossierSubmitted)


@given(
    headers=st.lists(st.tuples(st.text(max_size=20), st.binary(max_size=40)), max_size=8),
    value=st.binary(max_size=64),
    key=st.one_of(st.none(), st.binary(max_size=20)),
)
def test_decode_never_crashes_on_arbitrary_records(
    headers: list[tuple[str, bytes]], value: bytes, key: bytes | None
) -> None:
    with contextlib.suppress(EnvelopeError):
        decode(key, value, headers)
