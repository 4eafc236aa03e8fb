"""The service images (services/<svc>/Dockerfile, .dockerignore), read as text.

No Docker engine runs here, so these check what the chart relies on: a multi-stage build from a
slim Python base, only the service's own code, a numeric non-root user that matches the pods'
runAsUser, the ports the chart uses, a healthcheck, and dependencies installed from the lock
with hashes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("dossier", "notify", "payment", "audit")
HTTP_PORTS = {"payment": ("CALLBACK_PORT", 8080), "notify": ("RECEIPTS_PORT", 8080)}


def instructions(svc: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (ROOT / "services" / svc / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("svc", SERVICES)
def test_image_is_multi_stage_slim_and_non_root(svc: str) -> None:
    ins = instructions(svc)
    froms = [args for word, args in ins if word == "FROM"]
    assert len(froms) >= 3  # uv, builder, runtime
    assert froms[-1].startswith("${PYTHON_IMAGE}") and "AS runtime" in froms[-1]
    args = dict(a.split("=", 1) for w, a in ins if w == "ARG" and "=" in a)
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", args["PYTHON_IMAGE"])
    runtime = ins[max(i for i, (w, _) in enumerate(ins) if w == "FROM") :]
    (user,) = [a for w, a in runtime if w == "USER"]
    assert user == "10001:10001"  # the chart's runAsUser/runAsGroup; numeric for runAsNonRoot
    assert any(w == "HEALTHCHECK" for w, _ in runtime)
    (entrypoint,) = [a for w, a in runtime if w == "ENTRYPOINT"]
    assert entrypoint == f'["python", "-m", "motcua_{svc}"]'
    # The runtime stage gets the virtualenv only, not the sources or the build tools.
    copies = [a for w, a in runtime if w == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv"]


@pytest.mark.parametrize("svc", SERVICES)
def test_image_holds_only_its_own_service(svc: str) -> None:
    text = " ".join(a for w, a in instructions(svc) if w in ("COPY", "RUN"))
    others = [o for o in SERVICES if o != svc]
    for other in others:
        assert f"services/{other}" not in text and f"motcua-{other}" not in text
    assert f"--package motcua-{svc}" in text and "--frozen" in text
    assert "--require-hashes" in text and "--no-dev" in text


@pytest.mark.parametrize("svc", SERVICES)
def test_image_settings_match_the_chart(svc: str) -> None:
    ins = instructions(svc)
    env = " ".join(a for w, a in ins if w == "ENV")
    prefix = f"MOTCUA_{svc.upper()}_"
    assert f"{prefix}BIND_HOST=0.0.0.0" in env
    assert f"{prefix}GRPC_PORT=50051" in env and f"{prefix}METRICS_PORT=9100" in env
    ports = {int(p) for w, a in ins if w == "EXPOSE" for p in a.split()}
    expected = {50051, 9100}
    if svc in HTTP_PORTS:
        setting, port = HTTP_PORTS[svc]
        assert f"{prefix}{setting}={port}" in env
        expected.add(port)
    assert ports == expected


def test_dockerignore_keeps_the_context_to_the_python_workspace() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # everything out, then only what the images need back in
    assert {line for line in lines if line.startswith("!")} == {
        "!pyproject.toml",
        "!uv.lock",
        "!packages/",
        "!services/",
    }
    for leftover in ("**/__pycache__", "**/.venv", "**/*.db", "**/.state"):
        assert leftover in lines
