"""JSON logs carrying the trace id, with citizen IDs, phone numbers and emails masked.

Masking happens in the formatter, so no call site can forget it: whatever a message or an
extra field contains, a 12-digit citizen ID, a Vietnamese phone number or an email address is
rewritten before the line leaves the process.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
# ``\d`` on purpose, unlike validation (ADR 0009): masking errs wide, and also hides a
# fullwidth ID quoted in a refusal.
_CITIZEN_ID = re.compile(r"(?<!\d)\d{9}(\d{3})(?!\d)")
_PHONE = re.compile(r"(?<![\d+])(?:\+?84|0)(?:[\s.-]?\d){6}((?:[\s.-]?\d){3})(?!\d)")

_RESERVED = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


def mask_pii(text: str) -> str:
    """Mask personal data in free text: keep only what an operator needs to tell rows apart."""
    text = _EMAIL.sub(r"\1***@\2", text)
    text = _CITIZEN_ID.sub(r"*********\1", text)
    return _PHONE.sub(lambda m: "*******" + re.sub(r"\D", "", m.group(1)), text)


def _mask_value(value: Any) -> Any:
    if isinstance(value, str):
        return mask_pii(value)
    if isinstance(value, dict):
        return {k: _mask_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_value(v) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, trace/span ids, extras."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": mask_pii(record.getMessage()),
        }
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            doc["trace_id"] = format(ctx.trace_id, "032x")
            doc["span_id"] = format(ctx.span_id, "016x")
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                doc[key] = _mask_value(value)
        if record.exc_info:
            doc["exception"] = mask_pii(self.formatException(record.exc_info))
        return json.dumps(doc, ensure_ascii=False, default=str)


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every log record of the process to stderr as masked JSON."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("kafka", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
