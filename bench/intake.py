"""SubmitDossier against a bare grpcio echo, on PostgreSQL (production) and SQLite (embedded).

The dossier service runs as a process; ``concurrency`` client threads call SubmitDossier with
the same payload as a bare grpcio unary echo server gets in the same run. The ratios are
throughput and p99 latency against that echo. With ``--profile DIR`` the dossier process is
sampled by py-spy while it is driven (a flame graph per database), to show where time goes.

    python -m bench.intake --requests 2000 --concurrency 8 [--profile /tmp/intake]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import grpc
from rich.console import Console

from bench.run import _echo_server, _request, drive
from harness import Kafka, Postgres, ServiceProcess
from motcua.dossier.v1 import dossier_pb2_grpc
from motcua_kit.auth import generate_signing_key, mint_token

Row = tuple[str, str, float]


def _bare(
    total: int, concurrency: int, payload_size: int, md: list[tuple[str, str]]
) -> dict[str, float]:
    server, port = _echo_server()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        echo = channel.unary_unary("/bench.Echo/Echo")
        body = os.urandom(payload_size)
        for _ in range(20):
            echo(body, timeout=10)
        return drive(lambda i: echo(body, metadata=md, timeout=10), total, concurrency, "bare")
    finally:
        channel.close()
        server.stop(1)


def _submit(
    url: str,
    kafka: Kafka,
    workdir: Path,
    total: int,
    concurrency: int,
    profile: Path | None,
    label: str,
) -> tuple[dict[str, float], list[tuple[str, str]]]:
    """The service's rate and percentiles, and the call metadata (for the echo's equal load)."""
    private_pem, public_pem = generate_signing_key()
    key_file = workdir / f"jwt-{label}.pem"
    key_file.write_bytes(public_pem)
    token = mint_token(private_pem, "bench", ["service"])
    proc = ServiceProcess(
        "dossier",
        {
            "MOTCUA_DOSSIER_DATABASE_URL": url,
            "MOTCUA_DOSSIER_KAFKA_BOOTSTRAP": kafka.bootstrap,
            "MOTCUA_DOSSIER_JWT_PUBLIC_KEY_FILE": str(key_file),
            "MOTCUA_DOSSIER_LOG_LEVEL": "WARNING",
        },
        workdir,
    )
    proc.start()
    spy: subprocess.Popen[bytes] | None = None
    try:
        channel = grpc.insecure_channel(proc.target)
        stub = dossier_pb2_grpc.DossierServiceStub(channel)
        md = [("authorization", f"Bearer {token}")]
        for i in range(20):  # warm-up: pools, caches, the day's sequence row
            stub.SubmitDossier(_request(10_000_000 + i), metadata=md, timeout=30)
        if profile is not None and proc.proc is not None:
            profile.mkdir(parents=True, exist_ok=True)
            spy = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--pid",
                    str(proc.proc.pid),
                    "--rate",
                    "200",
                    "--nonblocking",
                    "--format",
                    "speedscope",
                    "--output",
                    str(profile / f"intake-{label}.json"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        result = drive(
            lambda i: stub.SubmitDossier(_request(i), metadata=md, timeout=30),
            total,
            concurrency,
            f"SubmitDossier ({label})",
        )
        channel.close()
        result["payload"] = float(_request(0).ByteSize())
        return result, md
    finally:
        if spy is not None:  # py-spy writes its profile on SIGINT
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        proc.terminate()


def run(
    console: Console,
    kafka: Kafka,
    postgres: Postgres,
    workdir: Path,
    *,
    total: int = 2000,
    concurrency: int = 8,
    profile: Path | None = None,
) -> tuple[list[Row], dict[str, float]]:
    """Rows for the report and the figures ``intake_{ratio,p99_ratio}_{postgresql,sqlite}``."""
    rows: list[Row] = []
    figures: dict[str, float] = {}
    workdir.mkdir(parents=True, exist_ok=True)
    postgres.start()
    for label, url in (
        ("postgresql", postgres.create_database("intake")),
        ("sqlite", f"sqlite:///{workdir}/dossier.db"),
    ):
        submit, md = _submit(url, kafka, workdir, total, concurrency, profile, label)
        bare = _bare(total, concurrency, int(submit["payload"]), md)
        figures[f"intake_ratio_{label}"] = submit["rate"] / bare["rate"]
        figures[f"intake_p99_ratio_{label}"] = submit["p99_ms"] / bare["p99_ms"]
        rows += [
            (
                f"SubmitDossier throughput vs bare grpcio echo ({label}, {concurrency} clients)",
                f"{submit['rate']:.0f}/s vs {bare['rate']:.0f}/s",
                figures[f"intake_ratio_{label}"],
            ),
            (
                f"SubmitDossier p50 latency vs bare echo ({label})",
                f"{submit['p50_ms']:.2f} ms vs {bare['p50_ms']:.2f} ms",
                submit["p50_ms"] / bare["p50_ms"],
            ),
            (
                f"SubmitDossier p99 latency vs bare echo ({label})",
                f"{submit['p99_ms']:.2f} ms vs {bare['p99_ms']:.2f} ms",
                figures[f"intake_p99_ratio_{label}"],
            ),
        ]
        console.print(rows[-3:])
    return rows, figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--profile", type=Path, default=None)
    args = parser.parse_args()
    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="motcua-intake-"))
    kafka = Kafka(state_dir=workdir / "kafka")
    postgres = Postgres()
    kafka.start()
    try:
        rows, figures = run(
            console,
            kafka,
            postgres,
            workdir / "intake",
            total=args.requests,
            concurrency=args.concurrency,
            profile=args.profile,
        )
    finally:
        kafka.stop()
        postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    for name, detail, ratio in rows:
        console.print(f"| {name} | {detail} | **{ratio:.3f}** |")
    console.print(figures)


if __name__ == "__main__":
    main()
