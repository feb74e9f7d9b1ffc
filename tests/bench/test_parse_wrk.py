"""The benchmark's wrk parser: a misread figure would make the published numbers wrong."""

from __future__ import annotations

import pytest

from bench.run import parse_wrk

WRK_OUTPUT = """\
Running 10s test @ http://127.0.0.1:40001/v1/chat/completions
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.90ms    2.71ms  48.53ms   88.12%
    Req/Sec     8.66k   412.33     9.30k    74.00%
  Latency Distribution
     50%    3.40ms
     75%    4.52ms
     90%    6.55ms
     99%   14.22ms
  86170 requests in 10.00s, 40.12MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:   8617.02
Transfer/sec:      4.01MB
"""


def test_parses_throughput_latency_and_errors() -> None:
    result = parse_wrk(WRK_OUTPUT)
    assert result["requests_per_sec"] == pytest.approx(8617.02)
    assert result["requests"] == 86170
    assert result["duration_s"] == pytest.approx(10.0)
    latency = result["latency_ms"]
    assert latency["p50"] == pytest.approx(3.40)
    assert latency["p99"] == pytest.approx(14.22)
    assert latency["max"] == pytest.approx(48.53)
    assert result["non_2xx"] == 5
    assert result["errors"] == 5 + 2 + 1


def test_microsecond_and_second_units() -> None:
    text = WRK_OUTPUT.replace("3.40ms", "385.00us").replace("48.53ms", "1.20s")
    latency = parse_wrk(text)["latency_ms"]
    assert latency["p50"] == pytest.approx(0.385)
    assert latency["max"] == pytest.approx(1200.0)


def test_clean_run_has_no_errors() -> None:
    text = "\n".join(
        line
        for line in WRK_OUTPUT.splitlines()
        if "Socket errors" not in line and "Non-2xx" not in line
    )
    result = parse_wrk(text)
    assert result["errors"] == 0 and result["non_2xx"] == 0


def test_rejects_what_is_not_wrk_output() -> None:
    with pytest.raises(ValueError, match="Requests/sec"):
        parse_wrk("connection refused")
