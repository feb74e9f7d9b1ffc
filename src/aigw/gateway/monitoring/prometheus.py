"""Prometheus metrics of the gateway, correct across its worker processes, cheap per request.

Per request, :meth:`Metrics.observe` adds the finished :class:`RequestRecord` to this worker's
in-memory aggregates: a handful of dictionary increments and three histogram buckets (a few
microseconds; prometheus_client's own multiprocess mode costs 2-5 µs per *metric update*, some
40 µs per request for the metrics below). Every second, and before answering a scrape, the
worker writes its aggregates to one file of its own (``worker-<pid>.json``, replaced atomically)
in the gateway's metrics directory (``AIGW_METRICS_DIR``, made by ``aigw gateway`` for its
workers). ``GET /metrics``, answered by whichever worker the scrape reaches, merges every
worker's file:

- counters and histograms are **summed over every file**, a worker's that has exited included,
  so no count ever goes down when granian replaces a worker;
- gauges (requests in flight, circuit states...) are taken from **live workers only**, summed or
  the worst of them as each one's meaning requires.

The exposition itself (text format, families, escaping) is prometheus_client's.

Metric names: the seed's ``gateway_requests_total``, ``gateway_requests_success_total``,
``gateway_requests_failed_total``, ``gateway_request_duration_seconds``,
``gateway_upstream_duration_seconds``, ``gateway_up_time_seconds`` and
``gateway_upstream_requests_total``, and more (``docs/monitoring.md`` lists them all). Labels are
bounded by the configuration (namespace, model, provider, target) or by the code (status class,
reason); ``AIGW_METRICS_KEY_LABEL=1`` adds the key's display prefix to the request counter.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from aigw.gateway.monitoring.metrics import RequestRecord

METRICS_DIR_ENV = "AIGW_METRICS_DIR"
KEY_LABEL_ENV = "AIGW_METRICS_KEY_LABEL"
STARTED_FILE = "started"

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)

# Refusals by the namespace's policy, by the code the caller sees.
POLICY_CODES = frozenset(
    {
        "model_not_allowed",
        "ip_not_allowed",
        "namespace_mismatch",
        "max_tokens_exceeded",
        "prompt_too_long",
        "rate_limit_exceeded",
        "insufficient_quota",
        "limits_unavailable",
    }
)


@dataclass(frozen=True)
class Spec:
    name: str
    kind: str  # counter | histogram | gauge
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
    merge: str = "sum"  # gauges across live workers: sum | max | min


SPECS = {
    spec.name: spec
    for spec in (
        Spec("gateway_requests", "counter", "Requests answered.",
             ("namespace", "model", "status_class")),
        Spec("gateway_requests_success", "counter", "Requests answered with 2xx.",
             ("namespace", "model")),
        Spec("gateway_requests_failed", "counter", "Requests answered with an error, by reason.",
             ("namespace", "model", "reason")),
        Spec("gateway_request_duration_seconds", "histogram",
             "Time from the request's arrival to the end of its answer.",
             ("namespace", "model"), DURATION_BUCKETS),
        Spec("gateway_upstream_requests", "counter", "Tries sent to upstream targets.",
             ("provider", "target", "status_class")),
        Spec("gateway_upstream_duration_seconds", "histogram",
             "Time of one upstream try, to the end of its answer.",
             ("provider", "target"), DURATION_BUCKETS),
        Spec("gateway_time_to_first_token_seconds", "histogram",
             "Streams: from the request's arrival to the upstream's first chunk.",
             ("model",), DURATION_BUCKETS),
        Spec("gateway_overhead_seconds", "histogram",
             "The gateway's own time: request duration minus upstream time.", (),
             OVERHEAD_BUCKETS),
        Spec("gateway_tokens", "counter", "Tokens used, by type (prompt, completion, cached).",
             ("namespace", "model", "type")),
        Spec("gateway_cost_usd", "counter", "Spend in USD from the price table.",
             ("namespace", "model")),
        Spec("gateway_policy_denials", "counter", "Requests refused by policy or limits.",
             ("namespace", "reason")),
        Spec("gateway_retries", "counter", "Upstream tries beyond the first.", ("model",)),
        Spec("gateway_failovers", "counter",
             "Requests served by another target than the first tried.", ("model",)),
        Spec("gateway_stream_interruptions", "counter",
             "Streams the upstream broke off after they had started.", ("provider",)),
        Spec("gateway_limits_fail_open", "counter",
             "Admissions decided locally because the shared limit store was unreachable."),
        Spec("gateway_up_time_seconds", "gauge", "Seconds since the gateway started.",
             merge="max"),
        Spec("gateway_in_flight_requests", "gauge", "Requests being answered now."),
        Spec("gateway_circuit_state", "gauge",
             "Target circuit breaker: 0 closed, 1 half-open, 2 open (worst worker).",
             ("target",), merge="max"),
        Spec("gateway_provider_healthy", "gauge",
             "Active health checks: 1 passing, 0 failing (worst worker).", ("provider",),
             merge="min"),
        Spec("gateway_limits_store_up", "gauge",
             "Shared limit store reachable (1) or failing open/closed (0); worst worker.",
             merge="min"),
        Spec("gateway_config_version", "gauge", "Config center version in service (newest).",
             merge="max"),
        Spec("gateway_config_sync_age_seconds", "gauge",
             "Seconds since the config center last answered a poll (oldest worker).",
             merge="max"),
        Spec("gateway_workers", "gauge", "Live worker processes."),
    )
}  # fmt: skip

_CIRCUIT = {"closed": 0, "half_open": 1, "open": 2}


def status_class(status: int) -> str:
    if status == 499:
        return "client_closed"
    return f"{status // 100}xx" if 100 <= status < 600 else "error"


class Metrics:
    """One per worker: aggregates requests; :meth:`write` saves them for :func:`exposition`."""

    def __init__(
        self,
        directory: Path | None,
        gauges: Callable[[], Iterable[tuple[str, tuple[str, ...], float]]] = lambda: (),
        *,
        key_label: bool = False,
    ) -> None:
        self.directory = directory
        self._gauges = gauges
        self.key_label = key_label
        self._counters: dict[tuple[str, tuple[str, ...]], float] = {}
        # (name, labels) -> [bucket counts..., sum, count]
        self._histograms: dict[tuple[str, tuple[str, ...]], list[float]] = {}
        self.in_flight = 0
        self.started = time.time()

    @classmethod
    def from_env(
        cls, gauges: Callable[[], Iterable[tuple[str, tuple[str, ...], float]]]
    ) -> Metrics:
        directory = os.environ.get(METRICS_DIR_ENV)
        return cls(
            Path(directory) if directory else None,
            gauges,
            key_label=os.environ.get(KEY_LABEL_ENV, "") in ("1", "true", "yes", "on"),
        )

    # -- per request ----------------------------------------------------------------------------

    def observe(self, record: RequestRecord) -> None:
        namespace = record.namespace or ""
        model = record.model or ""
        status = record.status
        key = ("gateway_requests", (namespace, model, status_class(status)))
        if self.key_label:
            key = ("gateway_requests", (namespace, model, status_class(status), record.key or ""))
        self._add(key)
        if 200 <= status < 300:
            self._add(("gateway_requests_success", (namespace, model)))
        elif status >= 400:
            reason = record.error_code or record.error_type or f"http_{status}"
            self._add(("gateway_requests_failed", (namespace, model, reason)))
            if record.error_code in POLICY_CODES:
                self._add(("gateway_policy_denials", (namespace, record.error_code)))
        duration = record.duration_ms / 1000
        self._observe("gateway_request_duration_seconds", (namespace, model), duration)
        upstream_total = 0.0
        for provider, target, try_status, seconds in record.tries:
            self._add(("gateway_upstream_requests", (provider, target, status_class(try_status))))
            self._observe("gateway_upstream_duration_seconds", (provider, target), seconds)
            upstream_total += seconds
        if record.tries:
            self._observe("gateway_overhead_seconds", (), max(0.0, duration - upstream_total))
            if len(record.tries) > 1:
                self._add(("gateway_retries", (model,)), len(record.tries) - 1)
                if record.tries[-1][1] != record.tries[0][1] and 200 <= status < 400:
                    self._add(("gateway_failovers", (model,)))
        if record.ttft_seconds is not None:
            self._observe("gateway_time_to_first_token_seconds", (model,), record.ttft_seconds)
        if record.stream_broken and record.provider:
            self._add(("gateway_stream_interruptions", (record.provider,)))
        if record.prompt_tokens or record.completion_tokens:
            self._add(("gateway_tokens", (namespace, model, "prompt")), record.prompt_tokens)
            self._add(
                ("gateway_tokens", (namespace, model, "completion")), record.completion_tokens
            )
            if record.cached_tokens:
                self._add(("gateway_tokens", (namespace, model, "cached")), record.cached_tokens)
        if record.cost_usd:
            self._add(("gateway_cost_usd", (namespace, model)), record.cost_usd)

    def _add(self, key: tuple[str, tuple[str, ...]], amount: float = 1) -> None:
        self._counters[key] = self._counters.get(key, 0) + amount

    def _observe(self, name: str, labels: tuple[str, ...], value: float) -> None:
        buckets = SPECS[name].buckets
        state = self._histograms.get((name, labels))
        if state is None:
            state = self._histograms[(name, labels)] = [0.0] * (len(buckets) + 3)
        state[bisect.bisect_left(buckets, value)] += 1  # the last slot is +Inf
        state[-2] += value
        state[-1] += 1

    # -- saving and reading ---------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """This worker's state, as saved (call on the event loop: it copies live dicts)."""
        counters = [[n, list(labels), v] for (n, labels), v in self._counters.items()]
        gauges = [["gateway_in_flight_requests", [], self.in_flight], ["gateway_workers", [], 1]]
        for name, labels, value in self._gauges():
            # Cumulative counts kept elsewhere in the worker (the limit store's) are counters.
            kind = SPECS[name].kind
            (counters if kind == "counter" else gauges).append([name, list(labels), value])
        return {
            "pid": os.getpid(),
            "started": self.started,
            "counters": counters,
            "histograms": [
                [n, list(labels), list(v)] for (n, labels), v in self._histograms.items()
            ],
            "gauges": gauges,
        }

    def write(self) -> None:
        """Save this worker's aggregates for the other workers' scrapes (atomic replace)."""
        if self.directory is None:
            return
        path = self.directory / f"worker-{os.getpid()}.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(orjson.dumps(self.snapshot()))
        os.replace(temporary, path)

    def exposition(self, mine: dict[str, Any]) -> bytes:
        """The text format of every worker's metrics, this one's from ``mine`` (a
        :meth:`snapshot` taken just now). Reads files: run it in a thread."""
        others = [s for s in _read_all(self.directory) if s.get("pid") != mine["pid"]]
        return render([mine, *others], key_label=self.key_label)


def _read_all(directory: Path | None) -> Iterator[dict[str, Any]]:
    if directory is None:
        return
    for path in directory.glob("worker-*.json"):
        with contextlib.suppress(OSError, orjson.JSONDecodeError):
            yield orjson.loads(path.read_bytes())


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def render(snapshots: list[dict[str, Any]], *, key_label: bool = False) -> bytes:
    """Merge worker snapshots (see the module documentation) into the exposition format."""
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )
    from prometheus_client.exposition import generate_latest
    from prometheus_client.registry import CollectorRegistry

    counters: dict[tuple[str, tuple[str, ...]], float] = {}
    histograms: dict[tuple[str, tuple[str, ...]], list[float]] = {}
    gauges: dict[tuple[str, tuple[str, ...]], list[float]] = {}
    started = min((s.get("started", time.time()) for s in snapshots), default=time.time())
    for snapshot in snapshots:
        for name, labels, value in snapshot.get("counters", ()):
            key = (name, tuple(labels))
            counters[key] = counters.get(key, 0) + value
        for name, labels, values in snapshot.get("histograms", ()):
            key = (name, tuple(labels))
            merged = histograms.get(key)
            histograms[key] = (
                list(values)
                if merged is None
                else [a + b for a, b in zip(merged, values, strict=True)]
            )
        if _alive(int(snapshot.get("pid", 0))):
            for name, labels, value in snapshot.get("gauges", ()):
                gauges.setdefault((name, tuple(labels)), []).append(value)
    gauges[("gateway_up_time_seconds", ())] = [time.time() - started]

    families: list[Any] = []
    for spec in SPECS.values():
        labels = list(spec.labels)
        if spec.name == "gateway_requests" and key_label:
            labels.append("key")
        if spec.kind == "counter":
            family = CounterMetricFamily(spec.name, spec.help, labels=labels)
            for (name, values), total in counters.items():
                if name == spec.name:
                    family.add_metric(list(values), total)
        elif spec.kind == "histogram":
            family = HistogramMetricFamily(spec.name, spec.help, labels=labels)
            for (name, values), state in histograms.items():
                if name != spec.name:
                    continue
                cumulative, running = [], 0.0
                bounds = [*spec.buckets, float("inf")]
                for bound, count in zip(bounds, state[: len(bounds)], strict=True):
                    running += count
                    cumulative.append((_bound(bound), running))
                family.add_metric(list(values), cumulative, sum_value=state[-2])
        else:
            family = GaugeMetricFamily(spec.name, spec.help, labels=labels)
            combine = {"sum": sum, "max": max, "min": min}[spec.merge]
            for (name, values), readings in gauges.items():
                if name == spec.name:
                    family.add_metric(list(values), combine(readings))
        families.append(family)

    class _Collected:
        def collect(self) -> Iterator[Any]:
            return iter(families)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collected())
    return generate_latest(registry)


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(float(value))


def circuit_value(state: str) -> int:
    return _CIRCUIT.get(state, 0)
