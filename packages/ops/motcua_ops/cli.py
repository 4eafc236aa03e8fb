"""``motcua``: submit and show dossiers, list and replay dead letters, export and verify the
audit log, tail a topic's events decoded, verify an official paper (`motcua document verify`);
`motcua dev token` mints a token for the local demo.

Shell completion: ``motcua --install-completion``. Connection settings come from options or
the environment (``MOTCUA_DOSSIER_TARGET``, ``MOTCUA_AUDIT_TARGET``, ``MOTCUA_KAFKA_BOOTSTRAP``,
``MOTCUA_TOKEN``: a bearer token from the identity provider).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import grpc
import typer
import yaml
from google.protobuf import json_format
from google.protobuf.message import Message
from kafka import KafkaConsumer, TopicPartition
from rich.console import Console
from rich.table import Table

from motcua.audit.v1 import audit_pb2, audit_pb2_grpc
from motcua.dossier.v1 import dossier_pb2, dossier_pb2_grpc
from motcua_audit.cli import register as register_audit
from motcua_kit import dlq
from motcua_kit.envelope import EnvelopeError, decode
from motcua_kit.kafka import API_VERSION
from motcua_kit.registry import RegistryError, default_registry
from motcua_ops import dev, document

app = typer.Typer(help=__doc__, no_args_is_help=True, pretty_exceptions_enable=False)
dossier_app = typer.Typer(help="Submit and show dossiers.", no_args_is_help=True)
events_app = typer.Typer(help="Read events from the topics, decoded.", no_args_is_help=True)
audit_app = register_audit(
    typer.Typer(help="Export and verify the audit log.", no_args_is_help=True)
)
app.add_typer(dossier_app, name="dossier")
app.add_typer(dlq.app, name="dlq")
app.add_typer(audit_app, name="audit")
app.add_typer(events_app, name="events")
app.add_typer(dev.app, name="dev")
app.add_typer(document.app, name="document")
console = Console()

Target = Annotated[str, typer.Option(envvar="MOTCUA_DOSSIER_TARGET", help="dossier gRPC host:port")]
Token = Annotated[str, typer.Option(envvar="MOTCUA_TOKEN", help="bearer token")]
Bootstrap = Annotated[str, typer.Option(envvar="MOTCUA_KAFKA_BOOTSTRAP", help="Kafka brokers")]


def _metadata(token: str) -> list[tuple[str, str]]:
    if not token:
        raise typer.BadParameter("a bearer token is required (--token or MOTCUA_TOKEN)")
    return [("authorization", f"Bearer {token}")]


def _fail(exc: grpc.RpcError) -> typer.Exit:
    console.print(f"[red]{exc.code().name}[/red]: {exc.details()}")
    return typer.Exit(1)


def _json(message: Message) -> str:
    return json_format.MessageToJson(message, ensure_ascii=False, indent=2)


@dossier_app.command("submit")
def submit(
    file: Annotated[Path, typer.Argument(help="SubmitDossierRequest as YAML or JSON")],
    target: Target = "127.0.0.1:50051",
    token: Token = "",
) -> None:
    """File a dossier described in a file (the same fields as the gRPC request)."""
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
        request = json_format.ParseDict(data, dossier_pb2.SubmitDossierRequest())
    except (OSError, yaml.YAMLError, json_format.ParseError) as exc:
        console.print(f"[red]cannot read {file}[/red]: {exc}")
        raise typer.Exit(2) from None
    with grpc.insecure_channel(target) as channel:
        try:
            response = dossier_pb2_grpc.DossierServiceStub(channel).SubmitDossier(
                request, metadata=_metadata(token), timeout=30
            )
        except grpc.RpcError as exc:
            raise _fail(exc) from None
    d = response.dossier
    note = " (replayed: this key was used before)" if response.replayed else ""
    console.print(f"filed [bold]{d.code}[/bold]{note}, appointment {d.appointment_date}")


@dossier_app.command("show")
def show(
    code: Annotated[str, typer.Argument(help="Dossier code, e.g. STP-261129-0001")],
    target: Target = "127.0.0.1:50051",
    audit_target: Annotated[
        str, typer.Option(envvar="MOTCUA_AUDIT_TARGET", help="audit gRPC host:port")
    ] = "127.0.0.1:50054",
    token: Token = "",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Show a dossier and its audit trail."""
    md = _metadata(token)
    try:
        with grpc.insecure_channel(target) as channel:
            d = (
                dossier_pb2_grpc.DossierServiceStub(channel)
                .GetDossier(dossier_pb2.GetDossierRequest(code=code), metadata=md, timeout=30)
                .dossier
            )
        with grpc.insecure_channel(audit_target) as channel:
            trail = audit_pb2_grpc.AuditServiceStub(channel).GetDossierTrail(
                audit_pb2.GetDossierTrailRequest(dossier_code=code), metadata=md, timeout=30
            )
    except grpc.RpcError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps({"dossier": json.loads(_json(d)), "trail": json.loads(_json(trail))}))
        return
    status = dossier_pb2.DossierStatus.Name(d.status).removeprefix("DOSSIER_STATUS_")
    console.print(
        f"[bold]{d.code}[/bold] {d.procedure_code} ({d.agency_code}) — {status}, "
        f"version {d.version}, appointment {d.appointment_date}"
        + (" [red]overdue[/red]" if d.overdue else "")
    )
    table = Table(title=f"audit trail ({len(trail.entries)} entries)")
    for column in ("#", "time", "type", "event id"):
        table.add_column(column)
    for e in trail.entries:
        table.add_row(str(e.index), e.event_time.ToDatetime().isoformat(), e.event_type, e.event_id)
    console.print(table)


@events_app.command("tail")
def tail(
    topic: Annotated[str, typer.Argument(help="e.g. motcua.dossier.v1")],
    bootstrap: Bootstrap = "127.0.0.1:9092",
    from_beginning: Annotated[bool, typer.Option(help="start at the oldest record")] = False,
    max_records: Annotated[int, typer.Option("--max", help="stop after this many (0: never)")] = 0,
    idle_seconds: Annotated[float, typer.Option(help="stop after this long without records")] = 0,
) -> None:
    """Print a topic's events as JSON lines, payloads decoded with the registry's types."""
    registry = default_registry()
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","), api_version=API_VERSION, enable_auto_commit=False
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        (consumer.seek_to_beginning if from_beginning else consumer.seek_to_end)(*tps)
        printed, last = 0, time.monotonic()
        while not max_records or printed < max_records:
            batch = consumer.poll(timeout_ms=200)
            if not batch and idle_seconds and time.monotonic() - last > idle_seconds:
                break
            for records in batch.values():
                for r in records:
                    last = time.monotonic()
                    typer.echo(json.dumps(_decoded(registry, r), ensure_ascii=False))
                    printed += 1
                    if max_records and printed >= max_records:
                        return
    finally:
        consumer.close()


def _decoded(registry: object, record: object) -> dict[str, object]:
    base = {
        "partition": record.partition,  # type: ignore[attr-defined]
        "offset": record.offset,  # type: ignore[attr-defined]
        "key": (record.key or b"").decode("utf-8", "replace"),  # type: ignore[attr-defined]
    }
    try:
        event = decode(record.key, record.value, record.headers or [])  # type: ignore[attr-defined]
    except EnvelopeError as exc:
        return {**base, "error": str(exc)}
    out: dict[str, object] = {
        **base,
        "id": event.id,
        "type": event.type,
        "source": event.source,
        "subject": event.subject,
        "time": event.time.isoformat(),
    }
    try:
        message = registry.message_class(event.type)()  # type: ignore[attr-defined]
        message.ParseFromString(event.data)
        out["data"] = json_format.MessageToDict(message)
    except (RegistryError, Exception) as exc:  # an unknown type or a payload that does not parse
        out["data_error"] = str(exc)
    return out
