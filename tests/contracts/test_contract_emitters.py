"""The catalogue lists every CloudEvents type any service emits: the emitters are scanned in
the services' code, and a deliberately undocumented type makes the check fail."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from motcua_dossier import events as dossier_events
from motcua_kit.registry import load_registry
from motcua_notify import events as notify_events
from motcua_payment import events as payment_events
from tools.eventdocs import __main__ as cli
from tools.eventdocs.conformance import CatalogueContract
from tools.eventdocs.emitters import ServiceCode, scan, scan_all, undocumented, unemitted
from tools.eventdocs.outputs import HTML, MARKDOWN
from tools.eventdocs.render import anchor

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "services"
REGISTRY = load_registry(ROOT / "contracts" / "topics.yaml")
EMISSIONS = scan_all(SERVICES)


def test_the_scan_finds_the_types_each_service_spells_in_its_events_module() -> None:
    emitted = {(e.service, e.type) for e in EMISSIONS}
    dossier = {
        dossier_events.SUBMITTED,
        dossier_events.DUE_SOON,
        dossier_events.OVERDUE,
        dossier_events.STATUS_CHANGED,
        *dossier_events.ACTION_EVENTS.values(),
    }
    assert {("dossier", t) for t in dossier} <= emitted
    assert {("payment", t) for t in payment_events.PAYMENT_EVENT_TYPES.values()} <= emitted
    assert {("payment", t) for t in payment_events.REFUND_EVENT_TYPES.values()} <= emitted
    notify = {notify_events.SENT, notify_events.DELIVERED, notify_events.FAILED}
    assert {("notify", t) for t in notify} <= emitted
    # Types a service only consumes, and a service that publishes nothing, add nothing.
    assert not any(e.service == "audit" for e in EMISSIONS)
    assert all(e.type.startswith(f"vn.motcua.{e.service}.") for e in EMISSIONS)


@pytest.mark.parametrize("emission", EMISSIONS, ids=[e.type for e in EMISSIONS])
def test_every_emitted_type_is_on_the_catalogue_page(emission: object) -> None:
    event_type = emission.type  # type: ignore[attr-defined]
    html = HTML.read_text(encoding="utf-8")
    assert f'id="{anchor(event_type)}"' in html
    assert f"`{event_type}`" in MARKDOWN.read_text(encoding="utf-8")
    assert event_type in CatalogueContract.load().document["components"]["messages"]


def test_every_emitted_type_is_documented_and_every_documented_type_emitted() -> None:
    assert undocumented(EMISSIONS, REGISTRY) == []
    assert unemitted(EMISSIONS, REGISTRY) == []


def test_an_undocumented_type_in_a_services_events_module_fails_the_check(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        dossier_events, "TELEPORTED", "vn.motcua.dossier.teleported.v1", raising=False
    )
    problems = undocumented(scan_all(SERVICES), REGISTRY)
    assert problems == [
        "dossier emits vn.motcua.dossier.teleported.v1 (motcua_dossier.events.TELEPORTED) on "
        "motcua.dossier.v1, but the registry (contracts/topics.yaml) does not document it"
    ]
    assert cli.main(["check"]) == 1
    assert "vn.motcua.dossier.teleported.v1" in capsys.readouterr().err


def test_a_documented_type_nobody_emits_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(dossier_events.ACTION_EVENTS, "supplement")
    assert unemitted(scan_all(SERVICES), REGISTRY) == [
        "vn.motcua.dossier.supplemented.v1 is documented on motcua.dossier.v1 but dossier never "
        "emits it: remove it from contracts/topics.yaml or mark it deprecated"
    ]


FIXTURE_SERVICE = """
from typing import ClassVar

from motcua_kit.envelope import Event
from motcua_kit.service import Service


class FixtureService(Service):
    name = "fixture"
    publishes: ClassVar[tuple[str, ...]] = ("motcua.fixture.v1",)

    def emit(self, message):
        return Event.new(
            source="/motcua/fixture", type="vn.motcua.fixture.teleported.v1",
            subject="A-260302-0001", message=message,
        )
"""


def test_a_type_spelled_at_an_event_new_call_site_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "fixture" / "motcua_fixture"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "service.py").write_text(FIXTURE_SERVICE)
    monkeypatch.syspath_prepend(str(tmp_path / "fixture"))
    try:
        found = scan(ServiceCode("fixture", "motcua_fixture", package))
        assert [(e.topic, e.type) for e in found] == [
            ("motcua.fixture.v1", "vn.motcua.fixture.teleported.v1")
        ]
        assert found[0].where.endswith("motcua_fixture/service.py:14")
        assert undocumented(found, REGISTRY) == [
            "fixture publishes topic motcua.fixture.v1, which the registry "
            "(contracts/topics.yaml) does not list"
        ]
    finally:
        for name in [m for m in sys.modules if m.startswith("motcua_fixture")]:
            del sys.modules[name]
