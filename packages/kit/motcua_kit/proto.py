"""Small conversions between motcua's Python values and protobuf well-known types."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp


def timestamp(value: datetime) -> Timestamp:
    """A ``google.protobuf.Timestamp`` of an aware datetime (the protos carry UTC instants)."""
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts
