"""`motcua dev token` signs with the demo's local development key, and with no other key."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from motcua_kit.auth import Principal, TokenVerifier, generate_signing_key
from motcua_ops.cli import app
from motcua_ops.devkeys import MARKER, ensure_dev_keys

runner = CliRunner()


def _token(state: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["dev", "token", "--state-dir", str(state), *args])
    return result.exit_code, result.stdout.strip(), result.stderr


@pytest.fixture
def state(tmp_path: Path) -> Path:
    ensure_dev_keys(tmp_path)
    return tmp_path


def _verify(state: Path, token: str) -> Principal:
    keys = state / "dev-keys" / "idp-public.pem"
    return TokenVerifier.from_file(keys, issuer="motcua", audience="motcua").verify(token)


def test_a_citizen_token_the_demo_services_accept(state: Path) -> None:
    code, out, err = _token(state, "--role", "citizen", "--citizen-id", "079203004567")
    assert code == 0, err
    who = _verify(state, out)
    assert who.roles == {"citizen"} and who.citizen_id == "079203004567" and not who.agency_code


def test_an_officer_token_for_an_agency(state: Path) -> None:
    code, out, err = _token(state, "--role", "officer", "--agency", "STP")
    assert code == 0, err
    who = _verify(state, out)
    assert who.roles == {"officer"} and who.agency_code == "STP" and not who.citizen_id


@pytest.mark.parametrize(
    "args",
    [
        ["--role", "citizen"],
        ["--role", "citizen", "--citizen-id", "０７９２０３００４５６７"],  # fullwidth digits
        ["--role", "citizen", "--citizen-id", "079203004567", "--agency", "STP"],
        ["--role", "officer"],
        ["--role", "admin", "--agency", "STP"],
    ],
)
def test_a_token_needs_exactly_what_its_role_names(state: Path, args: list[str]) -> None:
    code, out, _ = _token(state, *args)
    assert code == 2 and not out


def test_refused_without_the_demo_keys(tmp_path: Path) -> None:
    code, out, err = _token(tmp_path, "--role", "officer", "--agency", "STP")
    assert code == 2 and not out
    assert "no local development key" in err and "make run" in err


def test_refused_for_a_key_the_demo_did_not_make(state: Path) -> None:
    (state / "dev-keys" / MARKER).unlink()
    code, out, err = _token(state, "--role", "officer", "--agency", "STP")
    assert code == 2 and not out and "not marked as made by the demo" in err


def test_refused_when_the_key_is_not_the_services_key(state: Path) -> None:
    other_private, _ = generate_signing_key()
    private = state / "dev-keys" / "idp-private.pem"
    private.write_bytes(other_private)
    code, out, err = _token(state, "--role", "officer", "--agency", "STP")
    assert code == 2 and not out and "does not match" in err


def test_the_keys_are_made_once_and_kept(tmp_path: Path) -> None:
    first = ensure_dev_keys(tmp_path)
    before = first.private_key.read_bytes(), first.gateway_secret.read_bytes()
    again = ensure_dev_keys(tmp_path)
    assert (again.private_key.read_bytes(), again.gateway_secret.read_bytes()) == before
    assert first.private_key.stat().st_mode & 0o077 == 0
