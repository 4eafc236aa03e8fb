"""The service image (Dockerfile with ARG SERVICE, docker/, .dockerignore), read as text, and
its entrypoint run for real.

No Docker engine runs here, so these check what the chart and a release rely on: one recipe
for the four services, a slim Python base pinned by digest, only the chosen service's code, a
numeric non-root user that matches the pods' runAsUser, every package (build tools included)
installed from a pinned, hashed list, no pip in the final image, and an entrypoint that gives a
container the right defaults.
"""

from __future__ import annotations

import http.server
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("dossier", "notify", "payment", "audit")
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def test_one_dockerfile_for_every_service() -> None:
    """Found item 10 / deliver 8: four near-identical Dockerfiles, one per service."""
    assert not list((ROOT / "services").glob("*/Dockerfile"))
    builder, runtime = stages()
    for stage in (builder, runtime):
        assert ("ARG", "SERVICE") in stage  # an ARG before FROM is not seen inside a stage
    text = " ".join(a for w, a in builder if w in ("COPY", "RUN"))
    assert "services/${SERVICE}/" in text and '"motcua-${SERVICE}"' in text
    for svc in SERVICES:
        assert f"services/{svc}" not in text and f"motcua-{svc}" not in text


def test_base_image_is_pinned_by_digest() -> None:
    """Found item 10: base images pinned by tag, which moves."""
    args = dict(a.split("=", 1) for w, a in instructions() if w == "ARG" and "=" in a)
    image = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?@sha256:[0-9a-f]{64}", image), image
    assert [a for w, a in instructions() if w == "FROM"] == [
        "${PYTHON_IMAGE} AS builder",
        "${PYTHON_IMAGE} AS runtime",
    ]


def test_build_tools_are_pinned_with_hashes() -> None:
    """Found item 10: hatchling was fetched at build time, unpinned (pip's build isolation)."""
    builder, _ = stages()
    runs = [a for w, a in builder if w == "RUN"]
    text = " ".join(runs)
    assert "--require-hashes --requirement /tmp/build-requirements.txt" in text
    assert "--no-build-isolation" in text  # the wheels build with the pinned hatchling
    assert "--require-hashes" in text.split("uv pip install", 1)[1]
    assert "--frozen" in text and "--no-dev" in text
    reqs = (ROOT / "docker" / "build-requirements.txt").read_text()
    pins = re.findall(r"^([a-z0-9-]+)==(\S+) \\$", reqs, flags=re.M)
    names = {name for name, _ in pins}
    assert {"uv", "hatchling", "packaging", "pathspec", "pluggy", "trove-classifiers"} <= names
    for block in re.split(r"\n(?=[a-z0-9-]+==)", reqs.split("\n", 2)[2]):
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", block), block
    # The workspace packages build with the hatchling that is pinned.
    workspace = [*ROOT.glob("packages/*/pyproject.toml"), *ROOT.glob("services/*/pyproject.toml")]
    for pyproject in workspace:
        assert 'build-backend = "hatchling.build"' in pyproject.read_text(), pyproject


def test_runtime_has_no_pip_no_sources_and_a_numeric_user() -> None:
    _, runtime = stages()
    runs = " ".join(a for w, a in runtime if w == "RUN")
    assert "python -m pip uninstall --yes --quiet pip setuptools wheel" in runs
    assert '! python -c "import pip"' in runs  # the build fails if pip is still there
    copies = [a for w, a in runtime if w == "COPY"]
    assert copies == [
        "--from=builder /opt/venv /opt/venv",
        "docker/entrypoint.sh /usr/local/bin/motcua-entrypoint",
    ]
    (user,) = [a for w, a in runtime if w == "USER"]
    assert user == "10001:10001"  # the chart's runAsUser/runAsGroup; numeric for runAsNonRoot
    assert ("ENTRYPOINT", '["motcua-entrypoint"]') in runtime
    assert ("CMD", '["serve"]') in runtime
    env = " ".join(a for w, a in runtime if w == "ENV")
    assert "MOTCUA_SERVICE=${SERVICE}" in env
    ports = {int(p) for w, a in runtime if w == "EXPOSE" for p in a.split()}
    assert ports == {50051, 9100, 8080}
    (health,) = [a for w, a in runtime if w == "HEALTHCHECK"]
    assert health.endswith('CMD ["motcua-entrypoint", "healthcheck"]')


def test_dockerignore_keeps_the_context_to_the_python_workspace() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # everything out, then only what the image needs back in
    assert {line for line in lines if line.startswith("!")} == {
        "!pyproject.toml",
        "!uv.lock",
        "!packages/",
        "!services/",
        "!docker/",
    }
    for leftover in ("**/__pycache__", "**/.venv", "**/*.db", "**/.state"):
        assert leftover in lines


# -- the entrypoint, run for real -----------------------------------------------------------


def _recorder(tmp_path: Path) -> Path:
    """A `python` first on PATH that records its arguments and the MOTCUA_ environment, then
    runs the real interpreter with them: the entrypoint's exec is what is checked."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    record = tmp_path / "record.txt"
    (bindir / "python").write_text(
        "#!/bin/sh\n"
        f'{{ printf "%s\\n" "$*"; env | grep ^MOTCUA_ | sort; }} > "{record}"\n'
        f'exec "{sys.executable}" "$@"\n'
    )
    (bindir / "python").chmod(0o755)
    return bindir


def _run(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[int, list[str]]:
    bindir = _recorder(tmp_path)
    base = {k: v for k, v in os.environ.items() if not k.startswith("MOTCUA_")}
    base["PATH"] = f"{bindir}:{Path(sys.executable).parent}:{base['PATH']}"
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    record = tmp_path / "record.txt"
    return result.returncode, record.read_text().splitlines() if record.exists() else []


@pytest.mark.parametrize("svc", SERVICES)
def test_entrypoint_runs_the_service_with_container_defaults(tmp_path: Path, svc: str) -> None:
    code, lines = _run(tmp_path, {"MOTCUA_SERVICE": svc}, "--help")
    assert code == 0
    assert lines[0] == f"-m motcua_{svc} --help"
    prefix = f"MOTCUA_{svc.upper()}_"
    env = set(lines[1:])
    assert {f"{prefix}BIND_HOST=0.0.0.0", f"{prefix}GRPC_PORT=50051"} <= env
    assert f"{prefix}METRICS_PORT=9100" in env
    http = {"payment": "CALLBACK_PORT", "notify": "RECEIPTS_PORT"}.get(svc)
    assert (f"{prefix}{http}=8080" in env) if http else not any("8080" in e for e in env)


def test_entrypoint_keeps_what_the_environment_sets(tmp_path: Path) -> None:
    env = {"MOTCUA_SERVICE": "payment", "MOTCUA_PAYMENT_BIND_HOST": "127.0.0.1"}
    code, lines = _run(tmp_path, {**env, "MOTCUA_PAYMENT_CALLBACK_PORT": "9000"}, "--help")
    assert code == 0
    assert {"MOTCUA_PAYMENT_BIND_HOST=127.0.0.1", "MOTCUA_PAYMENT_CALLBACK_PORT=9000"} <= set(
        lines[1:]
    )


def test_entrypoint_without_a_service_says_so(tmp_path: Path) -> None:
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), "serve"],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0 and "MOTCUA_SERVICE is not set" in result.stderr


@pytest.fixture
def healthz() -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_healthcheck_asks_the_metrics_port(tmp_path: Path, healthz: int) -> None:
    env = {"MOTCUA_SERVICE": "audit", "MOTCUA_AUDIT_METRICS_PORT": str(healthz)}
    code, lines = _run(tmp_path, env, "healthcheck")
    assert code == 0 and lines[0].startswith("-c ")
    # Nothing listening on the port: unhealthy.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    code, _ = _run(tmp_path, {**env, "MOTCUA_AUDIT_METRICS_PORT": str(free)}, "healthcheck")
    assert code != 0
