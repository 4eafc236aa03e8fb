"""Kinds of refusal, shared by every domain and mapped to gRPC status codes in one place.

The domain raises these (it imports nothing of gRPC); ``motcua_kit.grpc_server`` maps each kind
to its status code, so a refusal reads the same over every API.
"""

from __future__ import annotations


class Refusal(Exception):
    """Base of every deliberate refusal: the caller did something the rules do not allow."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(Refusal):
    """A field of the request is missing or malformed; ``field`` names it (dotted path)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


class NotFound(Refusal):
    """The thing asked for does not exist (or the caller may not know that it does)."""


class AlreadyExists(Refusal):
    """A create collided with an earlier one that differs (e.g. an idempotency key reused)."""


class FailedPrecondition(Refusal):
    """The request is well formed but the current state does not allow it."""


class Aborted(Refusal):
    """A concurrent change won (optimistic version check); the caller may re-read and retry."""


class PermissionDenied(Refusal):
    """The caller is known but may not do this."""


class Unauthenticated(Refusal):
    """The caller did not prove who they are."""
