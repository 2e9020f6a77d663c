"""deploy/: the Prometheus alerts pass `promtool check rules` and their unit tests, every alert is
tested firing and not firing, and every metric the alerts and the Grafana dashboard query is one
our processes expose, with label values they use."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
import yaml

from ingest.metrics import OUTCOMES, IntakeMetrics
from shared.settings import Settings
from worker.gauges import QUEUES, BrokerGauges, DatabaseGauges
from worker.metrics import SweeperMetrics, WorkerMetrics

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "stripe-ingest.json"

# Label values the queries may name, as the code sets them.
LABEL_VALUES = {
    "outcome": set(OUTCOMES) | {"processed", "ignored", "dead", "ok", "failed"},
    "queue": set(QUEUES),
    "since": {"created", "received", "enqueued"},
    "job": {"stripe-ingest-web", "stripe-ingest-worker", "stripe-ingest-sweeper"},
}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
GROUPING = r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"


def promtool() -> str:
    found = shutil.which("promtool") or shutil.which(
        "promtool", path=str(Path(sys.executable).parent)
    )
    if found is None:
        pytest.fail("promtool is missing: `make test` installs it (scripts/promtool.sh)")
    return found


def _rules() -> list[dict[str, Any]]:
    data = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    def walk(panels: Iterable[dict[str, Any]]) -> Iterator[str]:
        for panel in panels:
            for target in panel.get("targets", []):
                yield target["expr"]
            yield from walk(panel.get("panels", []))

    return list(walk(json.loads(DASHBOARD.read_text())["panels"]))


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not its functions, keywords or labels)."""
    text = re.sub(r"\$\{[^}]*\}|\$\w+", "", expr)  # Grafana's variables
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(GROUPING, "", text)
    # Durations (5m) and numbers are no names: a name does not follow a word character.
    names = set(re.findall(r"(?<![\w:.])([A-Za-z_:][A-Za-z0-9_:]*)(?![\w:]|\s*\()", text))
    return names - KEYWORDS


def label_values(expr: str) -> set[tuple[str, str]]:
    """(label, value) of every `label="value"` or `label=~"a|b"` matcher (regexes split on |)."""
    found = set()
    for label, op, value in re.findall(r'(\w+)\s*(=~|=)\s*"([^"]*)"', expr):
        parts = value.split("|") if op == "=~" else [value]
        found |= {(label, part) for part in parts if ".*" not in part}
    return found


def _families(collector: Any) -> list[Any]:
    return list(collector.collect())


def exposed(settings: Settings) -> set[str]:
    """Every sample name our processes expose, from the metrics objects themselves and from the
    gauges read from the test's PostgreSQL and Redis; plus Prometheus's own `up`."""
    registry = prometheus_client.CollectorRegistry()
    WorkerMetrics(registry)
    SweeperMetrics(registry)
    families = [
        *_families(IntakeMetrics().registry),
        *_families(registry),
        *_families(DatabaseGauges(settings.database_url)),
        *_families(BrokerGauges(settings.redis_url, settings.redis_namespace)),
    ]
    names = {"up"}
    for family in families:
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "count", "sum")}
        else:
            names.add(family.name)
    return names


def test_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    tool = promtool()
    check = subprocess.run(
        [tool, "check", "rules", "alerts.yml"],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in check.stdout
    config = subprocess.run(
        [tool, "check", "config", "prometheus.example.yml"],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert config.returncode == 0, config.stdout + config.stderr
    tests = subprocess.run(
        [tool, "test", "rules", "alerts_test.yml"],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "SUCCESS" in tests.stdout


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    data = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())
    firing: set[str] = set()
    quiet: set[str] = set()
    for test in data["tests"]:
        for case in test["alert_rule_test"]:
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    alerts = {rule["alert"] for rule in _rules()}
    assert alerts == firing, "alerts without a firing test, or tests of unknown alerts"
    assert alerts == quiet, "alerts without a not-firing test"


def test_alerts_name_a_severity_a_summary_and_a_runbook_entry() -> None:
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    headings = {line[4:].strip() for line in runbook.splitlines() if line.startswith("### ")}
    for rule in _rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["runbook_url"] == f"docs/runbook.md#{rule['alert'].lower()}"
        assert rule["alert"] in headings, f"docs/runbook.md has no ### {rule['alert']}"


def test_the_expression_parser_finds_metrics_not_functions_labels_or_keywords() -> None:
    expr = (
        'sum by (outcome) (rate(stripe_webhook_requests_total{outcome=~"a|b"}[5m])) / on() '
        'max(stripe_events_backlog offset 5m) and absent(up{job="x"} == 1) or vector(0)'
        " > bool $__rate_interval"
    )
    assert metric_names(expr) == {"stripe_webhook_requests_total", "stripe_events_backlog", "up"}
    assert label_values(expr) == {("outcome", "a"), ("outcome", "b"), ("job", "x")}


def test_every_metric_queried_by_the_alerts_and_the_dashboard_is_exposed(
    settings: Settings,
) -> None:
    rule_exprs = [rule["expr"] for rule in _rules()]
    dashboard_exprs = _dashboard_exprs()
    known = exposed(settings)
    for expr in rule_exprs + dashboard_exprs:
        missing = metric_names(expr) - known
        assert not missing, f"{sorted(missing)} in {expr!r} is not a metric of ours"
        for label, value in label_values(expr):
            assert label in LABEL_VALUES, (label, expr)
            assert value in LABEL_VALUES[label], f"{label}={value!r} in {expr!r}"
    # The dashboard shows every metric an alert fires on.
    on_dashboard = set().union(*(metric_names(e) for e in dashboard_exprs))
    alerted = set().union(*(metric_names(e) for e in rule_exprs))
    assert alerted <= on_dashboard, sorted(alerted - on_dashboard)


def test_the_dashboard_is_importable_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] == "stripe-ingest"
    (source,) = dashboard["__inputs"]
    assert source["pluginId"] == "prometheus"
    ids = []
    for panel in dashboard["panels"]:
        ids.append(panel["id"])
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${" + source["name"] + "}", panel["title"]
            assert panel["targets"], panel["title"]
    assert len(ids) == len(set(ids))
