"""The catalogue lists every CloudEvents type any service emits: the emitters are read off the
services' events modules, a deliberately undocumented type makes the check fail, and no service
spells a topic or type name past the generated constants (ADR 0078)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from motcua_dossier import events as dossier_events
from motcua_kit.registry import load_registry
from motcua_notify import events as notify_events
from motcua_payment.domain.states import TRANSITIONS as PAYMENT_TRANSITIONS
from tools.eventdocs import __main__ as cli
from tools.eventdocs.conformance import CatalogueContract
from tools.eventdocs.emitters import scan_all, undocumented, unemitted
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
    payment = {r.event for r in PAYMENT_TRANSITIONS.rows if r.event}
    assert {("payment", t) for t in payment} <= emitted
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


# A topic (motcua.<system>.v<N>, and its .dlq), a CloudEvents type or a ce_source, in a string.
_NAME = re.compile(
    r"^(vn\.motcua\.[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\.v[1-9][0-9]*"
    r"|motcua\.[a-z][a-z0-9_]*\.v[1-9][0-9]*(\.dlq)?"
    r"|/motcua/[a-z][a-z0-9_/]*)$"
)


def spelled_names(root: Path) -> list[str]:
    """file:line: literal, for every string literal under ``root`` that is a topic or type."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            text = node.value if isinstance(node, ast.Constant) else None
            if isinstance(text, str) and _NAME.match(text):
                found.append(f"{path.relative_to(root)}:{node.lineno}: {text!r}")
    return found


def test_no_service_spells_a_topic_or_a_type() -> None:
    """Every name comes from the generated ``motcua.topics`` (ADR 0078)."""
    assert spelled_names(SERVICES) == []


def test_a_spelled_type_or_topic_is_found(tmp_path: Path) -> None:
    (tmp_path / "service.py").write_text(
        "from motcua_kit.envelope import Event\n"
        "TOPIC = 'motcua.fixture.v1'\n"
        "def emit(m):\n"
        "    return Event.new(source='/motcua/fixture', type='vn.motcua.fixture.moved.v1',\n"
        "                     subject='A-260302-0001', message=m)\n"
        "SERVICE = 'motcua.fixture.v1.FixtureService'  # a gRPC name: not a topic\n"
    )
    assert spelled_names(tmp_path) == [
        "service.py:2: 'motcua.fixture.v1'",
        "service.py:4: '/motcua/fixture'",
        "service.py:4: 'vn.motcua.fixture.moved.v1'",
    ]


def test_the_generated_constants_are_the_registrys_names() -> None:
    from motcua import topics

    names = {v for k, v in vars(topics).items() if k.isupper() and isinstance(v, str)}
    for topic in REGISTRY.topics:
        assert {topic.name, topic.dlq_name, topic.source} <= names
        assert set(topic.types) <= names
        assert getattr(topics, f"{topic.producer.upper()}_TYPES") == topic.types
    assert {r.type for r in REGISTRY.records} <= names
    assert topics.DOSSIER_PAYMENT_REQUESTED == "vn.motcua.dossier.payment_requested.v1"
