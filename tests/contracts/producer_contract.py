"""What every producer contract test asserts once its service has published: each record it
put on the topic matches the generated catalogue, and every documented type was seen."""

from __future__ import annotations

from pathlib import Path

from harness import Kafka, header, read_topic
from motcua_kit.registry import load_registry
from tools.eventdocs.conformance import CatalogueContract, Published

ROOT = Path(__file__).resolve().parents[2]


def assert_topic_matches_catalogue(
    kafka: Kafka, topic: str, published: dict[str, Published], *, every_type: bool = True
) -> set[str]:
    """Read ``topic`` from the real broker; check the records of ``published`` (by ce_id)."""
    contract = CatalogueContract.load()
    records = [
        r
        for r in read_topic(kafka.bootstrap, topic)
        if (header(r, "ce_id") or b"").decode() in published
    ]
    ours = {i for i, p in published.items() if p.topic == topic}
    assert len(records) == len(ours), "every outbox row reached the topic exactly once"
    seen: set[str] = set()
    for record in records:
        row = published[(header(record, "ce_id") or b"").decode()]
        problems = contract.record_problems(record.topic, record.key, record.value, record.headers)
        assert problems == [], f"{row.event_type}: {problems}"
        assert (record.key.decode(), record.value) == (row.key, row.payload)
        assert (header(record, "ce_type") or b"").decode() == row.event_type
        seen.add(row.event_type)
    if every_type:
        documented = set(load_registry(ROOT / "contracts" / "topics.yaml").topic(topic).types)
        assert seen == documented, (
            f"not exercised: {sorted(documented - seen)}; undocumented: {sorted(seen - documented)}"
        )
    return seen
