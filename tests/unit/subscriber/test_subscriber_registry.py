"""The topic registry loader (motcua_kit.registry): one source, validated, read the same way
by the services, the subscriber kit and the catalogue generator."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from motcua.dossier.v1 import events_pb2 as dossier_events
from motcua.payment.v1 import events_pb2 as payment_events
from motcua_kit import registry as registry_module
from motcua_kit.registry import (
    REGISTRY_ENV,
    RegistryError,
    load_registry,
    parse_registry,
    read_registry_data,
)

ROOT = Path(__file__).resolve().parents[3]
SOURCE = ROOT / "contracts" / "topics.yaml"


@pytest.fixture
def data() -> dict[str, Any]:
    return copy.deepcopy(read_registry_data(SOURCE))


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(RegistryError) as caught:
        parse_registry(data, "fixture")
    return str(caught.value)


def test_packaged_copy_is_the_registry_file() -> None:
    packaged = json.loads((ROOT / "packages/kit/motcua_kit/topics.json").read_text())
    assert packaged == yaml.safe_load(SOURCE.read_text())
    assert load_registry() == load_registry(SOURCE)


def test_every_topic_has_its_dlq_and_partitions_for_every_environment() -> None:
    registry = load_registry(SOURCE)
    assert registry.topic_names(include_dlq=False) == (
        "motcua.dossier.v1",
        "motcua.payment.v1",
        "motcua.notify.v1",
        "motcua.audit.v1",
    )
    assert "motcua.dossier.v1.dlq" in registry.topic_names()
    for topic in registry.topics:
        assert set(topic.partitions) == set(registry.environments)
        assert topic.partitions_for("prod") >= topic.partitions_for("local")
        assert topic.retention_ms == topic.retention_days * 86_400_000


def test_topic_creation_settings_come_per_environment_for_main_and_dlq() -> None:
    registry = load_registry(SOURCE)
    main = registry.kafka_topic("motcua.dossier.v1", "prod")
    assert (main.partitions, main.retention_ms) == (12, 7 * 86_400_000)
    assert registry.kafka_topic("motcua.dossier.v1", "local").partitions == 3
    dlq = registry.kafka_topic("motcua.dossier.v1.dlq", "prod")
    assert (dlq.partitions, dlq.retention_ms) == (1, 30 * 86_400_000)
    with pytest.raises(RegistryError, match="no topic"):
        registry.kafka_topic("motcua.other.v1", "prod")


def test_lookups_answer_what_services_and_subscribers_ask() -> None:
    registry = load_registry(SOURCE)
    assert registry.topic_of("vn.motcua.payment.succeeded.v1").name == "motcua.payment.v1"
    assert registry.message_class("vn.motcua.dossier.overdue.v1") is dossier_events.DossierDeadline
    assert registry.message_class("vn.motcua.payment.succeeded.v1") is payment_events.PaymentEvent
    assert registry.consumed_by("payment") == {
        "motcua.dossier.v1": (
            "vn.motcua.dossier.submitted.v1",
            "vn.motcua.dossier.payment_requested.v1",
            "vn.motcua.dossier.paid.v1",
            "vn.motcua.dossier.withdrawn.v1",
            "vn.motcua.dossier.stopped.v1",
        )
    }
    assert registry.consumed_by("audit") == {
        "motcua.dossier.v1": ("*",),
        "motcua.payment.v1": ("*",),
        "motcua.notify.v1": ("*",),
    }
    assert [t.name for t in registry.produced_by("dossier")] == ["motcua.dossier.v1"]
    assert "vn.motcua.dossier.received.v1" in registry.types_of_message(
        "motcua.dossier.v1.DossierStatusChanged"
    )
    submitted = registry.event("vn.motcua.dossier.submitted.v1")
    assert (submitted.name, submitted.version) == ("submitted", 1)
    assert registry.topic("motcua.dossier.v1").consumers_of(submitted.type) == (
        "notify",
        "payment",
        "audit",
        "stats-projector",
    )


def test_asking_for_what_is_not_there_names_it() -> None:
    registry = load_registry(SOURCE)
    with pytest.raises(RegistryError, match="staging"):
        registry.topic("motcua.dossier.v1").partitions_for("staging")
    with pytest.raises(RegistryError, match=r"vn\.motcua\.dossier\.nope\.v1"):
        registry.event("vn.motcua.dossier.nope.v1")
    with pytest.raises(RegistryError, match=r"motcua\.nope\.v1"):
        registry.topic("motcua.nope.v1")


def test_the_environment_variable_points_at_another_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: dict[str, Any]
) -> None:
    data["topics"][0]["partitions"]["prod"] = 48
    other = tmp_path / "topics.json"
    other.write_text(json.dumps(data))
    monkeypatch.setenv(REGISTRY_ENV, str(other))
    assert load_registry().topic("motcua.dossier.v1").partitions_for("prod") == 48


def test_a_type_listed_twice_is_refused(data: dict[str, Any]) -> None:
    events = data["topics"][0]["events"]
    events.append(copy.deepcopy(events[0]))
    assert "vn.motcua.dossier.submitted.v1 is listed twice" in _error(data)


def test_a_type_of_another_producer_is_refused(data: dict[str, Any]) -> None:
    data["topics"][0]["events"][0]["type"] = "vn.motcua.payment.submitted.v1"
    assert "not a type of producer 'dossier'" in _error(data)


def test_a_malformed_type_name_is_refused_with_its_place(data: dict[str, Any]) -> None:
    data["topics"][0]["events"][1]["type"] = "vn.motcua.dossier.Received"
    message = _error(data)
    assert "topics[0].events[1].type" in message
    assert "vn.motcua.<producer>.<event>.v<N>" in message


def test_partitions_must_cover_exactly_the_environments(data: dict[str, Any]) -> None:
    del data["topics"][1]["partitions"]["prod"]
    assert "motcua.payment.v1: partitions must be given for exactly" in _error(data)


def test_zero_partitions_are_refused(data: dict[str, Any]) -> None:
    data["topics"][0]["partitions"]["dev"] = 0
    assert "partitions must be at least 1" in _error(data)


def test_an_unknown_consumer_is_refused(data: dict[str, Any]) -> None:
    data["topics"][0]["events"][0]["consumers"] = ["warehouse"]
    assert "consumer 'warehouse' is not listed under systems" in _error(data)


def test_a_consumer_listed_for_all_types_and_one_type_is_refused(data: dict[str, Any]) -> None:
    data["topics"][0]["events"][0]["consumers"] = ["audit"]
    assert "audit already consume every type" in _error(data)


def test_a_reserved_topic_carries_no_events(data: dict[str, Any]) -> None:
    data["topics"][3]["events"] = copy.deepcopy(data["topics"][0]["events"][:1])
    assert "a reserved topic has no events" in _error(data)


def test_the_source_must_be_the_producers(data: dict[str, Any]) -> None:
    data["topics"][0]["source"] = "/motcua/payment"
    assert "source must be /motcua/dossier" in _error(data)


def test_unknown_keys_are_refused(data: dict[str, Any]) -> None:
    data["topics"][0]["partition"] = 3
    assert "topics[0].partition" in _error(data)


def test_the_key_example_must_match_its_pattern(data: dict[str, Any]) -> None:
    data["key"]["example"] = "phoian-1"
    assert "does not match pattern" in _error(data)


def test_a_duplicate_yaml_key_is_refused(tmp_path: Path) -> None:
    text = SOURCE.read_text().replace(
        "  audit:\n    kind: service\n",
        "  audit:\n    kind: service\n    kind: example\n",
    )
    broken = tmp_path / "topics.yaml"
    broken.write_text(text)
    with pytest.raises(RegistryError, match="key 'kind' is given twice"):
        load_registry(broken)


def test_a_message_that_does_not_exist_is_named() -> None:
    with pytest.raises(RegistryError, match=r"motcua\.dossier\.v1\.Nope"):
        registry_module.message_class("motcua.dossier.v1.Nope")
    with pytest.raises(RegistryError, match="no generated package"):
        registry_module.message_class("motcua.nothing.v9.Nope")
