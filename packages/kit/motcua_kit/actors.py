"""Who did something, on the wire: the one mapping of roles and actors to ``motcua.common.v1``.

Every service spells roles as the JWT ``roles`` claim does (``citizen``, ``officer``, ``admin``,
``service``; :data:`motcua_kit.auth.ROLES`) and keeps its own ``Actor`` value in its domain;
this module is where those strings meet the protobuf ``Role`` enum, both ways.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, TypeAlias

from motcua.common.v1 import common_pb2

ProtoRole: TypeAlias = common_pb2.Role.ValueType

ROLE_TO_PROTO: Mapping[str, ProtoRole] = {
    "citizen": common_pb2.ROLE_CITIZEN,
    "officer": common_pb2.ROLE_OFFICER,
    "admin": common_pb2.ROLE_ADMIN,
    "service": common_pb2.ROLE_SERVICE,
}
ROLE_FROM_PROTO: Mapping[int, str] = {v: k for k, v in ROLE_TO_PROTO.items()}


class ActorLike(Protocol):
    """Any service's ``Actor``: who (token subject), in which role, for which agency."""

    @property
    def subject(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def agency_code(self) -> str: ...


def role_to_proto(role: str) -> ProtoRole:
    """A role name as the enum; a name it does not know is ``ROLE_UNSPECIFIED``."""
    return ROLE_TO_PROTO.get(role, common_pb2.ROLE_UNSPECIFIED)


def role_from_proto(role: int, unknown: str = "") -> str:
    """The enum as a role name; ``unknown`` for ``ROLE_UNSPECIFIED`` and values it does not
    know (a newer contract's), so the caller decides what an unnamed role means."""
    return ROLE_FROM_PROTO.get(role, unknown)


def actor_to_proto(actor: ActorLike) -> common_pb2.Actor:
    return common_pb2.Actor(
        subject=actor.subject, role=role_to_proto(actor.role), agency_code=actor.agency_code
    )
