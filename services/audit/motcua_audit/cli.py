"""Operator and auditor commands: ``verify`` (offline), ``export``, ``prove-consistency``,
``keygen``.

``verify`` needs no database and no network: an auditor runs it on files. It trusts only the
public keys given on its command line. Exit codes: 0 verified, 1 verification failed (the
first bad index and kind are printed), 2 unusable input (unreadable file, wrong format).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Annotated

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from sqlalchemy.orm import Session, sessionmaker

from motcua_audit.adapters import db
from motcua_audit.adapters.keys import SigningKeyError, load_key_ring
from motcua_audit.domain.export_format import (
    HASHES_PER_LINE,
    ConsistencyProof,
    ExportFormatError,
    RecordedHashes,
    assemble_recorded,
    entry_line,
    export_header_line,
    head_from_json,
    head_to_json,
    leaf_hashes_line,
    parse_export_header,
    parse_line,
    proof_from_json,
    proof_to_json,
)
from motcua_audit.domain.merkle import leaf_hasher
from motcua_audit.domain.tree_head import (
    SignedTreeHead,
    key_id_for,
    keyring,
    load_public_key_pem,
    private_key_to_pem,
    public_key_to_pem,
)
from motcua_audit.domain.verifier import (
    Damage,
    Problem,
    VerificationReport,
    verify_consistency_between,
    verify_leaf_hashes,
)
from motcua_audit.settings import AuditSettings
from motcua_kit.db import make_engine, session_factory

PROGRESS_THRESHOLD = 10_000
"""Exports with at least this many entries get a progress bar."""
EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE = 0, 1, 2
_BATCH = 1000

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


class Unusable(Exception):
    """An input file cannot be used at all (exit 2)."""


def _progress(total: int, enabled: bool) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not enabled,
    )


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Unusable(f"cannot read {what} {path}: {exc}") from None


def _load_keys(paths: list[Path]) -> dict[str, Ed25519PublicKey]:
    keys = []
    for path in paths:
        try:
            keys.append(load_public_key_pem(path.read_bytes()))
        except OSError as exc:
            raise Unusable(f"cannot read public key {path}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise Unusable(f"{path} is not an Ed25519 public key (PEM): {exc}") from None
    return keyring(keys)


def _load_head(path: Path, what: str) -> SignedTreeHead:
    try:
        return head_from_json(_read_text(path, what))
    except ExportFormatError as exc:
        raise Unusable(f"{what} {path}: {exc}") from None


def read_export(
    path: Path, *, show_progress: bool | None = None
) -> tuple[SignedTreeHead, list[SignedTreeHead], list[bytes], list[bytes] | None, int]:
    """(embedded head, checkpoints, leaf hashes, recorded hashes, declared count) of a file.

    Entries are hashed as they are read, so memory holds hashes, not entries.
    """
    try:
        stream: IO[bytes] = path.open("rb")
    except OSError as exc:
        raise Unusable(f"cannot read export {path}: {exc}") from None
    with stream:
        first = stream.readline()
        try:
            header = parse_export_header(first.decode("utf-8"))
        except (ExportFormatError, UnicodeDecodeError) as exc:
            raise Unusable(f"export {path}: {exc}") from None
        leaves: list[bytes] = []
        chunks: list[RecordedHashes] = []
        hash_leaf = leaf_hasher()
        enabled = header.entries >= PROGRESS_THRESHOLD if show_progress is None else show_progress
        with _progress(header.entries, enabled) as progress:
            task = progress.add_task("hashing entries", total=header.entries)
            for raw in stream:
                line = raw.rstrip(b"\r\n")
                if not line:
                    continue
                parsed = parse_line(line)
                if isinstance(parsed, RecordedHashes):
                    chunks.append(parsed)
                    continue
                leaves.append(hash_leaf(parsed))
                if len(leaves) % _BATCH == 0:
                    progress.update(task, completed=len(leaves))
    recorded = assemble_recorded(chunks) if chunks else None
    if chunks and recorded is None:
        recorded = []  # present but not tiling [0, n): reported as untrusted, not ignored
    return header.head, list(header.checkpoints), leaves, recorded, header.entries


def _describe(problem: Problem) -> str:
    where = f"entry {problem.index}" if problem.index is not None else "the log"
    return f"{where}: {problem.kind} — {problem.detail}"


def run_verify(
    export: Path,
    head: Path,
    public_keys: list[Path],
    old_head: Path | None = None,
    consistency_proof: Path | None = None,
    show_progress: bool | None = None,
) -> tuple[int, VerificationReport | None, list[str]]:
    """The ``verify`` command without the process exit: (exit code, report, messages)."""
    try:
        keys = _load_keys(public_keys)
        signed = _load_head(head, "tree head")
        old = _load_head(old_head, "old tree head") if old_head is not None else None
        proof: ConsistencyProof | None = None
        if consistency_proof is not None:
            if old is None:
                raise Unusable("--consistency-proof needs --old-head")
            try:
                proof = proof_from_json(_read_text(consistency_proof, "consistency proof"))
            except ExportFormatError as exc:
                raise Unusable(f"consistency proof {consistency_proof}: {exc}") from None
        embedded, checkpoints, leaves, recorded, _declared = read_export(
            export, show_progress=show_progress
        )
    except Unusable as exc:
        return EXIT_UNUSABLE, None, [str(exc)]

    if embedded != signed:
        checkpoints.append(embedded)  # must agree with the entries too
    if old is not None:
        checkpoints.append(old)
    report = verify_leaf_hashes(
        leaves, signed, keys, recorded_leaf_hashes=recorded, checkpoints=checkpoints
    )
    if old is not None and proof is not None:
        if (proof.first_size, proof.second_size) != (old.head.size, signed.head.size):
            report.problems.insert(
                0,
                Problem(
                    None,
                    Damage.INCONSISTENT_HEADS,
                    f"the consistency proof is for sizes {proof.first_size} → "
                    f"{proof.second_size}, the heads are {old.head.size} → {signed.head.size}",
                ),
            )
        elif not verify_consistency_between(old, signed, proof.proof, keys):
            report.problems.insert(
                0,
                Problem(
                    None,
                    Damage.INCONSISTENT_HEADS,
                    f"the head of size {signed.head.size} is not a consistent extension of "
                    f"the old head of size {old.head.size} (or one of them does not verify)",
                ),
            )
        report.ok = not report.problems
    if report.ok:
        h = signed.head
        when = datetime.fromtimestamp(h.timestamp_ms / 1000, UTC).isoformat()
        lines = [
            f"OK: {len(leaves)} entries reproduce the signed tree head of size {h.size}",
            f"    root {h.root_hash.hex()}, key {h.key_id}, signed {when}",
        ]
        if old is not None and proof is not None:
            lines.append(f"    consistent with the old head of size {old.head.size}")
        return EXIT_OK, report, lines
    first = report.first_problem
    assert first is not None
    lines = [f"FAILED: {_describe(first)}"]
    if first.index is not None:
        lines[0] = f"FAILED: first bad index {first.index} ({first.kind}): {first.detail}"
    rest = [p for p in report.problems if p is not first]
    for problem in rest[:20]:
        lines.append(f"  also {_describe(problem)}")
    if len(rest) > 20:
        lines.append(f"  … and {len(rest) - 20} more problems")
    return EXIT_FAILED, report, lines


def verify(
    export: Annotated[Path, typer.Option("--export", help="Export file (JSON Lines) to check")],
    head: Annotated[
        Path, typer.Option("--head", help="Signed tree head (JSON) to check it against")
    ],
    public_key: Annotated[
        list[Path],
        typer.Option(
            "--public-key", help="Trusted Ed25519 public key (PEM); repeat for retired keys"
        ),
    ],
    old_head: Annotated[
        Path | None, typer.Option("--old-head", help="An earlier signed head the log must extend")
    ] = None,
    consistency_proof: Annotated[
        Path | None,
        typer.Option(
            "--consistency-proof", help="Consistency proof from --old-head to --head (JSON)"
        ),
    ] = None,
) -> None:
    """Verify an export offline: signature, root, consistency; name the first bad entry."""
    code, _report, lines = run_verify(export, head, public_key, old_head, consistency_proof)
    console = out if code == EXIT_OK else err
    for line in lines:
        console.print(line, markup=False, highlight=False)
    raise typer.Exit(code)


# -- commands that read the service's database ---------------------------------------------------
@contextmanager
def _database(database_url: str | None) -> Iterator[tuple[AuditSettings, sessionmaker[Session]]]:
    """Settings and a session factory; callers keep transactions short, because on SQLite
    every transaction holds the write lock the running service needs to append."""
    settings = AuditSettings()
    if database_url:
        settings = settings.model_copy(update={"database_url": database_url})
    engine = make_engine(settings.database_url)
    try:
        yield settings, session_factory(engine)
    finally:
        engine.dispose()


def _write_atomically(path: Path, write: Callable[[IO[str]], None]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="\n") as stream:
            write(stream)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _sign_now(settings: AuditSettings, session: Session) -> SignedTreeHead:
    try:
        ring = load_key_ring(settings)
    except SigningKeyError as exc:
        raise Unusable(str(exc)) from None
    merkle = db.AuditLogRepository.log(session)
    size = merkle.size()
    signed = ring.signer.sign(size, merkle.root(size))
    db.TreeHeadRepository.add(session, signed)
    session.commit()
    return signed


def export(
    output: Annotated[
        Path, typer.Option("--output", help="Where to write the export (JSON Lines)")
    ],
    head_output: Annotated[
        Path | None,
        typer.Option("--head-output", help="Also write the export's signed head here (JSON)"),
    ] = None,
    sign_now: Annotated[
        bool,
        typer.Option(
            "--sign-now", help="Sign a fresh head over the whole log first (needs the key)"
        ),
    ] = False,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="Default: MOTCUA_AUDIT_DATABASE_URL")
    ] = None,
) -> None:
    """Export the log up to its latest signed head: entries, recorded leaf hashes, heads."""
    try:
        count = run_export(output, head_output, sign_now=sign_now, database_url=database_url)
    except Unusable as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(EXIT_UNUSABLE) from None
    out.print(f"exported {count} entries to {output}", markup=False, highlight=False)


def run_export(
    output: Path,
    head_output: Path | None = None,
    *,
    sign_now: bool = False,
    database_url: str | None = None,
    show_progress: bool | None = None,
) -> int:
    """Write an export file; returns the number of entries."""
    with _database(database_url) as (settings, sessions):
        heads = db.TreeHeadRepository()
        with sessions() as session:
            signed = _sign_now(settings, session) if sign_now else heads.latest(session)
            if signed is None:
                raise Unusable(
                    "the log has no signed tree head yet: wait for the service to sign one, "
                    "or pass --sign-now"
                )
            size = signed.head.size
            checkpoints = [
                c
                for c in heads.checkpoints(session, size, settings.export_max_checkpoints)
                if c != signed
            ]
        enabled = size >= PROGRESS_THRESHOLD if show_progress is None else show_progress
        repo = db.AuditLogRepository()

        def write(stream: IO[str]) -> None:
            stream.write(export_header_line(signed, checkpoints, time.time_ns() // 1_000_000))
            with _progress(size, enabled) as progress:
                task = progress.add_task("exporting entries", total=size)
                # Entries below a signed size never change: one short transaction per batch.
                for start in range(0, size, HASHES_PER_LINE):
                    end = min(start + HASHES_PER_LINE, size)
                    with sessions() as session:
                        rows = repo.range(session, start, end)
                    if len(rows) != end - start:
                        raise Unusable(f"the database lacks entries in [{start}, {end})")
                    for row in rows:
                        stream.write(entry_line(row.index, row.canonical))
                    progress.update(task, completed=end)
                for start in range(0, size, HASHES_PER_LINE):
                    end = min(start + HASHES_PER_LINE, size)
                    with sessions() as session:
                        recorded = repo.recorded_leaf_hashes(session, start, end)
                    if len(recorded) != end - start:
                        raise Unusable(f"the database lacks leaf nodes in [{start}, {end})")
                    stream.write(leaf_hashes_line(start, recorded))

        _write_atomically(output, write)
        if head_output is not None:
            head_output.write_text(head_to_json(signed), encoding="utf-8")
        return size


def prove_consistency(
    first_size: Annotated[int, typer.Option("--first-size", help="Size of the older head")],
    output: Annotated[Path, typer.Option("--output", help="Where to write the proof (JSON)")],
    second_size: Annotated[
        int, typer.Option("--second-size", help="Newer size; 0: the latest head")
    ] = 0,
    head_output: Annotated[
        Path | None,
        typer.Option("--head-output", help="Also write the latest head when --second-size is 0"),
    ] = None,
    database_url: Annotated[str | None, typer.Option("--database-url")] = None,
) -> None:
    """Write the consistency proof between two tree sizes, for ``verify --consistency-proof``."""
    with _database(database_url) as (_settings, sessions), sessions() as session:
        latest = db.TreeHeadRepository().latest(session)
        if second_size == 0:
            if latest is None:
                err.print("the log has no signed tree head yet", markup=False)
                raise typer.Exit(EXIT_UNUSABLE)
            second_size = latest.head.size
        merkle = db.AuditLogRepository.log(session)
        try:
            proof = merkle.consistency_proof(first_size, second_size)
        except ValueError as exc:
            err.print(f"cannot prove consistency: {exc}", markup=False)
            raise typer.Exit(EXIT_UNUSABLE) from None
    output.write_text(
        proof_to_json(ConsistencyProof(first_size, second_size, tuple(proof))), encoding="utf-8"
    )
    if head_output is not None and latest is not None and latest.head.size == second_size:
        head_output.write_text(head_to_json(latest), encoding="utf-8")
    out.print(f"consistency proof {first_size} → {second_size} written to {output}", markup=False)


def keygen(
    private_key: Annotated[
        Path, typer.Option("--private-key", help="Where to write the private key")
    ],
    public_key: Annotated[Path, typer.Option("--public-key", help="Where to write the public key")],
) -> None:
    """Generate an Ed25519 tree-head signing key (PKCS#8 PEM) and its public key."""
    if private_key.exists():
        err.print(f"{private_key} exists; refusing to overwrite a signing key", markup=False)
        raise typer.Exit(EXIT_UNUSABLE)
    key = Ed25519PrivateKey.generate()
    fd = os.open(private_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as stream:
        stream.write(private_key_to_pem(key))
    public_key.write_bytes(public_key_to_pem(key.public_key()))
    out.print(f"key id {key_id_for(key.public_key())}", markup=False)


def register(app: typer.Typer) -> typer.Typer:
    """Add the audit commands to the service's ``serve | migrate`` app."""
    app.command()(verify)
    app.command()(export)
    app.command("prove-consistency")(prove_consistency)
    app.command()(keygen)
    return app
