"""A real Prometheus scraping a real two-worker gateway and the token service.

The test sends a known number of requests over many connections (so both gateway workers
answer some), waits for a scrape that started after every worker had flushed its counts to the
metrics directory, and asks Prometheus itself: the PromQL answers must be exactly what was sent.
The alert rules of deploy/ are loaded too, and must evaluate without error against the live
series, as must every expression of the Grafana dashboard.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson

from aigw.gateway.core.app import METRICS_WRITE_SECONDS
from tests.deploy.prometheus_server import Prometheus, prometheus
from tests.deploy.promql import grafana_to_promql
from tests.helpers import Process, aigw, free_port, gateway, mock_upstream, new_key_entry

ROOT = Path(__file__).parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "aigw-dashboard.json"

METRICS_TOKEN = "metrics-scrape-token-for-the-test"
SUCCESSES_A = 37
FORBIDDEN_B = 3  # 403 model_not_allowed (namespace B's policy)
UNKNOWN_B = 2  # 404 model_not_found
CONNECTIONS = 8


def _document(mock: str, entry_a: dict[str, Any], entry_b: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": 1,
        "providers": [{"name": "mock", "base_url": f"{mock}/v1", "api_key": "sk-upstream"}],
        "models": [
            {"name": "chat-a", "targets": [{"provider": "mock", "model": "gpt-4o-mini"}]},
            {"name": "chat-b", "targets": [{"provider": "mock", "model": "gpt-4o"}]},
        ],
        "namespaces": [
            {"name": "team-a", "keys": [entry_a]},
            {
                "name": "team-b",
                "policy": {"models": {"allow": ["chat-b"], "deny": []}},
                "keys": [entry_b],
            },
        ],
    }


def _send(base: str, calls: list[tuple[str, str]]) -> Counter[int]:
    """POST each (key, model) chat request on a fresh connection, ``CONNECTIONS`` at a time."""
    local = threading.local()

    def one(call: tuple[str, str]) -> int:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=base, timeout=30)
        key, model = call
        response = local.client.post(
            "/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
            # A new connection each time: granian's workers take turns accepting them.
            headers={"authorization": f"Bearer {key}", "connection": "close"},
        )
        return response.status_code

    with ThreadPoolExecutor(CONNECTIONS) as pool:
        return Counter(pool.map(one, calls))


def _worker_request_counts(directory: Path) -> list[float]:
    counts = []
    for path in sorted(directory.glob("worker-*.json")):
        snapshot = orjson.loads(path.read_bytes())
        counts.append(
            sum(value for name, _, value in snapshot["counters"] if name == "gateway_requests")
        )
    return counts


def test_prometheus_counts_exactly_the_requests_of_every_worker(tmp_path: Path) -> None:
    key_a, entry_a = new_key_entry("a")
    key_b, entry_b = new_key_entry("b")
    metrics_dir = tmp_path / "metrics"
    env = {"AIGW_METRICS_DIR": str(metrics_dir), "AIGW_METRICS_TOKEN": METRICS_TOKEN}
    tokens_port = free_port()
    tokens = Process(
        aigw("token-service", "--host", "127.0.0.1", "--port", str(tokens_port)),
        tmp_path / "token-service.log",
        {"AIGW_METRICS_TOKEN": METRICS_TOKEN},
    )
    try:
        tokens.wait_http(f"http://127.0.0.1:{tokens_port}/healthz", timeout=60)
        with (
            mock_upstream(tmp_path) as mock,
            gateway(tmp_path, _document(mock, entry_a, entry_b), workers=2, env=env) as base,
        ):
            # The scrape needs the token: without it, 401 (and a scrape is never a request).
            assert httpx.get(f"{base}/metrics").status_code == 401
            assert httpx.get(f"http://127.0.0.1:{tokens_port}/metrics").status_code == 401
            bearer = {"type": "Bearer", "credentials": METRICS_TOKEN}
            scrape = [
                {
                    "job_name": "aigw-gateway",
                    "authorization": bearer,
                    "static_configs": [{"targets": [base.removeprefix("http://")]}],
                },
                {
                    "job_name": "aigw-token-service",
                    "authorization": bearer,
                    "static_configs": [{"targets": [f"127.0.0.1:{tokens_port}"]}],
                },
            ]
            with prometheus(tmp_path, scrape, [str(ALERTS)]) as prom:
                _check_gateway(prom, base, metrics_dir, key_a, key_b)
                _check_token_service(prom, tokens_port)
                _check_rules_and_dashboard(prom)
    finally:
        tokens.stop()


def _check_gateway(prom: Prometheus, base: str, metrics_dir: Path, key_a: str, key_b: str) -> None:
    calls = (
        [(key_a, "chat-a")] * SUCCESSES_A
        + [(key_b, "chat-a")] * FORBIDDEN_B
        + [(key_b, "no-such-model")] * UNKNOWN_B
    )
    statuses = _send(base, calls)
    assert statuses == {200: SUCCESSES_A, 403: FORBIDDEN_B, 404: UNKNOWN_B}
    sent = time.time()
    # Every worker writes its counts at least every METRICS_WRITE_SECONDS: a scrape that starts
    # later than that (plus a margin) sees all of them, whichever worker answers it.
    prom.wait_for_scrape_after("aigw-gateway", sent + METRICS_WRITE_SECONDS + 1.0)

    per_worker = _worker_request_counts(metrics_dir)
    assert len(per_worker) == 2 and all(per_worker), per_worker  # both workers answered some
    assert sum(per_worker) == SUCCESSES_A + FORBIDDEN_B + UNKNOWN_B

    by_class = prom.vector(
        "sum by (namespace, status_class) (gateway_requests_total)", "namespace", "status_class"
    )
    assert by_class == {
        ("team-a", "2xx"): SUCCESSES_A,
        ("team-b", "4xx"): FORBIDDEN_B + UNKNOWN_B,
    }
    assert prom.vector(
        "sum by (namespace, model) (gateway_requests_success_total)", "namespace", "model"
    ) == {("team-a", "chat-a"): SUCCESSES_A}
    assert prom.vector(
        "sum by (model, reason) (gateway_requests_failed_total)", "model", "reason"
    ) == {
        ("chat-a", "model_not_allowed"): FORBIDDEN_B,
        ("", "model_not_found"): UNKNOWN_B,
    }
    assert prom.vector(
        "sum by (namespace, reason) (gateway_policy_denials_total)", "namespace", "reason"
    ) == {("team-b", "model_not_allowed"): FORBIDDEN_B}
    total = SUCCESSES_A + FORBIDDEN_B + UNKNOWN_B
    assert prom.vector("sum(gateway_request_duration_seconds_count)") == {(): total}
    assert prom.vector(
        "sum by (target, status_class) (gateway_upstream_requests_total)", "target", "status_class"
    ) == {("mock/gpt-4o-mini", "2xx"): SUCCESSES_A}
    assert prom.vector("sum(gateway_overhead_seconds_count)") == {(): SUCCESSES_A}
    tokens = prom.vector("sum by (type) (gateway_tokens_total)", "type")
    assert tokens.keys() >= {("prompt",), ("completion",)} and all(tokens.values())
    assert prom.vector("max(gateway_workers)") == {(): 2}
    assert prom.vector('max(gateway_circuit_state{target="mock/gpt-4o-mini"})') == {(): 0}

    # Later scrapes (another worker answering, files rewritten) count nothing twice.
    prom.wait_for_scrape_after("aigw-gateway", time.time() + 1.5)
    assert prom.vector(
        "sum by (namespace, status_class) (gateway_requests_total)", "namespace", "status_class"
    ) == {("team-a", "2xx"): SUCCESSES_A, ("team-b", "4xx"): FORBIDDEN_B + UNKNOWN_B}


def _check_token_service(prom: Prometheus, port: int) -> None:
    url = f"http://127.0.0.1:{port}/v1/tokens/count"
    with httpx.Client(timeout=30) as client:
        for _ in range(3):
            answer = client.post(url, json={"model": "gpt-4o", "prompt": "hello world"})
            assert answer.json()["tokens"] == 2
        assert client.post(url, json={"model": "gpt-4"}).status_code == 422
    prom.wait_for_scrape_after("aigw-token-service", time.time() + 0.1)
    assert prom.vector(
        "sum by (encoding, status) (token_service_requests_total)", "encoding", "status"
    ) == {("o200k_base", "200"): 3, ("none", "422"): 1}
    assert prom.vector("sum by (encoding) (token_service_tokens_total)", "encoding") == {
        ("o200k_base",): 6
    }
    assert prom.vector("sum(token_service_request_duration_seconds_count)") == {(): 4}
    assert prom.vector('max(process_resident_memory_bytes{job="aigw-token-service"}) > 0')


def _check_rules_and_dashboard(prom: Prometheus) -> None:
    # Every alert rule has been evaluated against the live series without an error.
    deadline = time.monotonic() + 20
    while True:
        groups = httpx.get(f"{prom.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        if rules and not any(rule["lastEvaluation"].startswith("0001") for rule in rules):
            break  # (the zero time: not evaluated yet)
        assert time.monotonic() < deadline, json.dumps(groups)[:3000]
        time.sleep(0.3)
    assert len(rules) >= 8
    assert [r["name"] for r in rules if r["health"] != "ok"] == [], rules
    firing = [r["name"] for r in rules if r["state"] == "firing"]
    assert firing == []  # a healthy stack raises no alert (AigwGatewayDown would be pending)
    # Every dashboard query runs; the traffic panels show the test's requests.
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", ())
        if target.get("expr")
    ]
    for expr in exprs:
        prom.query(grafana_to_promql(expr))
    namespace_panel = next(
        e for e in exprs if e.startswith("sum by (namespace) (rate(gateway_requests_total")
    )
    assert {s["metric"]["namespace"] for s in prom.query(grafana_to_promql(namespace_panel))} == {
        "team-a",
        "team-b",
    }


def test_an_idle_gateway_has_no_request_in_flight(tmp_path: Path) -> None:
    # The scrape is not traffic (/metrics is left out of every request metric), so it must not
    # count itself in flight either: an idle gateway reports 0, not 1.
    key, entry = new_key_entry("a")
    with (
        mock_upstream(tmp_path) as mock,
        gateway(tmp_path, _document(mock, entry, new_key_entry("b")[1]), workers=1) as base,
    ):
        assert _send(base, [(key, "chat-a")] * 3) == {200: 3}
        text = httpx.get(f"{base}/metrics").text
    in_flight = [line for line in text.splitlines() if line.startswith("gateway_in_flight")]
    assert in_flight == ["gateway_in_flight_requests 0.0"]
