"""Webhook subscriptions: which systems are told of which agency's events, and how to sign.

Subscriptions are data (a YAML file named by ``MOTCUA_NOTIFY_WEBHOOK_SUBSCRIPTIONS_FILE``),
validated on load. Secrets may be written in the file for local runs, or — in production —
named by ``secret_env`` and read from the environment (a Kubernetes Secret).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from motcua_notify.domain.signing import sign, verify

__all__ = ["SIGNATURE_HEADER", "WebhookSubscription", "load_subscriptions", "sign", "verify"]

SIGNATURE_HEADER = "Motcua-Signature"
_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
MIN_SECRET = 16


class SubscriptionError(ValueError):
    """The subscriptions file is invalid; the message names the subscription."""


@dataclass(frozen=True)
class WebhookSubscription:
    """One subscribing system for one agency (``*``: every agency)."""

    id: str
    agency_code: str
    url: str
    secret: str = field(repr=False)
    event_types: frozenset[str] | None = None  # None: every event notify consumes

    def matches(self, agency_code: str, event_type: str) -> bool:
        if self.agency_code not in ("*", agency_code):
            return False
        return self.event_types is None or event_type in self.event_types


def load_subscriptions(
    path: Path | None,
    environ: Mapping[str, str] | None = None,
    known_types: Iterable[str] | None = None,
) -> list[WebhookSubscription]:
    """Read the subscriptions file; no file means no subscriptions.

    With ``known_types``, a subscription to an event type notify does not consume is refused
    (it would silently never fire).
    """
    if path is None:
        return []
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SubscriptionError(f"{path}: cannot read webhook subscriptions: {exc}") from exc
    subs = parse_subscriptions(doc.get("subscriptions") or [], environ or os.environ)
    if known_types is not None:
        known = set(known_types)
        for sub in subs:
            unknown = sorted((sub.event_types or frozenset()) - known)
            if unknown:
                raise SubscriptionError(
                    f"subscription {sub.id!r}: notify does not consume {', '.join(unknown)}"
                )
    return subs


def parse_subscriptions(
    raw: Iterable[Any], environ: Mapping[str, str]
) -> list[WebhookSubscription]:
    out: list[WebhookSubscription] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise SubscriptionError(f"subscription #{i + 1}: must be a mapping")
        sid = str(item.get("id", ""))
        if not _ID.fullmatch(sid):
            raise SubscriptionError(f"subscription #{i + 1}: id must be lower-case a-z0-9-")
        if sid in seen:
            raise SubscriptionError(f"subscription {sid!r}: id is used twice")
        seen.add(sid)
        url = str(item.get("url", ""))
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SubscriptionError(f"subscription {sid!r}: url must be http(s)://host/…")
        secret = item.get("secret")
        if secret is None and item.get("secret_env"):
            secret = environ.get(str(item["secret_env"]))
            if secret is None:
                raise SubscriptionError(
                    f"subscription {sid!r}: environment variable {item['secret_env']} is not set"
                )
        if not isinstance(secret, str) or len(secret) < MIN_SECRET:
            raise SubscriptionError(
                f"subscription {sid!r}: a secret of at least {MIN_SECRET} characters is required"
            )
        agency = str(item.get("agency", "")).strip()
        if not agency:
            raise SubscriptionError(f"subscription {sid!r}: agency is required ('*' for all)")
        events = item.get("events")
        if events is not None and (
            not isinstance(events, list) or not all(isinstance(e, str) for e in events)
        ):
            raise SubscriptionError(f"subscription {sid!r}: events must list CloudEvents types")
        out.append(
            WebhookSubscription(
                id=sid,
                agency_code=agency,
                url=url,
                secret=secret,
                event_types=frozenset(events) if events is not None else None,
            )
        )
    return out
