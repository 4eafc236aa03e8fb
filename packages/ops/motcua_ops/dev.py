"""``motcua dev``: helpers for the local demo of ``make run`` — never for a deployment."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from motcua_kit.auth import mint_token
from motcua_ops.devkeys import NotDevKeys, default_state_dir, load_dev_private_key

app = typer.Typer(
    help="Local development helpers for the running `make run` demo.", no_args_is_help=True
)
_CITIZEN_ID = re.compile(r"[0-9]{12}")  # CCCD: twelve ASCII digits
_AGENCY = re.compile(r"[A-Z][A-Z0-9_-]{0,31}")


class Role(StrEnum):
    """The callers a demo token can stand for."""

    citizen = "citizen"
    officer = "officer"


@app.command("token")
def token(
    role: Annotated[Role, typer.Option(help="citizen (needs --citizen-id) or officer (--agency)")],
    citizen_id: Annotated[str, typer.Option(help="the citizen's 12-digit CCCD number")] = "",
    agency: Annotated[str, typer.Option(help="the officer's agency code, e.g. STP")] = "",
    subject: Annotated[str, typer.Option(help="the token's sub (default: from the role)")] = "",
    ttl_seconds: Annotated[int, typer.Option(min=60, max=86_400)] = 3600,
    state_dir: Annotated[
        Path | None,
        typer.Option(help="the demo's state folder (default $MOTCUA_STATE_DIR or ./.state)"),
    ] = None,
) -> None:
    """Print a bearer token signed with the demo's local development key (and no other key),
    for calling the running demo with grpcurl or `motcua dossier ...`."""
    if role is Role.citizen:
        if agency or not _CITIZEN_ID.fullmatch(citizen_id):
            raise typer.BadParameter(
                "a citizen token needs --citizen-id of 12 digits (0-9) and no --agency"
            )
        claims = {"citizen_id": citizen_id}
        subject = subject or f"dev-citizen-{citizen_id}"
    else:
        if citizen_id or not _AGENCY.fullmatch(agency):
            raise typer.BadParameter(
                "an officer token needs --agency (an agency code such as STP) and no --citizen-id"
            )
        claims = {"agency": agency}
        subject = subject or f"dev-officer-{agency.lower()}"
    try:
        private_pem = load_dev_private_key(state_dir or default_state_dir())
    except NotDevKeys as exc:
        typer.echo(f"motcua dev token: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(mint_token(private_pem, subject, [role.value], ttl_seconds=ttl_seconds, **claims))
