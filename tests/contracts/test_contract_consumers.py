"""Consumer side: every system takes every documented type (and version) the registry says it
consumes — a handler expecting the documented message, into which the catalogue's example
record goes through the kit's real consumer runner."""

from __future__ import annotations

import copy
import importlib
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from motcua.dossier.v1 import events_pb2 as dossier_events
from motcua_audit import events as audit_events
from motcua_kit.consumer import Handler, PermanentError
from motcua_kit.registry import TopicRegistry, load_registry, parse_registry, read_registry_data
from motcua_kit.service import Service
from motcua_subscriber.testing import FakeBroker, HandlerSet
from stats_projector.projection import build_subscriber
from tools.eventdocs.conformance import CatalogueContract, consumer_problems, service_handlers

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = load_registry(ROOT / "contracts" / "topics.yaml")
CONTRACT = CatalogueContract.load()
SERVICES = [name for name, s in REGISTRY.systems.items() if s.kind == "service"]


def _service_class(name: str) -> type[Service]:
    module = importlib.import_module(f"motcua_{name}.service")
    (cls,) = [
        c
        for _, c in inspect.getmembers(module, inspect.isclass)
        if issubclass(c, Service) and c is not Service and c.__module__ == module.__name__
    ]
    return cls


def _deliver(
    handlers: Sequence[Handler], topic: str, key: bytes, value: bytes, headers: list
) -> str:
    with FakeBroker(HandlerSet("contract", list(handlers))) as broker:
        return broker.deliver_record(topic, key, value, headers)


def _problems(registry: TopicRegistry, system: str, handlers: Sequence[Handler]) -> list[str]:
    return consumer_problems(registry, system, handlers, CONTRACT, _deliver)


def _projector_problems(registry: TopicRegistry) -> list[str]:
    """The example subscriber's real handlers, on its own tables, through the test double."""

    def deliver(
        handlers: Sequence[Handler], topic: str, key: bytes, value: bytes, headers: list
    ) -> str:
        with FakeBroker(build_subscriber()) as broker:
            return broker.deliver_record(topic, key, value, headers)

    handlers = build_subscriber().handlers
    return consumer_problems(registry, "stats-projector", handlers, CONTRACT, deliver)


@pytest.mark.parametrize("system", SERVICES)
def test_each_service_accepts_every_type_it_is_documented_to_consume(system: str) -> None:
    handlers = service_handlers(_service_class(system))
    assert _problems(REGISTRY, system, handlers) == []


def test_the_example_subscriber_accepts_every_type_it_is_documented_to_consume() -> None:
    subscriber = build_subscriber()
    assert REGISTRY.consumed_by("stats-projector") == {"motcua.dossier.v1": ("*",)}
    # It claims every type of the topic, with one typed handler per type.
    assert set(subscriber.event_types) == set(REGISTRY.topic("motcua.dossier.v1").types)
    assert _projector_problems(REGISTRY) == []


def test_a_newly_documented_type_the_example_subscriber_does_not_take_fails() -> None:
    def add_type(data: dict) -> None:
        data["topics"][0]["events"].append(
            {
                "type": "vn.motcua.dossier.archived.v1",
                "message": "motcua.dossier.v1.DossierStatusChanged",
                "summary": "The dossier was archived.",
            }
        )

    assert _projector_problems(_registry_with(add_type)) == [
        "stats-projector is documented to consume vn.motcua.dossier.archived.v1 but has no "
        "handler for it"
    ]


def test_audit_parses_known_dossier_types_as_the_catalogue_documents() -> None:
    """Audit's catch-all parses known dossier types itself; its table must be the catalogue's."""
    documented = {e.type: e.message for e in REGISTRY.topic("motcua.dossier.v1").events}
    parsed = {t: cls.DESCRIPTOR.full_name for t, cls in audit_events.DOSSIER_PAYLOADS.items()}
    assert parsed == {t: m for t, m in documented.items() if t in parsed}
    missing = set(documented) - set(parsed) - {"vn.motcua.dossier.status_changed.v1"}
    assert missing == set(), f"audit records these without checking their payload: {missing}"


# -- deliberately broken fixtures ---------------------------------------------------------------
def _registry_with(change: Callable[[dict], None]) -> TopicRegistry:
    data = copy.deepcopy(read_registry_data(ROOT / "contracts" / "topics.yaml"))
    change(data)
    return parse_registry(data, "fixture")


def _dossier_event(data: dict, event_type: str) -> dict:
    return next(e for e in data["topics"][0]["events"] if e["type"] == event_type)


def test_a_claim_the_consumer_has_no_handler_for_fails() -> None:
    registry = _registry_with(
        lambda d: _dossier_event(d, "vn.motcua.dossier.paid.v1").__setitem__(
            "consumers", ["notify"]
        )
    )
    handlers = service_handlers(_service_class("notify"))
    assert _problems(registry, "notify", handlers) == [
        "notify is documented to consume vn.motcua.dossier.paid.v1 but has no handler for it"
    ]


def test_a_new_version_the_consumer_does_not_take_yet_fails() -> None:
    def add_v2(data: dict) -> None:
        v1 = _dossier_event(data, "vn.motcua.dossier.payment_requested.v1")
        v2 = {**copy.deepcopy(v1), "type": "vn.motcua.dossier.payment_requested.v2"}
        data["topics"][0]["events"].append(v2)

    registry = _registry_with(add_v2)
    problems = _problems(registry, "payment", service_handlers(_service_class("payment")))
    assert problems == [
        "payment is documented to consume vn.motcua.dossier.payment_requested.v2 but has no "
        "handler for it"
    ]


def _payment_handlers_with(broken: Handler) -> list[Handler]:
    """The payment service's real handlers, with the one for ``broken``'s type replaced."""
    real = service_handlers(_service_class("payment"))
    return [h for h in real if h.event_type != broken.event_type] + [broken]


def test_a_handler_expecting_another_message_fails() -> None:
    wrong = Handler(
        "motcua.dossier.v1",
        "vn.motcua.dossier.payment_requested.v1",
        lambda e, m, s: None,
        dossier_events.DossierSubmitted,
    )
    assert _problems(REGISTRY, "payment", _payment_handlers_with(wrong)) == [
        "payment parses vn.motcua.dossier.payment_requested.v1 as "
        "motcua.dossier.v1.DossierSubmitted; the catalogue documents "
        "motcua.dossier.v1.DossierStatusChanged"
    ]


def test_a_handler_that_refuses_the_documented_example_fails() -> None:
    def refuse(event: object, message: object, session: object) -> None:
        raise PermanentError("no")

    refusing = Handler(
        "motcua.dossier.v1",
        "vn.motcua.dossier.payment_requested.v1",
        refuse,
        dossier_events.DossierStatusChanged,
    )
    assert _problems(REGISTRY, "payment", _payment_handlers_with(refusing)) == [
        "payment did not accept the catalogue's example of "
        "vn.motcua.dossier.payment_requested.v1: dead_lettered"
    ]
