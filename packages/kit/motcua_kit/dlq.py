"""The dead-letter operator command: list what failed, replay it after the cause is fixed.

``python -m motcua_kit.dlq list motcua.dossier.v1`` shows each dead letter with its error;
``python -m motcua_kit.dlq replay motcua.dossier.v1`` publishes them back to the original
topic, unchanged but for the ``motcua_*`` error headers. Replay is safe to repeat: every
consumer deduplicates on ``ce_id``; a consumer group remembers how far replay got.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import typer
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from motcua_kit.consumer import DLQ_SUFFIX
from motcua_kit.kafka import API_VERSION

app = typer.Typer(help="List and replay motcua dead-letter topics.", no_args_is_help=True)
console = Console()
REPLAY_GROUP = "motcua-dlq-replay"


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]

    def header(self, name: str) -> str:
        for k, v in self.headers:
            if k == name:
                return v.decode("utf-8", "replace")
        return ""

    @property
    def original_headers(self) -> list[tuple[str, bytes]]:
        return [(k, v) for k, v in self.headers if not k.startswith("motcua_")]


def _dlq(topic: str) -> str:
    return topic if topic.endswith(DLQ_SUFFIX) else topic + DLQ_SUFFIX


def read_dead_letters(
    bootstrap: str, topic: str, group: str | None = None, timeout: float = 30.0
) -> list[DeadLetter]:
    """Every dead letter of ``topic`` (from the group's position when a group is given)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        api_version=API_VERSION,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        parts = consumer.partitions_for_topic(_dlq(topic)) or set()
        tps = [TopicPartition(_dlq(topic), p) for p in sorted(parts)]
        if not tps:
            return []
        consumer.assign(tps)
        if group is None:
            consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        letters: list[DeadLetter] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {_dlq(topic)} to its end in {timeout}s")
            for records in consumer.poll(timeout_ms=200).values():
                letters += [
                    DeadLetter(r.partition, r.offset, r.key, r.value, list(r.headers or []))
                    for r in records
                ]
        return letters
    finally:
        consumer.close(autocommit=False)


#: Error kinds a replay cannot cure: the record itself is malformed.
UNDECODABLE = frozenset({"EnvelopeError"})


def replay(
    bootstrap: str, topic: str, group: str = REPLAY_GROUP, include_undecodable: bool = False
) -> int:
    """Publish not-yet-replayed dead letters back to their original topic; returns how many.

    Records that were dead-lettered because they cannot be decoded would only come back, so
    they are passed over (and remembered as handled) unless ``include_undecodable``.
    """
    seen = read_dead_letters(bootstrap, topic, group)
    if not seen:
        return 0
    letters = [
        d for d in seen if include_undecodable or d.header("motcua_error_type") not in UNDECODABLE
    ]
    producer = KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        api_version=API_VERSION,
        acks="all",
        enable_idempotence=True,
    )
    committer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        api_version=API_VERSION,
        group_id=group,
        enable_auto_commit=False,
    )
    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"replaying {_dlq(topic)}", total=len(letters))
            for letter in letters:
                target = letter.header("motcua_original_topic") or topic.removesuffix(DLQ_SUFFIX)
                producer.send(
                    target, key=letter.key, value=letter.value, headers=letter.original_headers
                ).get(timeout=30)
                progress.advance(task)
        producer.flush()
        last: dict[TopicPartition, OffsetAndMetadata] = {}
        for letter in seen:
            tp = TopicPartition(_dlq(topic), letter.partition)
            last[tp] = OffsetAndMetadata(letter.offset + 1, "", -1)
        committer.commit(last)
    finally:
        producer.close()
        committer.close(autocommit=False)
    return len(letters)


@app.command("list")
def list_command(
    topic: str = typer.Argument(..., help="Topic or its .dlq companion, e.g. motcua.dossier.v1"),
    bootstrap: str = typer.Option("127.0.0.1:9092", envvar="MOTCUA_KAFKA_BOOTSTRAP"),
) -> None:
    """Show every dead letter with the error that sent it there."""
    letters = read_dead_letters(bootstrap, topic)
    table = Table(title=f"{_dlq(topic)}: {len(letters)} dead letters")
    for column in ("partition", "offset", "key", "ce_type", "error type", "error", "failed at"):
        table.add_column(column)
    for d in letters:
        table.add_row(
            str(d.partition),
            str(d.offset),
            (d.key or b"").decode("utf-8", "replace"),
            d.header("ce_type"),
            d.header("motcua_error_type"),
            d.header("motcua_error")[:120],
            d.header("motcua_failed_at"),
        )
    console.print(table)


@app.command("replay")
def replay_command(
    topic: str = typer.Argument(..., help="Topic or its .dlq companion"),
    bootstrap: str = typer.Option("127.0.0.1:9092", envvar="MOTCUA_KAFKA_BOOTSTRAP"),
    group: str = typer.Option(REPLAY_GROUP, help="Consumer group remembering replay progress"),
    include_undecodable: bool = typer.Option(
        False, help="Also replay records that failed to decode (they will fail again)"
    ),
) -> None:
    """Publish dead letters back to the original topic (each at most once per group)."""
    count = replay(bootstrap, topic, group, include_undecodable)
    console.print(f"replayed {count} record(s) from {_dlq(topic)}")


if __name__ == "__main__":
    app()
