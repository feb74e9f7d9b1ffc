"""deploy/: the Prometheus configuration, the alert rules and the Grafana dashboard.

promtool (Debian's ``prometheus`` package, installed by scripts/ensure-test-tools.sh) checks the
configuration and the rules and runs the rules' unit tests (tests/deploy/alerts_test.yml); the
rest checks that every expression names only series the gateway really exposes
(``aigw.gateway.monitoring.prometheus.SPECS``, with the text format's suffixes) and labels they
really carry.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from aigw.gateway.monitoring.metrics import RequestRecord
from aigw.gateway.monitoring.prometheus import SPECS, Metrics, render
from tests.deploy.prometheus_server import binary
from tests.deploy.promql import (
    exposed,
    grafana_to_promql,
    label_values_references,
    problems,
    references,
)

ROOT = Path(__file__).parents[2]
PROMETHEUS_YML = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ALERTS_YML = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERTS_TEST = Path(__file__).parent / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "aigw-dashboard.json"

REQUIRED_ALERTS = {
    "AigwHighErrorRate",
    "AigwUpstreamLatencyHigh",
    "AigwCircuitOpen",
    "AigwQuotaNearlySpent",
    "AigwGatewayDown",
    "AigwConfigSyncStale",
    "AigwLimitsStoreDown",
    "AigwLimitsFailingOpen",
}


def _promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *args], capture_output=True, text=True, timeout=60, cwd=cwd
    )


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS_YML.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _panels() -> list[dict[str, Any]]:
    found = []
    for panel in _dashboard()["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", ()))  # a collapsed row's
    return found


def _dashboard_exprs() -> list[str]:
    return [t["expr"] for p in _panels() for t in p.get("targets", ()) if t.get("expr")]


# --- promtool ------------------------------------------------------------------------------------


def test_promtool_accepts_the_configuration_and_finds_the_rules() -> None:
    result = _promtool("check", "config", str(PROMETHEUS_YML))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout + result.stderr


def test_promtool_accepts_the_alert_rules() -> None:
    result = _promtool("check", "rules", str(ALERTS_YML))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout + result.stderr


def test_every_alert_fires_on_its_trigger_and_not_on_its_near_miss() -> None:
    # The unit tests name every required alert, with the labels and annotations it renders.
    tested = set(re.findall(r"alertname: (\w+)", ALERTS_TEST.read_text()))
    assert REQUIRED_ALERTS <= tested
    result = _promtool("test", "rules", ALERTS_TEST.name, cwd=ALERTS_TEST.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_parses_every_dashboard_expression(tmp_path: Path) -> None:
    rules = [
        {"record": f"aigw:dashboard_expr_{i}", "expr": grafana_to_promql(expr)}
        for i, expr in enumerate(_dashboard_exprs())
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


# --- the configuration ---------------------------------------------------------------------------


def test_configuration_scrapes_every_component_at_its_default_port() -> None:
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    assert config["rule_files"] == ["alerts.yml"]  # relative to the configuration file
    assert (PROMETHEUS_YML.parent / "alerts.yml").exists()
    jobs = {
        job["job_name"]: [t for c in job["static_configs"] for t in c["targets"]]
        for job in config["scrape_configs"]
    }
    assert jobs["aigw-gateway"] == ["127.0.0.1:8080"]
    assert jobs["aigw-config-center"] == ["127.0.0.1:8001"]
    assert jobs["aigw-token-service"] == ["127.0.0.1:8002"]
    assert jobs["prometheus"] == ["127.0.0.1:9090"]
    # The jobs the alerts and the dashboard name exist.
    named = set(re.findall(r'job="([^"]+)"', ALERTS_YML.read_text() + DASHBOARD.read_text()))
    assert named and named <= jobs.keys()


# --- the alert rules -----------------------------------------------------------------------------


def test_the_required_alerts_exist_with_a_severity_and_their_annotations() -> None:
    rules = _rules()
    assert REQUIRED_ALERTS <= {rule["alert"] for rule in rules}
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_alert_rules_use_only_the_gateways_metrics_and_labels() -> None:
    found = []
    for rule in _rules():
        refs = references(rule["expr"])
        found += problems(rule["expr"], refs)
        # An annotation can only show labels the alert's series keep.
        shown = set()
        for text in rule["annotations"].values():
            shown |= set(re.findall(r"\$labels\.(\w+)", text))
        keeps = refs.grouping or (refs.labels | {"instance", "job"})
        if not shown <= keeps:
            found.append(f"{rule['alert']}: annotations use {shown - keeps}, not in {keeps}")
    assert found == []


def test_quota_alert_watches_the_refusals_the_gateway_counts() -> None:
    # No gauge of the quota left exists; the alert is built on the insufficient_quota refusals.
    [rule] = [r for r in _rules() if r["alert"] == "AigwQuotaNearlySpent"]
    assert 'gateway_policy_denials_total{reason="insufficient_quota"}' in rule["expr"]
    assert not any("quota" in name and SPECS[name].kind == "gauge" for name in SPECS)


# --- the dashboard -------------------------------------------------------------------------------


def test_dashboard_is_an_importable_grafana_dashboard() -> None:
    dashboard = _dashboard()
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    for name in ("namespace", "model"):
        assert variables[name]["type"] == "query" and variables[name]["includeAll"]
    panels = _panels()
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for y in range(grid["y"], grid["y"] + grid["h"]):
            for x in range(grid["x"], grid["x"] + grid["w"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}"


def test_dashboard_uses_only_the_gateways_metrics_and_labels() -> None:
    found = []
    for expr in _dashboard_exprs():
        found += problems(expr)
    for variable in _dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"]
            found += problems(query, label_values_references(query))
    assert found == []


def test_dashboard_shows_what_the_issue_asks_for() -> None:
    used = set().union(*(references(expr).metrics for expr in _dashboard_exprs()))
    for metric in (
        "gateway_requests_total",  # traffic by namespace and by status class
        "gateway_request_duration_seconds_bucket",  # latency percentiles
        "gateway_upstream_duration_seconds_bucket",
        "gateway_tokens_total",  # tokens by type
        "gateway_cost_usd_total",
        "gateway_requests_failed_total",  # errors by namespace, model and reason
        "gateway_policy_denials_total",
        "gateway_time_to_first_token_seconds_bucket",
        "gateway_overhead_seconds_bucket",
        "gateway_in_flight_requests",
        "gateway_circuit_state",
    ):
        assert metric in used, metric
    exprs = "\n".join(_dashboard_exprs())
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (le)" in exprs
    assert "sum by (status_class)" in exprs and "sum by (namespace)" in exprs
    assert "sum by (namespace, model, reason)" in exprs and "sum by (type)" in exprs
    assert "max by (target) (gateway_circuit_state" in exprs


# --- the checker itself --------------------------------------------------------------------------


def test_the_checker_catches_wrong_names_and_labels() -> None:
    assert references(
        'sum by (namespace) (rate(gateway_requests_total{status_class="5xx"}[5m])) > 0.1'
    ).metrics == {"gateway_requests_total"}
    assert problems('rate(gateway_request_total{model="m"}[5m])')  # misspelt
    assert problems("rate(gateway_requests[5m])")  # a counter without _total
    assert problems("gateway_request_duration_seconds")  # a histogram without a suffix
    assert problems("sum by (status) (rate(gateway_requests_total[5m]))")  # no such label
    assert problems("up == 0 or gateway_nonexistent > 1")
    overhead = "histogram_quantile(0.9, sum by (le) (rate(gateway_overhead_seconds_bucket[1m])))"
    assert not problems(overhead)


@pytest.mark.parametrize("key_label", [False, True])
def test_exposed_names_are_the_exposition_s(key_label: bool) -> None:
    # Feed every metric, then compare the names and labels the real exposition has with the
    # checker's table: the suffixes (counters' _total, histograms' _bucket/_sum/_count) and no
    # _created series.
    every_gauge = [
        (spec.name, tuple("x" for _ in spec.labels), 1.0)
        for spec in SPECS.values()
        if spec.kind == "gauge" or spec.name == "gateway_limits_fail_open"
    ]
    metrics = Metrics(None, lambda: every_gauge, key_label=key_label)
    ok = RequestRecord("1", "POST", "/v1/chat/completions", status=200, namespace="n", model="m")
    ok.provider, ok.key, ok.duration_ms, ok.ttft_ms, ok.stream_broken = "p", "sk-x", 9.0, 3.0, True
    ok.prompt_tokens, ok.completion_tokens, ok.cached_tokens, ok.cost_usd = 3, 4, 1, 0.5
    ok.tries = [("p", "p/a", 500, 0.001), ("q", "q/b", 200, 0.002)]
    denied = RequestRecord("2", "POST", "/v1/chat/completions", status=429, namespace="n")
    denied.error_code = "insufficient_quota"
    metrics.observe(ok)
    metrics.observe(denied)
    table = exposed()
    seen: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(
        render([metrics.snapshot()], key_label=key_label).decode()
    ):
        for sample in family.samples:
            seen.setdefault(sample.name, set()).update(sample.labels)
    assert seen.keys() == table.keys() - {"up"}
    for name, labels in seen.items():
        assert labels <= table[name], name


def test_the_monitoring_doc_lists_every_metric_and_alert() -> None:
    doc = (ROOT / "docs" / "monitoring.md").read_text()
    for spec in SPECS.values():
        shown = f"{spec.name}_total" if spec.kind == "counter" else spec.name
        assert f"`{shown}`" in doc, shown
    for rule in _rules():
        assert f"`{rule['alert']}`" in doc, rule["alert"]
