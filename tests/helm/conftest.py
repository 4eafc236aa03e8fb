"""Fixtures shared by the chart tests: the helm binary and a packaged copy of helm/; helpers in
chart_support.py."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HELM_SRC = ROOT / "helm"


def _register_support() -> None:
    """Makes tests/helm/chart_support.py importable as `chart_support` for the test modules."""
    if "chart_support" in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(
        "chart_support", Path(__file__).with_name("chart_support.py")
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["chart_support"] = module
    spec.loader.exec_module(module)


_register_support()


def find_helm() -> str:
    """$HELM (set by make), then PATH, then /root/go/bin/helm; fail rather than skip."""
    for candidate in (os.environ.get("HELM"), shutil.which("helm"), "/root/go/bin/helm"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        "the helm binary was found neither in $HELM, on PATH nor at /root/go/bin/helm; install "
        "it with `make tools` (go install helm.sh/helm/v3/cmd/helm@v3.22.0)",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def helm() -> str:
    return find_helm()


def copy_helm_tree(dest: Path) -> Path:
    """A copy of helm/ as a fresh clone has it (no build output); tests never write into helm/."""
    shutil.copytree(
        HELM_SRC, dest, ignore=shutil.ignore_patterns("*.tgz", "Chart.lock", "__pycache__")
    )
    return dest


@pytest.fixture(scope="session")
def umbrella(helm: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of helm/ with motcua-lib packaged into every chart; returns the umbrella chart."""
    dest = copy_helm_tree(tmp_path_factory.mktemp("charts") / "helm")
    result = subprocess.run(
        ["bash", str(dest / "build-deps.sh")],
        env={**os.environ, "HELM": helm},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"helm/build-deps.sh failed:\n{result.stdout}\n{result.stderr}"
    return dest / "motcua"


@pytest.fixture(scope="session")
def helm_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pristine copy of helm/ (not yet packaged), for running helm/check.sh on."""
    return copy_helm_tree(tmp_path_factory.mktemp("check") / "helm")
