"""Canonical entry bytes: one exact encoding per entry, documented, and strictly decoded."""

from __future__ import annotations

import hashlib
import struct
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from motcua_audit.domain.entry import (
    EMPTY_PAYLOAD_SHA256,
    ENTRY_FIELDS,
    Actor,
    Entry,
    EntryFormatError,
    EntryKind,
    Role,
    citizen_commitment,
    to_micros,
)

T0 = datetime(2026, 11, 29, 10, 0, 0, 123456, tzinfo=UTC)


def sample(**changes) -> Entry:
    fields = dict(
        kind=EntryKind.EVENT,
        event_id="0b6f7c1e-2f4e-4c36-9d1f-6a1d0c5e7f10",
        event_source="/motcua/dossier",
        event_type="vn.motcua.dossier.submitted.v1",
        event_subject="STP-261129-0001",
        event_time=T0,
        topic="motcua.dossier.v1",
        actor=Actor("citizen-a1", Role.CITIZEN, ""),
        dossier_code="STP-261129-0001",
        payload_sha256=hashlib.sha256(b"payload").digest(),
        recorded_at=T0 + timedelta(seconds=1),
    )
    fields.update(changes)
    return Entry(**fields)


def test_layout_is_magic_version_and_length_prefixed_fields_in_documented_order():
    """An independent re-encoding from the documented layout gives the same bytes."""
    e = sample(purpose="xử lý hồ sơ", resource="applicant.phone", citizen_ref=b"\x07" * 32)

    def field(value: bytes) -> bytes:
        return struct.pack(">I", len(value)) + value

    def micros(moment: datetime) -> bytes:
        delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
        return struct.pack(
            ">q", delta.days * 86_400_000_000 + delta.seconds * 1_000_000 + delta.microseconds
        )

    expected = (
        b"MOTCUA-ENTRY"
        + b"\x01"
        + b"".join(
            field(v)
            for v in (
                b"event",
                e.event_id.encode(),
                b"/motcua/dossier",
                b"vn.motcua.dossier.submitted.v1",
                b"STP-261129-0001",
                micros(T0),
                b"motcua.dossier.v1",
                b"citizen-a1",
                b"citizen",
                b"",
                b"STP-261129-0001",
                hashlib.sha256(b"payload").digest(),
                micros(T0 + timedelta(seconds=1)),
                "xử lý hồ sơ".encode(),
                b"applicant.phone",
                b"\x07" * 32,
            )
        )
    )
    assert e.encode() == expected
    assert len(ENTRY_FIELDS) == 16


KNOWN_ENTRY_HEX = (
    "4d4f544355412d454e54525901000000056576656e740000002430623666376331652d326634652d"
    "346333362d396431662d3661316430633565376631300000000f2f6d6f746375612f646f73736965"
    "720000001e766e2e6d6f746375612e646f73736965722e7375626d69747465642e76310000000f53"
    "54502d3236313132392d3030303100000008000661675b370a40000000116d6f746375612e646f73"
    "736965722e76310000000a636974697a656e2d613100000007636974697a656e000000000000000f"
    "5354502d3236313132392d3030303100000020239f59ed55e737c77147cf55ad0c1b030b6d7ee748"
    "a7426952f9b852d5a935e500000008000661675b464c80000000000000000000000000"
)
KNOWN_LEAF_HASH = "38bf5c32c40bd798aba7bcd089dfbab4dbc361ff65ab1f7e73c25ab23c4bab9d"


def test_known_answer_leaf_hash():
    """A fixed vector so any other implementation can check itself (docs/audit-log.md)."""
    e = sample()
    assert e.encode().hex() == KNOWN_ENTRY_HEX
    assert hashlib.sha256(b"\x00" + e.encode()).hexdigest() == KNOWN_LEAF_HASH
    assert to_micros(datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)) == 1_000_000
    assert to_micros(datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)) == -1_000_000


def test_decode_inverts_encode():
    e = sample(kind=EntryKind.ACCESS, topic="", purpose="kiểm tra", citizen_ref=b"\x01" * 32)
    assert Entry.decode(e.encode()) == e


TEXT = st.text(max_size=40)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(list(EntryKind)),
    TEXT,
    TEXT,
    st.sampled_from(list(Role)),
    st.datetimes(
        min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
    st.binary(min_size=32, max_size=32),
    st.one_of(st.just(b""), st.binary(min_size=32, max_size=32)),
)
def test_round_trip_for_any_fields(kind, text_a, text_b, role, moment, digest, ref):
    e = sample(
        kind=kind,
        event_id=text_a,
        purpose=text_b,
        actor=Actor(text_b, role, text_a),
        event_time=moment,
        payload_sha256=digest,
        citizen_ref=ref,
    )
    assert Entry.decode(e.encode()) == e


def test_distinct_entries_have_distinct_bytes():
    """Length prefixes: moving a character between adjacent fields changes the bytes."""
    a = sample(event_source="/motcua/a", event_type="b.v1")
    b = sample(event_source="/motcua/ab", event_type=".v1")
    assert a.encode() != b.encode()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d[:-1],  # truncated
        lambda d: d + b"\x00",  # trailing byte
        lambda d: b"MOTCUA-ENTRX" + d[12:],  # magic
        lambda d: d[:12] + b"\x02" + d[13:],  # version
        lambda d: d[:13] + struct.pack(">I", 2**31) + d[17:],  # overrunning length
        lambda d: b"",
    ],
)
def test_decode_refuses_anything_but_the_canonical_form(mutate):
    with pytest.raises(EntryFormatError):
        Entry.decode(mutate(sample().encode()))


def test_decode_refuses_unknown_kind_role_and_bad_utf8():
    data = sample().encode()
    with pytest.raises(EntryFormatError):
        Entry.decode(data.replace(b"\x00\x00\x00\x05event", b"\x00\x00\x00\x05evenT", 1))
    with pytest.raises(EntryFormatError):
        Entry.decode(data.replace(b"\x00\x00\x00\x07citizen", b"\x00\x00\x00\x07citizeN", 1))
    bad_utf8 = (
        sample(event_id="x").encode().replace(b"\x00\x00\x00\x01x", b"\x00\x00\x00\x01\xff", 1)
    )
    with pytest.raises(EntryFormatError):
        Entry.decode(bad_utf8)


def test_entry_refuses_naive_times_and_wrong_digest_sizes():
    with pytest.raises(ValueError):
        sample(event_time=datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        sample(payload_sha256=b"short")
    with pytest.raises(ValueError):
        sample(citizen_ref=b"\x01" * 31)


def test_citizen_commitment_hides_the_id_and_binds_it_with_the_salt():
    salt = b"s" * 16
    ref = citizen_commitment("079203004567", salt)
    assert ref == hashlib.sha256(salt + b"079203004567").digest()
    assert ref != citizen_commitment("079203004568", salt)
    assert ref != citizen_commitment("079203004567", b"t" * 16)
    assert b"079203004567" not in sample(citizen_ref=ref).encode()
    with pytest.raises(ValueError):
        citizen_commitment("079203004567", b"short")


def test_access_entries_without_payload_use_the_empty_digest():
    assert hashlib.sha256(b"").digest() == EMPTY_PAYLOAD_SHA256
