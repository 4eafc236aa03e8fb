"""The chart's alerts, unit-tested with promtool (issue 17).

The PrometheusRules rendered from helm/motcua-lib/templates/_monitoring.tpl, with values-dev.yaml
and with values-prod.yaml and the cluster serving monitoring.coreos.com/v1 (values.yaml alone
does not render: its schema wants e.g. global.jwt.publicKeySecret), go into one rules file.
`promtool check rules` must accept it, and `promtool test rules` runs each
tests/helm/promtool/<alert>.test.yaml against it. Every alert has such a file: it fires on the
series the alert is about, only after its `for:`, for every service that has the alert, and
stays silent on healthy series (`exp_alerts: []`). The test files expect the runbook_url of
values.yaml's runbookBaseUrl (docs/runbooks/<page>.md); for values-prod.yaml they are rewritten
to its base. Each file must also fail against the rules without its alert.

promtool comes from `make tools` (go install github.com/prometheus/prometheus/cmd/promtool at
PROMTOOL_VERSION in the Makefile); make exports its path as $PROMTOOL. Without it these tests
skip locally and fail in CI (CI set).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_support import DEV, MONITORING_API, PROD, ROOT, Doc, of_kind, render

TESTS = Path(__file__).with_name("promtool")
TEST_FILES = sorted(TESTS.glob("*.test.yaml"))
RULES = "rules.yaml"
DEFAULT_RUNBOOKS = "docs/runbooks"
VALUES = (DEV, PROD)
DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def promtool_version() -> str:
    found = re.search(r"^PROMTOOL_VERSION \?= (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    return found.group(1) if found else "?"


def find_promtool() -> str | None:
    """$PROMTOOL (set by make), then PATH, then $GOPATH/bin (default ~/go/bin)."""
    gopath = os.environ.get("GOPATH") or str(Path.home() / "go")
    for candidate in (
        os.environ.get("PROMTOOL"),
        shutil.which("promtool"),
        str(Path(gopath.split(os.pathsep)[0]) / "bin" / "promtool"),
    ):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="session")
def promtool() -> str:
    found = find_promtool()
    if found:
        return found
    reason = (
        "promtool was found neither in $PROMTOOL, on PATH nor in $GOPATH/bin; install it with "
        "`make tools` (go install github.com/prometheus/prometheus/cmd/promtool@"
        f"{promtool_version()})"
    )
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def run_promtool(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=120
    )


def seconds(duration: str) -> float:
    """A Prometheus duration (1h30m, 10m, 90s) in seconds."""
    parts = DURATION.findall(duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a duration: {duration}"
    return sum(int(n) * SECONDS[u] for n, u in parts)


def rule_groups(docs: list[Doc]) -> list[Doc]:
    return [g for rule in of_kind(docs, "PrometheusRule") for g in rule["spec"]["groups"]]


def alerts_of(groups: list[Doc]) -> list[Doc]:
    return [r for g in groups for r in g["rules"] if "alert" in r]


def runbook_base(groups: list[Doc]) -> str:
    (base,) = {r["annotations"]["runbook_url"].rsplit("/", 1)[0] for r in alerts_of(groups)}
    return str(base)


@pytest.fixture(scope="module", params=VALUES)
def rendered(
    request: pytest.FixtureRequest,
    helm: str,
    umbrella: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, list[Doc]]:
    """The chart's rule groups with these values, in <dir>/rules.yaml; returns (dir, groups)."""
    groups = rule_groups(render(helm, umbrella, request.param, api=(MONITORING_API,)))
    assert alerts_of(groups), f"no alerts rendered with {request.param}"
    out = tmp_path_factory.mktemp(f"promtool-{Path(request.param).stem}")
    (out / RULES).write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return out, groups


def load_test(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def checks(test_file: dict[str, Any]) -> list[tuple[str, Doc]]:
    """Every alert_rule_test of a test file, with the name of its test."""
    return [(t["name"], c) for t in test_file["tests"] for c in t.get("alert_rule_test", [])]


def copy_test(path: Path, out: Path, base: str) -> Path:
    """The test file next to out/rules.yaml, its expected runbook_url on this render's base."""
    test_file = load_test(path)
    test_file["rule_files"] = [RULES]
    for _, check in checks(test_file):
        for expected in check.get("exp_alerts") or []:
            annotations = expected.get("exp_annotations", {})
            if "runbook_url" in annotations:
                url = annotations["runbook_url"]
                assert url.startswith(DEFAULT_RUNBOOKS + "/"), f"{path.name}: {url}"
                annotations["runbook_url"] = base + url.removeprefix(DEFAULT_RUNBOOKS)
    copy = out / path.name
    copy.write_text(yaml.safe_dump(test_file, sort_keys=False))
    return copy


def test_promtool_accepts_the_rendered_rules(
    promtool: str, rendered: tuple[Path, list[Doc]]
) -> None:
    out, _ = rendered
    result = run_promtool(promtool, "check", "rules", "--lint=all", "--lint-fatal", RULES, cwd=out)
    assert result.returncode == 0, f"promtool check rules:\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize("path", TEST_FILES, ids=[p.name.split(".")[0] for p in TEST_FILES])
def test_alert_fires_and_stays_silent_as_its_tests_say(
    promtool: str, rendered: tuple[Path, list[Doc]], path: Path
) -> None:
    out, groups = rendered
    copy = copy_test(path, out, runbook_base(groups))
    result = run_promtool(promtool, "test", "rules", copy.name, cwd=out)
    assert result.returncode == 0, (
        f"promtool test rules {path.name}:\n{result.stdout}\n{result.stderr}"
    )


@pytest.mark.parametrize("path", TEST_FILES, ids=[p.name.split(".")[0] for p in TEST_FILES])
def test_each_test_file_fails_without_its_alert(
    promtool: str, rendered: tuple[Path, list[Doc]], path: Path, tmp_path: Path
) -> None:
    """The firing checks are real: against the rules without this alert, the file fails."""
    _, groups = rendered
    name = path.name.removesuffix(".test.yaml")
    without = [{**g, "rules": [r for r in g["rules"] if r.get("alert") != name]} for g in groups]
    (tmp_path / RULES).write_text(yaml.safe_dump({"groups": without}, sort_keys=False))
    copy = copy_test(path, tmp_path, runbook_base(groups))
    result = run_promtool(promtool, "test", "rules", copy.name, cwd=tmp_path)
    assert result.returncode != 0, f"{path.name} passes without {name}:\n{result.stdout}"


def test_every_alert_has_a_test_file_that_covers_it(rendered: tuple[Path, list[Doc]]) -> None:
    """One file per alert; in it the alert fires for every service that has it, a firing check
    after its `for:` is preceded by a silent one less than `for:` earlier (pending), and a
    test of healthy series expects silence throughout. A test file checks only its own alert."""
    _, groups = rendered
    rules = alerts_of(groups)
    files, alerts = (
        {p.name.removesuffix(".test.yaml") for p in TEST_FILES},
        {r["alert"] for r in rules},
    )
    assert files == alerts, (
        f"alerts without tests/helm/promtool/<alert>.test.yaml: {sorted(alerts - files)}; "
        f"test files of no alert: {sorted(files - alerts)}"
    )
    for rule in rules:
        name, svc = rule["alert"], rule["labels"]["service"]
        path = TESTS / f"{name}.test.yaml"
        test_file = load_test(path)
        assert test_file.get("rule_files") == [RULES], f"{path.name}: rule_files"
        found = checks(test_file)
        assert {c["alertname"] for _, c in found} == {name}, f"{path.name} checks other alerts"
        firing = [
            (test, seconds(c["eval_time"]))
            for test, c in found
            if any(a.get("exp_labels", {}).get("service") == svc for a in c.get("exp_alerts") or [])
        ]
        assert firing, f"{path.name}: {name} never fires for {svc}"
        assert any(
            all(not c.get("exp_alerts") for c in t.get("alert_rule_test", []))
            for t in test_file["tests"]
        ), f"{path.name}: no test of healthy series (every check exp_alerts: [])"
        if "for" in rule:
            hold = seconds(rule["for"])
            silent = [
                (test, seconds(c["eval_time"])) for test, c in found if not c.get("exp_alerts")
            ]
            assert any(
                t >= hold and any(s == test and 0 < t - u < hold for s, u in silent)
                for test, t in firing
            ), f"{path.name}: no check that {name} is still pending shortly before it fires"
