"""Resolve a public model name, and decide which of its targets to try, in which order.

Each gateway worker keeps what it has learnt about every target (keyed by ``provider/model``, so
it survives configuration changes): requests in flight, a moving average of time to first byte,
a circuit breaker, a "cooling" deadline from a 429's ``Retry-After``, and its provider's health
from active checks (:mod:`aigw.gateway.routing.health`). :meth:`Router.plan` turns a model's
targets into the order to try them in:

1. **priority groups** in order (lowest first): a higher group serves only when every target of
   the lower ones is unavailable or has failed this request;
2. within a group, by the model's **strategy**: ``weighted`` (weighted random, without
   replacement), ``least_inflight`` (fewest requests in flight on this worker), or
   ``lowest_latency`` (lowest moving average of time to first byte; a target not measured yet
   goes first, to be measured);
3. targets with weight 0, an open breaker, a 429 cooling period, or an unhealthy provider are
   left out. A breaker open past its cooldown lets one probe through (half-open).

State is per worker process and is not shared: each worker learns on its own within a few
requests, and nothing on the request path waits for another process.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable

from aigw.config.schema import CircuitBreakerSettings
from aigw.config.snapshot import ModelEntry, Snapshot, TargetEntry
from aigw.gateway.core.errors import ModelNotFound, NoUpstreamAvailable, UpstreamRateLimited

# Weight of the newest sample in the time-to-first-byte moving average.
LATENCY_EWMA_ALPHA = 0.2


def resolve_model(snapshot: Snapshot, name: str) -> ModelEntry:
    """The model a public name or alias refers to, or a 404 ``model_not_found``."""
    model = snapshot.models_by_name.get(name)
    if model is None:
        raise ModelNotFound(
            f"the model '{name}' does not exist or you do not have access to it", param="model"
        )
    return model


class TargetBreaker:
    """closed → open (``consecutive_failures`` in a row, or ``error_rate`` of the last
    ``window`` seconds with at least ``min_requests``) → half-open after ``cooldown`` (one
    probe) → closed on the probe's success, open again on its failure."""

    __slots__ = ("_buckets", "_clock", "_failures_in_row", "_opened_at", "state")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.state = "closed"
        self._failures_in_row = 0
        self._opened_at = 0.0
        # second -> [successes, failures], for the error rate over the window
        self._buckets: dict[int, list[int]] = {}

    def available(self, settings: CircuitBreakerSettings) -> bool:
        """Whether a request could go to the target now: closed, or open past its cooldown (a
        probe may go), or half-open with its probe out for a whole cooldown (it was lost: a
        successor may go). Changes nothing: :meth:`begin` takes the probe."""
        if self.state == "closed":
            return True
        return self._clock() - self._opened_at >= settings.cooldown

    def begin(self, settings: CircuitBreakerSettings) -> bool:
        """A request is about to go to the target: False if it may not (after all). Past an
        open breaker's cooldown, this request is the one probe (half-open)."""
        if self.state == "closed":
            return True
        if not self.available(settings):
            return False
        self.state = "half_open"
        self._opened_at = self._clock()
        return True

    def retry_after(self, settings: CircuitBreakerSettings) -> float:
        return max(0.0, settings.cooldown - (self._clock() - self._opened_at))

    def record(self, success: bool, settings: CircuitBreakerSettings) -> bool:
        """Count one outcome; returns whether this opened the breaker."""
        now = self._clock()
        second = int(now)
        bucket = self._buckets.get(second)
        if bucket is None:
            bucket = self._buckets[second] = [0, 0]
            if len(self._buckets) > settings.window + 1:
                low = second - settings.window
                for old in [s for s in self._buckets if s < low]:
                    del self._buckets[old]
        if success:
            bucket[0] += 1
            self._failures_in_row = 0
            self.state = "closed"
            return False
        bucket[1] += 1
        self._failures_in_row += 1
        if self.state == "half_open":
            self._open(now)
            return False
        if self.state == "closed" and self._tripped(settings, second):
            self._open(now)
            return True
        return False

    def _tripped(self, settings: CircuitBreakerSettings, second: int) -> bool:
        if self._failures_in_row >= settings.consecutive_failures:
            return True
        low = second - settings.window
        ok = failed = 0
        for moment, (successes, failures) in self._buckets.items():
            if moment > low:
                ok += successes
                failed += failures
        total = ok + failed
        return total >= settings.min_requests and failed / total >= settings.error_rate

    def _open(self, now: float) -> None:
        self.state = "open"
        self._opened_at = now


class TargetState:
    """What one worker knows about one target."""

    __slots__ = ("breaker", "cooling_until", "in_flight", "latency")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.in_flight = 0
        self.latency: float | None = None  # moving average of time to first byte, seconds
        self.breaker = TargetBreaker(clock)
        self.cooling_until = 0.0  # monotonic time until which a 429's Retry-After holds

    def observe_latency(self, seconds: float) -> None:
        previous = self.latency
        self.latency = (
            seconds if previous is None else previous + LATENCY_EWMA_ALPHA * (seconds - previous)
        )


class Router:
    """One per worker: orders a model's targets for each request (see the module docs)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._states: dict[str, TargetState] = {}
        self.unhealthy_providers: set[str] = set()
        """Providers whose active health checks fail (kept by the health checker)."""

    def state(self, target: TargetEntry) -> TargetState:
        name = target.name
        state = self._states.get(name)
        if state is None:
            state = self._states[name] = TargetState(self._clock)
        return state

    def target_states(self) -> list[tuple[str, TargetState]]:
        return list(self._states.items())

    def describe(self) -> dict[str, dict[str, object]]:
        """For /readyz: what this worker knows about each target it has used."""
        now = self._clock()
        return {
            name: {
                "circuit": state.breaker.state,
                "in_flight": state.in_flight,
                "ttfb_ms": None if state.latency is None else round(state.latency * 1000, 1),
                "cooling_seconds": round(max(0.0, state.cooling_until - now), 1),
            }
            for name, state in self._states.items()
        } | {
            f"provider:{name}": {"health_check": "failing"}
            for name in sorted(self.unhealthy_providers)
        }

    def plan(self, model: ModelEntry, settings: CircuitBreakerSettings) -> list[TargetEntry]:
        """The targets to try for one request, in order; a 503 when none is available."""
        targets = model.targets
        if len(targets) == 1:  # the common case, without sorting
            target = targets[0]
            if target.weight > 0 and self._available(target, settings):
                return [target]
            raise self._none_available(model, settings)
        ordered: list[TargetEntry] = []
        for priority in sorted({t.priority for t in targets}):
            group = [
                t
                for t in targets
                if t.priority == priority and t.weight > 0 and self._available(t, settings)
            ]
            ordered += self._order(group, model.routing.strategy)
        if not ordered:
            raise self._none_available(model, settings)
        return ordered

    def acquire(self, target: TargetEntry, settings: CircuitBreakerSettings) -> bool:
        """A try is about to go to ``target``: whether it may (its probe, if half-open, is
        taken by this try). :meth:`plan` only looks; this decides."""
        return self._available(target, settings) and self.state(target).breaker.begin(settings)

    def cool(self, target: TargetEntry, seconds: float) -> None:
        """The target's provider answered 429: leave it alone for ``seconds``."""
        self.state(target).cooling_until = self._clock() + seconds

    def unavailable(
        self, model: ModelEntry, settings: CircuitBreakerSettings
    ) -> NoUpstreamAvailable:
        """The error for a request that finds no target it may try."""
        return self._none_available(model, settings)

    def _available(self, target: TargetEntry, settings: CircuitBreakerSettings) -> bool:
        if target.provider.name in self.unhealthy_providers:
            return False
        state = self.state(target)
        if state.cooling_until and self._clock() < state.cooling_until:
            return False
        return state.breaker.available(settings)

    def _order(self, group: list[TargetEntry], strategy: str) -> list[TargetEntry]:
        if len(group) < 2:
            return group
        if strategy == "least_inflight":
            random.shuffle(group)  # ties broken at random
            return sorted(group, key=lambda t: self.state(t).in_flight)
        if strategy == "lowest_latency":
            random.shuffle(group)
            return sorted(group, key=lambda t: self.state(t).latency or 0.0)
        return _weighted_order(group)

    def _none_available(
        self, model: ModelEntry, settings: CircuitBreakerSettings
    ) -> NoUpstreamAvailable:
        """503 with a Retry-After; a 429 when the only reason is the upstreams' own rate limits
        (every target cooling after a 429), so callers back off as they would from the
        provider."""
        candidates = [t for t in model.targets if t.weight > 0]
        wait = min((self._wait(t, settings) for t in candidates), default=settings.cooldown)
        seconds = str(max(1, math.ceil(wait)))
        if candidates and all(self._only_cooling(t) for t in candidates):
            return UpstreamRateLimited(
                f"every target of model '{model.name}' is rate-limited by its provider; "
                f"retry in {seconds}s",
                headers={"retry-after": seconds},
            )
        return NoUpstreamAvailable(
            f"no target of model '{model.name}' is available now (circuit open, rate-limited "
            f"upstream or failing health checks); retry in {seconds}s",
            headers={"retry-after": seconds},
        )

    def _only_cooling(self, target: TargetEntry) -> bool:
        state = self.state(target)
        return (
            self._clock() < state.cooling_until
            and state.breaker.state == "closed"
            and target.provider.name not in self.unhealthy_providers
        )

    def _wait(self, target: TargetEntry, settings: CircuitBreakerSettings) -> float:
        state = self.state(target)
        cooling = max(0.0, state.cooling_until - self._clock())
        breaker = state.breaker.retry_after(settings) if state.breaker.state != "closed" else 0
        return max(cooling, breaker) or settings.cooldown


def _weighted_order(group: Iterable[TargetEntry]) -> list[TargetEntry]:
    """A weighted random permutation: each place drawn by weight among those left (Efraimidis
    and Spirakis' keys: u ** (1 / weight), largest first)."""
    return sorted(group, key=lambda t: random.random() ** (1.0 / t.weight), reverse=True)
