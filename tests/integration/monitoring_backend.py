"""A real Prometheus server and a real OpenTelemetry Collector for the alerting tests.

:class:`Prometheus` is the server built from its Go module (``infra/prometheus.sh``), scraping
static loopback targets every second and evaluating the chart's rules every second;
:class:`LagCollector` is the Collector of ``infra/otelcol`` (kafkametrics receiver, Prometheus
exporter), which reports every consumer group's lag as the broker sees it, also for a service
that is down. Both run on free 127.0.0.1 ports and are stopped by PID.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx
import yaml

from go_backend import GoBackend
from harness import ROOT

DASHBOARD = ROOT / "helm" / "motcua" / "dashboards" / "motcua-overview.json"

SCRAPE_SECONDS = 1


@dataclass(frozen=True)
class Target:
    """A scrape job: ``job`` and ``labels`` are what the chart's rules and dashboard select."""

    job: str
    address: str
    labels: dict[str, str]


class Prometheus(GoBackend):
    """One Prometheus server; set ``targets`` and ``rules`` before :meth:`start`."""

    name: ClassVar[str] = "prometheus"
    script: ClassVar[str] = "prometheus.sh"
    port_names: ClassVar[tuple[str, ...]] = ("web",)

    def __init__(self, work_dir: Path, targets: list[Target], rules: dict[str, Any]) -> None:
        super().__init__(work_dir)
        self.targets = targets
        self.rules = rules

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['web']}"

    def command(self, binary: Path) -> list[str]:
        (self.work_dir / "rules.yaml").write_text(yaml.safe_dump(self.rules, sort_keys=False))
        config = {
            "global": {
                "scrape_interval": f"{SCRAPE_SECONDS}s",
                "scrape_timeout": f"{SCRAPE_SECONDS}s",
                "evaluation_interval": f"{SCRAPE_SECONDS}s",
            },
            "rule_files": ["rules.yaml"],
            "scrape_configs": [
                {
                    "job_name": t.job,
                    "static_configs": [{"targets": [t.address], "labels": t.labels}],
                }
                for t in self.targets
            ],
        }
        (self.work_dir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        return [
            str(binary),
            f"--config.file={self.work_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.work_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.ports['web']}",
            "--log.level=warn",
        ]

    def ready(self) -> bool:
        return httpx.get(f"{self.url}/-/ready", timeout=1).status_code == httpx.codes.OK

    def _api(self, path: str, **params: Any) -> Any:
        resp = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        resp.raise_for_status()
        body = resp.json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result (vectors: one item per series)."""
        data = self._api("query", query=expr)
        result = data["result"]
        return result if data["resultType"] in ("vector", "matrix") else [{"value": result}]

    def alerts(self) -> list[dict[str, Any]]:
        """The active alerts (pending or firing) with their labels, as /api/v1/alerts has them."""
        return list(self._api("alerts")["alerts"])

    def rule_names(self) -> set[str]:
        groups = self._api("rules", type="alert")["groups"]
        return {r["name"] for g in groups for r in g["rules"]}

    def targets_up(self) -> dict[str, str]:
        active = self._api("targets", state="active")["activeTargets"]
        return {t["labels"]["job"]: t["health"] for t in active}


class LagCollector(GoBackend):
    """The lag Collector, reading ``bootstrap``'s consumer groups that match ``group_match``."""

    name: ClassVar[str] = "otelcol"
    script: ClassVar[str] = "otelcol.sh"
    port_names: ClassVar[tuple[str, ...]] = ("metrics",)

    def __init__(self, work_dir: Path, bootstrap: str, group_match: str = "^motcua-") -> None:
        super().__init__(work_dir)
        self.bootstrap = bootstrap
        self.group_match = group_match

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.ports['metrics']}"

    def command(self, binary: Path) -> list[str]:
        config = {
            "receivers": {
                "kafkametrics": {
                    "brokers": [self.bootstrap],
                    "scrapers": ["consumers"],
                    "collection_interval": f"{SCRAPE_SECONDS}s",
                    "group_match": self.group_match,
                    "topic_match": r"^motcua\.[a-z]+\.v[0-9]+$",
                    "metadata": {"refresh_interval": "2s"},
                }
            },
            "exporters": {"prometheus": {"endpoint": self.address}},
            "service": {
                "telemetry": {"metrics": {"level": "none"}},
                "pipelines": {
                    "metrics": {"receivers": ["kafkametrics"], "exporters": ["prometheus"]}
                },
            },
        }
        path = self.work_dir / "otelcol.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return [str(binary), f"--config=file:{path}"]

    def ready(self) -> bool:
        return httpx.get(f"http://{self.address}/metrics", timeout=1).status_code == httpx.codes.OK


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the chart's Grafana dashboard (its panels' targets)."""
    exprs: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                exprs.append(node["expr"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(DASHBOARD.read_text()))
    return exprs
