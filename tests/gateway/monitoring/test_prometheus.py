"""The gateway's metrics: per-worker aggregation and the merged exposition."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from aigw.gateway.monitoring.metrics import RequestRecord
from aigw.gateway.monitoring.prometheus import Metrics, render, status_class


def _record(status: int = 200, **fields: object) -> RequestRecord:
    record = RequestRecord("id", "POST", "/v1/chat/completions", status=status)
    record.namespace, record.model, record.provider = "team", "chat", "p"
    for name, value in fields.items():
        setattr(record, name, value)
    return record


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_requests_tokens_tries_and_histograms_are_counted() -> None:
    metrics = Metrics(None)
    metrics.observe(
        _record(
            duration_ms=120.0,
            prompt_tokens=9,
            completion_tokens=5,
            cached_tokens=2,
            cost_usd=0.25,
            tries=[("p", "p/a", 500, 0.03), ("q", "q/b", 200, 0.07)],
            stream=True,
            ttft_ms=40.0,
        )
    )
    metrics.observe(_record(429, error_code="rate_limit_exceeded", error_type="requests"))
    samples = _samples(render([metrics.snapshot()]))
    team_chat = (("model", "chat"), ("namespace", "team"))
    assert samples[("gateway_requests_total", (*team_chat, ("status_class", "2xx")))] == 1
    assert samples[("gateway_requests_total", (*team_chat, ("status_class", "4xx")))] == 1
    assert samples[("gateway_requests_success_total", team_chat)] == 1
    failed = ("gateway_requests_failed_total", (*team_chat, ("reason", "rate_limit_exceeded")))
    assert samples[failed] == 1
    denied = ("namespace", "team"), ("reason", "rate_limit_exceeded")
    assert samples[("gateway_policy_denials_total", denied)] == 1
    tokens = {t: samples[("gateway_tokens_total", (*team_chat, ("type", t)))] for t in
              ("prompt", "completion", "cached")}  # fmt: skip
    assert tokens == {"prompt": 9, "completion": 5, "cached": 2}
    assert samples[("gateway_cost_usd_total", team_chat)] == 0.25
    upstream = ("provider", "p"), ("status_class", "5xx"), ("target", "p/a")
    assert samples[("gateway_upstream_requests_total", upstream)] == 1
    assert samples[("gateway_retries_total", (("model", "chat"),))] == 1
    assert samples[("gateway_failovers_total", (("model", "chat"),))] == 1
    # 120 ms lands in the 0.25 bucket, not in 0.1 (where only the 0 ms refusal is); the
    # overhead is 120 - 100 ms of tries.
    duration = "gateway_request_duration_seconds_bucket"
    assert samples[(duration, (("le", "0.1"), *team_chat))] == 1
    assert samples[(duration, (("le", "0.25"), *team_chat))] == 2
    assert samples[(duration, (("le", "+Inf"), *team_chat))] == 2
    assert samples[("gateway_overhead_seconds_sum", ())] == pytest.approx(0.02)
    assert samples[("gateway_time_to_first_token_seconds_count", (("model", "chat"),))] == 1


def test_counters_of_exited_workers_stay_and_their_gauges_go(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    gone = Metrics(tmp_path)
    gone.observe(_record())
    gone.in_flight = 7
    snapshot = gone.snapshot()
    snapshot["pid"] = int(dead.stdout)  # a worker that has exited
    live = Metrics(tmp_path, lambda: [("gateway_circuit_state", ("p/a",), 2)])
    live.observe(_record())
    live.in_flight = 1
    live.write()
    assert (tmp_path / f"worker-{os.getpid()}.json").exists()
    samples = _samples(render([live.snapshot(), snapshot]))
    team_chat = (("model", "chat"), ("namespace", "team"), ("status_class", "2xx"))
    assert samples[("gateway_requests_total", team_chat)] == 2  # never goes down
    assert samples[("gateway_in_flight_requests", ())] == 1  # the dead worker's 7 is gone
    assert samples[("gateway_workers", ())] == 1
    assert samples[("gateway_circuit_state", (("target", "p/a"),))] == 2


def test_the_exposition_reads_every_worker_s_file(tmp_path: Path) -> None:
    other = Metrics(tmp_path)
    for _ in range(3):
        other.observe(_record())
    snapshot = other.snapshot()
    snapshot["pid"] = os.getppid()  # another live process: "another worker"
    (tmp_path / "worker-other.json").write_bytes(__import__("orjson").dumps(snapshot))
    mine = Metrics(tmp_path)
    mine.observe(_record(503, error_type="upstream_error"))
    samples = _samples(mine.exposition(mine.snapshot()))
    assert samples[("gateway_requests_total", (("model", "chat"), ("namespace", "team"),
                                                ("status_class", "2xx")))] == 3  # fmt: skip
    assert samples[("gateway_workers", ())] == 2
    assert samples[("gateway_up_time_seconds", ())] >= 0


@pytest.mark.parametrize(
    ("status", "expected"), [(200, "2xx"), (404, "4xx"), (499, "client_closed"), (502, "5xx")]
)
def test_status_classes(status: int, expected: str) -> None:
    assert status_class(status) == expected
