"""The generated event catalogue: current, valid AsyncAPI 3.0, every field documented, an
example for every type — and the build fails on deliberately broken fixtures."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from motcua_kit.registry import load_registry, read_registry_data
from tools.eventdocs import __main__ as cli
from tools.eventdocs.catalogue import CatalogueError, Sources, build
from tools.eventdocs.conformance import CatalogueContract
from tools.eventdocs.outputs import ASYNCAPI, HTML, MARKDOWN, render_outputs
from tools.eventdocs.render import anchor
from tools.eventdocs.validate import asyncapi_errors

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = load_registry(ROOT / "contracts" / "topics.yaml")
ALL_TYPES = [e.type for t in REGISTRY.topics for e in t.events]


@pytest.fixture(scope="module")
def contract() -> CatalogueContract:
    return CatalogueContract.load()


@pytest.fixture
def protos_copy(tmp_path: Path) -> Path:
    target = tmp_path / "protos"
    shutil.copytree(ROOT / "protos", target)
    return target


def _problems(sources: Sources) -> list[str]:
    with pytest.raises(CatalogueError) as caught:
        build(sources)
    return caught.value.problems


def test_the_generated_files_are_current() -> None:
    """What `make check-generated` enforces in CI, also as a test."""
    for path, text in render_outputs(build()).items():
        assert path.read_text(encoding="utf-8") == text, f"{path} is stale: run `make generate`"


def test_the_document_is_valid_asyncapi_3(contract: CatalogueContract) -> None:
    assert contract.document["asyncapi"] == "3.0.0"
    assert asyncapi_errors(contract.document) == []


def test_the_validator_rejects_an_invalid_document(contract: CatalogueContract) -> None:
    broken = yaml.safe_load(ASYNCAPI.read_text())
    broken["channels"]["motcua.dossier.v1"]["bindings"]["kafka"]["partitions"] = "twelve"
    broken["operations"]["dossier.publishes.motcua.dossier.v1"]["action"] = "publish"
    assert len(asyncapi_errors(broken)) >= 2


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_every_type_has_a_documented_message_and_a_conforming_example(
    contract: CatalogueContract, event_type: str
) -> None:
    topic = REGISTRY.topic_of(event_type).name
    assert event_type in contract.channel_types(topic)
    message = contract.message(event_type)
    assert message["x-protobuf-message"] == REGISTRY.event(event_type).message
    assert message["examples"][0]["payload"], "an example payload"
    key, value, headers = contract.example_record(event_type)
    assert contract.record_problems(topic, key, value, headers) == []


def test_every_payload_element_is_documented(contract: CatalogueContract) -> None:
    schemas = contract.document["components"]["schemas"]
    for name, schema in schemas.items():
        assert schema.get("description", "").strip(), f"{name} has no description"
        for field, prop in schema.get("properties", {}).items():
            assert prop.get("description", "").strip(), f"{name}.{field} has no description"


def test_the_page_and_the_markdown_show_every_type_with_an_example() -> None:
    html = HTML.read_text(encoding="utf-8")
    markdown = MARKDOWN.read_text(encoding="utf-8")
    for event_type in ALL_TYPES:
        section = re.search(
            rf'<section class="event" id="{anchor(event_type)}">(.*?)</section>',
            html,
            re.S,
        )
        assert section, f"{event_type} has no section on the page"
        assert "payload (" in section.group(1) and "ce_specversion" in section.group(1)
        assert f"`{event_type}`" in markdown


def test_removing_a_fields_comment_from_a_proto_fails_the_build(protos_copy: Path) -> None:
    events_proto = protos_copy / "motcua/dossier/v1/events.proto"
    text = events_proto.read_text()
    comment = '  // Workflow action name, e.g. "receive", "request_payment".\n'
    assert comment in text
    events_proto.write_text(text.replace(comment, ""))
    problems = _problems(Sources(protos=protos_copy))
    assert any(
        p.startswith("motcua.dossier.v1.DossierStatusChanged.action") and "no documentation" in p
        for p in problems
    ), problems


def test_removing_a_fields_documentation_entry_fails_the_build(tmp_path: Path) -> None:
    docs = tmp_path / "field_docs.yaml"
    lines = (ROOT / "tools/eventdocs/field_docs.yaml").read_text().splitlines(keepends=True)
    docs.write_text(
        "".join(line for line in lines if not line.startswith("motcua.payment.v1.Refund.id:"))
    )
    problems = _problems(Sources(field_docs=docs))
    assert any(p.startswith("motcua.payment.v1.Refund.id ") for p in problems), problems


def test_a_documentation_entry_for_no_field_fails_the_build(tmp_path: Path) -> None:
    docs = tmp_path / "field_docs.yaml"
    docs.write_text(
        (ROOT / "tools/eventdocs/field_docs.yaml").read_text()
        + "motcua.dossier.v1.Dossier.teleported_to: Where it went.\n"
    )
    assert any("teleported_to is no element" in p for p in _problems(Sources(field_docs=docs)))


def test_documentation_in_both_places_fails_the_build(tmp_path: Path) -> None:
    docs = tmp_path / "field_docs.yaml"
    docs.write_text(
        (ROOT / "tools/eventdocs/field_docs.yaml").read_text()
        + "motcua.dossier.v1.DossierStatusChanged.action: The action.\n"
    )
    problems = _problems(Sources(field_docs=docs))
    assert any("DossierStatusChanged.action: documented in" in p for p in problems)


def test_an_example_that_does_not_fit_its_message_fails_the_build(tmp_path: Path) -> None:
    data = read_registry_data(ROOT / "contracts/topics.yaml")
    data["topics"][0]["events"][1]["example"]["acton"] = "receive"
    registry = tmp_path / "topics.yaml"
    registry.write_text(yaml.safe_dump(data, allow_unicode=True))
    problems = _problems(Sources(registry=registry))
    assert any("vn.motcua.dossier.received.v1" in p and "acton" in p for p in problems)


def test_a_type_whose_message_does_not_exist_fails_the_build(tmp_path: Path) -> None:
    data = read_registry_data(ROOT / "contracts/topics.yaml")
    data["topics"][0]["events"][0]["message"] = "motcua.dossier.v1.DossierFiled"
    registry = tmp_path / "topics.yaml"
    registry.write_text(yaml.safe_dump(data, allow_unicode=True))
    assert any("DossierFiled" in p for p in _problems(Sources(registry=registry)))


def test_protos_ahead_of_the_generated_code_fail_the_build(protos_copy: Path) -> None:
    events_proto = protos_copy / "motcua/dossier/v1/events.proto"
    text = events_proto.read_text()
    events_proto.write_text(
        text.replace(
            "  int32 working_days = 4;\n",
            "  int32 working_days = 4;\n  // Why.\n  string note = 5;\n",
        )
    )
    problems = _problems(Sources(protos=protos_copy))
    assert any("DossierDeadline" in p and "make generate" in p for p in problems), problems


def test_the_check_command_fails_on_a_stale_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "asyncapi.yaml"
    stale.write_text("old\n")
    monkeypatch.setattr(cli, "render_outputs", lambda catalogue: {stale: "new\n"})
    assert cli.main(["check"]) == 1
    assert "is stale: run `make generate`" in capsys.readouterr().err


def test_the_check_command_passes_on_the_repository(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check"]) == 0
    assert "every emitted type documented" in capsys.readouterr().out
