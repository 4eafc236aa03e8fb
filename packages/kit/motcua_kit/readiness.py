"""What keeps a running service from being ready, as its workers report it.

A worker (a consumer runner, the outbox relay) that cannot do its job until an operator acts
— Kafka refused its credentials, or its principal lacks an ACL — *blocks* the readiness of
its service, with the reason; once the job works again it clears the block. The gRPC health
service reports NOT_SERVING and ``/readyz`` answers 503 while any block stands, so the pod is
taken out of rotation without being restarted: restarting would not grant the ACL (ADR 0084).

A broker that is merely down is no block: the workers retry, and the service stays ready
(ADR 0010).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

Listener = Callable[[dict[str, str]], None]


class Readiness:
    """Blocks per service name and component; listeners hear each change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blocks: dict[str, dict[str, str]] = {}
        self._listeners: dict[str, list[Listener]] = {}

    def block(self, service: str, component: str, reason: str) -> None:
        with self._lock:
            blocks = self._blocks.setdefault(service, {})
            if blocks.get(component) == reason:
                return
            blocks[component] = reason
            snapshot, listeners = dict(blocks), list(self._listeners.get(service, ()))
        self._notify(listeners, snapshot)

    def clear(self, service: str, component: str) -> None:
        with self._lock:
            blocks = self._blocks.get(service, {})
            if component not in blocks:
                return
            del blocks[component]
            snapshot, listeners = dict(blocks), list(self._listeners.get(service, ()))
        self._notify(listeners, snapshot)

    def reasons(self, service: str | None = None) -> dict[str, str]:
        """Component → reason for one service, or for every service (``service: component``)."""
        with self._lock:
            if service is not None:
                return dict(self._blocks.get(service, {}))
            return {
                f"{name}: {component}": reason
                for name, blocks in self._blocks.items()
                for component, reason in blocks.items()
            }

    def watch(self, service: str, listener: Listener) -> Callable[[], None]:
        """Call ``listener(blocks)`` now and on every change; returns the unsubscribe."""
        with self._lock:
            self._listeners.setdefault(service, []).append(listener)
            snapshot = dict(self._blocks.get(service, {}))
        self._notify([listener], snapshot)

        def unwatch() -> None:
            with self._lock:
                listeners = self._listeners.get(service, [])
                if listener in listeners:
                    listeners.remove(listener)

        return unwatch

    @staticmethod
    def _notify(listeners: list[Listener], snapshot: dict[str, str]) -> None:
        for listener in listeners:
            try:
                listener(snapshot)
            except Exception:
                log.exception("readiness listener failed")


READINESS = Readiness()
