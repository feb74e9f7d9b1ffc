"""The scaling benchmark: how it reads the gateways' counters and what it calls a valid run, and a
``--quick`` smoke run of the whole thing (about 40 s, needs nginx and wrk)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import run as bench
from bench.scaling import (
    MIN_INSTANCE_SHARE,
    SCENARIOS,
    instance_problems,
    lb_config,
    parse_requests_total,
    process_cores,
)

# What `GET /metrics` of a gateway answers (abridged): several label sets of the request counter,
# and other counters whose names start the same way.
METRICS = """\
# HELP gateway_requests_total Requests answered.
# TYPE gateway_requests_total counter
gateway_requests_total{model="bench-model",namespace="bench",status_class="2xx"} 8299.0
gateway_requests_total{model="",namespace="bench",status_class="4xx"} 1.0
# HELP gateway_requests_success_total Requests answered with 2xx.
# TYPE gateway_requests_success_total counter
gateway_requests_success_total{model="bench-model",namespace="bench"} 8299.0
# HELP gateway_requests_failed_total Requests answered with an error, by reason.
# TYPE gateway_requests_failed_total counter
gateway_requests_failed_total{model="",namespace="bench",reason="invalid_request_error"} 1.0
"""


def test_requests_total_sums_every_label_set_and_nothing_else() -> None:
    assert parse_requests_total(METRICS) == 8300


def test_requests_total_missing_is_an_error() -> None:
    with pytest.raises(ValueError, match="gateway_requests_total"):
        parse_requests_total("# HELP gateway_up_time_seconds ...\ngateway_up_time_seconds 3.0\n")


def test_counts_matching_wrk_are_valid() -> None:
    # wrk abandons up to one request per connection when it stops; the gateways serve them.
    assert instance_problems({"gw1": 5_016, "gw2": 5_000}, wrk_requests=10_000, in_flight=32) == []


def test_fewer_or_more_requests_than_wrk_counted_are_invalid() -> None:
    fewer = instance_problems({"gw1": 9_000}, wrk_requests=10_000, in_flight=32)
    assert fewer and "fewer than wrk's" in fewer[0]
    more = instance_problems({"gw1": 10_033}, wrk_requests=10_000, in_flight=32)
    assert more and "more than wrk's" in more[0]


def test_an_instance_left_out_by_the_balancer_is_invalid() -> None:
    idle = round(10_000 * MIN_INSTANCE_SHARE) - 1
    problems = instance_problems(
        {"gw1": 10_000 - idle, "gw2": idle}, wrk_requests=10_000, in_flight=32
    )
    assert problems == [f"gw2 served only {idle / 10_000:.0%} of the requests"]


def test_process_cores_busiest_first() -> None:
    before = {10: 5.0, 11: 1.0}
    after = {10: 8.0, 11: 1.0, 12: 0.5}  # 12 started during the run
    assert process_cores(before, after, elapsed=3.0) == [1.0, 0.17, 0.0]


def test_load_balancer_keeps_connections_to_every_instance(tmp_path: Path) -> None:
    config = lb_config(tmp_path, 8080, [9001, 9002], keepalive=32, balance="least_conn")
    assert "server 127.0.0.1:9001;" in config and "server 127.0.0.1:9002;" in config
    assert "proxy_http_version 1.1;" in config and 'proxy_set_header Connection "";' in config
    assert "keepalive 32;" in config and "proxy_next_upstream off;" in config
    assert f"pid {tmp_path}/nginx.pid;" in config  # not the upstream nginx's files
    assert "least_conn;" in config
    assert "least_conn;" not in lb_config(tmp_path, 8080, [9001], 32, balance="round_robin")


def test_quick_run_measures_every_scenario(tmp_path: Path) -> None:
    for tool in ("nginx", "wrk"):
        try:
            bench.find_tool(tool)
        except bench.BenchError as exc:
            # `make test` installs them: a missing tool is a broken setup, not a skip.
            pytest.fail(str(exc))
    out = tmp_path / "scaling.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.scaling", "--quick", "--out", str(out)],
        cwd=bench.ROOT,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    document = json.loads(out.read_text())
    assert document["valid"] is True
    assert document["settings"]["duration_s"] == 3 and document["settings"]["connections"] == 32
    rows = {row["scenario"]: row for row in document["summary"]}
    assert list(rows) == [scenario.name for scenario in SCENARIOS]
    assert all(row["rps"] > 0 and not row["invalid"] for row in rows.values())
    assert rows["1x1"]["ratio_vs_1x1"] == 1.0
    # Behind the load balancer, both instances served, and their counts add up to wrk's.
    two = next(e for e in document["scenarios"] if e["name"] == "lb-2x1")["result"]
    assert len(two["instances"]) == 2
    assert all(i["share"] >= MIN_INSTANCE_SHARE for i in two["instances"].values())
    assert sum(i["requests"] for i in two["instances"].values()) >= two["requests"]
    assert rows["lb-2x1"]["cpu_cores"]["lb"] is not None
    assert set(document["scaling"]) == {"two_workers", "two_instances_behind_lb", "lb_hop"}
    assert "Scaling at C=32" in result.stdout
