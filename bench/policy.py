"""The policy-chain scenario of ``make bench``: the gateway with every per-request policy check on.

    wrk --> aigw gateway --> nginx        the same gateway, configuration and request as the
               |  ^                       foundation run, but namespace ``bench`` has a policy:
               v  |                       a models allow list with wildcards, RPM, TPM and a
              Redis (db 9)                daily token quota, held in Redis (AIGW_REDIS_URL)

Every request goes through the whole chain: key lookup, allow list, the prompt's tokens counted
(tiktoken, for TPM and the quota), one ``EVALSHA`` admit before forwarding and one settle after
(a background task). The limits are so high (:data:`HIGH_LIMIT`) that nothing is ever refused: a
429 is a non-2xx and makes the run INVALID like any other failure.

:class:`RedisLedger` is the bench's witness in Redis, as nginx's counters are upstream: it flushes
the bench's database before and after, finds the server's pid (for its CPU), and checks after each
run that Redis settled at least as many tokens as wrk's requests used (the canned answer reports
:data:`TOKENS_PER_REQUEST`), which an admission decided without Redis (the breaker failing open)
would not be. It also reads ``INFO commandstats`` around each run: EVALSHA calls and their cost.

The report compares the policy run with the foundation gateway's run at the same connection count
(:data:`TARGET_THROUGHPUT_RATIO`, :data:`TARGET_ADDED_P50_MS_AT_C1`). See docs/benchmarks.md,
"Policy chain on Redis".
"""

from __future__ import annotations

import copy
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from bench.run import (
    _HTTP,
    CANNED_COMPLETION,
    REQUEST_BODY,
    UPSTREAM_MODEL,
    BenchError,
    Child,
    Processes,
    check,
    fmt,
    gateway_document,
    log,
    preflight,
    print_checks,
    run_failed,
    start_gateway,
    validate_gateway_config,
)

NAMESPACE = "bench"  # gateway_document's namespace
HIGH_LIMIT = 100_000_000  # never reached during a run: every request is admitted and settled
DENIED_MODEL = "bench-model-preview"  # matches allow "bench-*" and deny "*-preview"
POLICY: dict[str, Any] = {
    "models": {"allow": ["bench-*"], "deny": ["*-preview"]},
    "limits": {
        "requests_per_minute": HIGH_LIMIT,
        "tokens_per_minute": HIGH_LIMIT,
        "tokens_per_day": HIGH_LIMIT,
    },
}
TOKENS_PER_REQUEST = CANNED_COMPLETION["usage"]["total_tokens"]  # what each settle records
SETTLE_WAIT_S = 10.0  # after a run, how long the background settles may take to land

# The targets: against the foundation gateway at the same connection count.
TARGET_THROUGHPUT_RATIO = 0.70
TARGET_ADDED_P50_MS_AT_C1 = 0.3


# --------------------------------------------------------------------------------------------
# Configuration and start-up.
# --------------------------------------------------------------------------------------------


def policy_document(upstream_url: str, key: str) -> dict[str, Any]:
    """The foundation configuration + the policy of namespace ``bench`` + a model it denies."""
    document = gateway_document(upstream_url, key)
    document["models"].append(
        {"name": DENIED_MODEL, "targets": [{"provider": "nginx", "model": UPSTREAM_MODEL}]}
    )
    [namespace] = document["namespaces"]
    assert namespace["name"] == NAMESPACE
    namespace["policy"] = copy.deepcopy(POLICY)
    return document


def start_policy_gateway(
    procs: Processes,
    tmp: Path,
    upstream_url: str,
    key: str,
    workers: int,
    ledger: RedisLedger,
) -> tuple[Child, str]:
    """Write and validate the policy configuration, start its gateway on Redis, check the chain."""
    config = tmp / "policy.yaml"
    config.write_text(yaml.safe_dump(policy_document(upstream_url, key), sort_keys=False))
    validate_gateway_config(config)
    child, url = start_gateway(
        procs, config, workers, name="policy", env={"AIGW_REDIS_URL": ledger.url}
    )
    preflight_policy(url, key, ledger)
    return child, url


def preflight_policy(url: str, key: str, ledger: RedisLedger) -> None:
    """The chain is on: rate-limit headers, the deny rule, the requests counted in Redis."""
    preflight("policy", url, key)
    status, headers, body = _post(url, REQUEST_BODY, key)
    limit = headers.get("x-ratelimit-limit-requests")
    if status != 200 or limit != str(HIGH_LIMIT) or "x-ratelimit-limit-tokens" not in headers:
        raise BenchError(
            f"preflight policy: expected 200 with x-ratelimit-limit-requests: {HIGH_LIMIT} and "
            f"x-ratelimit-limit-tokens, got {status} with {sorted(headers.items())}: {body[:300]!r}"
        )
    status, _, body = _post(url, {**REQUEST_BODY, "model": DENIED_MODEL}, key)
    if status != 403 or b"model_not_allowed" not in body:
        raise BenchError(
            f"preflight policy: {DENIED_MODEL} should be denied (403 model_not_allowed) by "
            f"deny {POLICY['models']['deny']}, got {status}: {body[:300]!r}"
        )
    unsettled = ledger.wait_settled()
    counted = ledger.counters()["tokens"]
    if unsettled or counted != 2 * TOKENS_PER_REQUEST:
        raise BenchError(
            f"preflight policy: after two requests Redis ({ledger.url}) should hold "
            f"{2 * TOKENS_PER_REQUEST} settled tokens in {ledger.tokens_key}, it holds {counted} "
            f"({unsettled} unsettled): the gateway is not counting limits in Redis"
        )
    log(
        f"preflight policy: rate-limit headers present, {DENIED_MODEL} denied, Redis counted "
        f"{counted} tokens for 2 requests"
    )


def _post(url: str, body: dict[str, Any], key: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    try:
        with _HTTP.open(request, timeout=30) as response:
            headers = {k.lower(): v for k, v in response.headers.items()}
            return response.status, headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()
    except (OSError, urllib.error.URLError) as exc:
        raise BenchError(f"preflight policy: POST {url} failed: {exc}") from None


# --------------------------------------------------------------------------------------------
# Redis: the bench's database, the server's pid, and the ledger check after each run.
# --------------------------------------------------------------------------------------------


class RedisLedger:
    """The bench's Redis database (flushed before and after) and its witness of every run."""

    def __init__(self, url: str) -> None:
        import redis

        from aigw.state.limits import DEFAULT_PREFIX, namespace_scope
        from aigw.state.limits_redis import limit_key, pending_key

        self.url = url
        self.pid: int | None = None
        self._connected = False
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        scope = namespace_scope(NAMESPACE)
        self.tokens_key = limit_key(DEFAULT_PREFIX, NAMESPACE, scope, "tokens_per_day")
        self.pending_key = pending_key(DEFAULT_PREFIX, NAMESPACE)

    def connect(self) -> dict[str, Any]:
        """Check Redis answers, find its pid, flush the database. Machine info for the JSON."""
        try:
            server = self._redis.info("server")
            self.flush()
        except self._errors as exc:
            raise BenchError(
                f"the policy scenario needs Redis at {self.url}: {str(exc).rstrip('.')}. Start "
                "it (e.g. `bash scripts/ensure-services.sh`), point --redis-url at one, or leave "
                "the scenario out: --scenarios direct,gateway"
            ) from None
        self._connected = True
        pid = int(server.get("process_id", 0))
        try:
            local = "redis" in Path(f"/proc/{pid}/comm").read_text()
        except OSError:
            local = False
        self.pid = pid if local else None
        db = self._redis.connection_pool.connection_kwargs.get("db", 0)
        version = server.get("redis_version", "unknown")
        where = f"pid {pid}" if local else "not a local process: its CPU is not measured"
        log(f"Redis {version} at {self.url} ({where}); database {db} flushed")
        return {"version": version, "pid": self.pid, "db": db, "url": self.url}

    def flush(self) -> None:
        self._redis.flushdb()

    def close(self) -> None:
        """Flush the bench's database again (the gateways have stopped) and disconnect."""
        try:
            if not self._connected:
                return
            self.flush()
            log(f"Redis {self.url}: database flushed")
        except self._errors as exc:
            log(f"!!! could not flush Redis {self.url} after the run: {exc}")
        finally:
            self._redis.close()

    def wait_settled(self, timeout: float = SETTLE_WAIT_S) -> int:
        """Wait for the gateway's background settles to land; the admissions still unsettled."""
        deadline = time.monotonic() + timeout
        while (pending := int(self._redis.zcard(self.pending_key))) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.05)
        return pending

    def counters(self) -> dict[str, Any]:
        day, tokens = self._redis.hmget(self.tokens_key, "p", "v")
        stats = self._redis.info("commandstats").get("cmdstat_evalsha", {})
        return {
            "day": int(day) if day is not None else None,
            "tokens": int(tokens or 0),
            "evalsha_calls": int(stats.get("calls", 0)),
            "evalsha_usec": int(stats.get("usec", 0)),
        }

    # The Ledger protocol of bench.run.measure.

    def read(self) -> dict[str, Any]:
        self.wait_settled()  # the warm-up's settles
        return self.counters()

    def account(self, before: dict[str, Any], result: dict[str, Any]) -> None:
        unsettled = self.wait_settled()
        after = self.counters()
        requests = result["requests"]
        tokens = after["tokens"] - before["tokens"]
        calls = after["evalsha_calls"] - before["evalsha_calls"]
        usec = after["evalsha_usec"] - before["evalsha_usec"]
        seen: dict[str, Any] = {
            "settled_tokens": tokens,
            "expected_tokens_at_least": requests * TOKENS_PER_REQUEST,
            "unsettled_after_wait": unsettled,
            # Server-wide: another client running scripts on this Redis would show here too.
            "evalsha_calls": calls,
            "evalsha_per_request": round(calls / requests, 3) if requests else None,
            "evalsha_us_each": round(usec / calls, 1) if calls else None,
        }
        result["redis"] = seen
        log(
            f"     Redis settled {tokens:,} tokens = {tokens / TOKENS_PER_REQUEST:,.0f} requests "
            f"(wrk counted {requests:,}); {calls:,} EVALSHA "
            f"({seen['evalsha_per_request']} per request, {seen['evalsha_us_each']} us each)"
        )
        if unsettled:
            log(f"  !!! {unsettled} admissions still unsettled {SETTLE_WAIT_S:g}s after the run")
        if before["day"] is not None and after["day"] != before["day"]:
            seen["note"] = "the UTC day changed during the run: token check skipped"
            log(f"     ({seen['note']})")
        elif tokens < requests * TOKENS_PER_REQUEST:
            result["ledger_mismatch"] = True
            log(
                "  !!! Redis settled fewer tokens than wrk's requests used: some admissions did "
                "not go through Redis (the breaker failed open?)"
            )


# --------------------------------------------------------------------------------------------
# Reporting.
# --------------------------------------------------------------------------------------------


def _us_per_request(result: dict[str, Any] | None, process: str) -> float | None:
    """CPU microseconds ``process`` spent per request of the run (cores / req/s)."""
    if result is None or not result["requests_per_sec"] or process not in result["cpu_cores"]:
        return None
    return result["cpu_cores"][process] / result["requests_per_sec"] * 1e6


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per connection count: the policy run next to the foundation gateway's."""
    rows = []
    for run in runs:
        policy, foundation = run.get("policy"), run.get("gateway")
        if policy is None:
            continue
        lat = policy["latency_ms"]
        base = foundation["latency_ms"] if foundation else None
        rps = policy["requests_per_sec"]
        base_rps = foundation["requests_per_sec"] if foundation else None
        redis_seen = policy.get("redis", {})
        rows.append(
            {
                "connections": run["connections"],
                "workers": run["workers"],
                "foundation_rps": base_rps,
                "policy_rps": rps,
                "throughput_ratio": _round(rps / base_rps if base_rps else None),
                "foundation_p50_ms": base["p50"] if base else None,
                "foundation_p99_ms": base["p99"] if base else None,
                "policy_p50_ms": lat["p50"],
                "policy_p99_ms": lat["p99"],
                "added_p50_ms": _round(lat["p50"] - base["p50"] if base else None),
                "cpu_cores": policy["cpu_cores"],
                "foundation_cpu_cores": foundation["cpu_cores"] if foundation else None,
                "gateway_cpu_us_per_request": _round(_us_per_request(policy, "gateway"), 1),
                "foundation_gateway_cpu_us_per_request": _round(
                    _us_per_request(foundation, "gateway"), 1
                ),
                "redis_cpu_us_per_request": _round(_us_per_request(policy, "redis"), 1),
                "evalsha_per_request": redis_seen.get("evalsha_per_request"),
                "evalsha_us_each": redis_seen.get("evalsha_us_each"),
                "invalid": run_failed(policy) or bool(foundation and run_failed(foundation)),
            }
        )
    return rows


def check_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_c = {row["connections"]: row for row in rows}
    c1, c32 = by_c.get(1), by_c.get(32)
    keeps = f"policy chain keeps >= {TARGET_THROUGHPUT_RATIO:.0%} of the foundation gateway's req/s"
    return [
        check(
            f"C=32: {keeps}",
            c32,
            "throughput_ratio",
            "x foundation",
            lambda v: v >= TARGET_THROUGHPUT_RATIO,
        ),
        check(
            f"C=1: {keeps}",
            c1,
            "throughput_ratio",
            "x foundation",
            lambda v: v >= TARGET_THROUGHPUT_RATIO,
        ),
        check(
            f"C=1: policy chain adds <= {TARGET_ADDED_P50_MS_AT_C1:g} ms at p50 over the "
            "foundation gateway",
            c1,
            "added_p50_ms",
            "ms",
            lambda v: v <= TARGET_ADDED_P50_MS_AT_C1,
        ),
    ]


def report_section(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON's ``policy`` section: the configuration, the rows and the targets."""
    rows = summarize(runs)
    return {
        "namespace_policy": POLICY,
        "denied_model": DENIED_MODEL,
        "summary": rows,
        "targets": check_targets(rows),
    }


def print_report(section: dict[str, Any]) -> None:
    rows = section["summary"]
    if not rows:
        return
    print()
    print(
        "Policy chain on Redis: allow list, RPM, TPM with prompt counting, daily token quota; "
        "one admit + one settle per request"
    )
    header = (
        f"{'C':>4} {'workers':>7} {'foundation req/s':>17} {'policy req/s':>13} {'ratio':>6} "
        f"{'foundation p50/p99 ms':>22} {'policy p50/p99 ms':>18} {'added p50 ms':>13}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        flag = "  !!! INVALID (errors)" if row["invalid"] else ""
        print(
            f"{row['connections']:>4} {row['workers']:>7} "
            f"{fmt(row['foundation_rps'], ',.0f', 17)} "
            f"{row['policy_rps']:>13,.0f} {fmt(row['throughput_ratio'], '.2f', 6)} "
            f"{fmt(row['foundation_p50_ms'], '.2f', 12)} / "
            f"{fmt(row['foundation_p99_ms'], '.2f'):<7} "
            f"{row['policy_p50_ms']:>8.2f} / {row['policy_p99_ms']:<7.2f} "
            f"{fmt(row['added_p50_ms'], '+.2f', 13)}{flag}"
        )
    print()
    for row in rows:
        cores = ", ".join(f"{name} {value:.2f}" for name, value in row["cpu_cores"].items())
        print(
            f"  C={row['connections']}: CPU per request: gateway "
            f"{fmt(row['foundation_gateway_cpu_us_per_request'], '.0f')} -> "
            f"{fmt(row['gateway_cpu_us_per_request'], '.0f')} us, Redis "
            f"{fmt(row['redis_cpu_us_per_request'], '.0f')} us "
            f"({fmt(row['evalsha_per_request'], '.2f')} EVALSHA/request, "
            f"{fmt(row['evalsha_us_each'], '.0f')} us each in Redis); cores: {cores}"
        )
    print()
    print_checks(section["targets"])
