"""A circuit breaker around the shared limit store, so Redis trouble never stalls a request.

:class:`CircuitBreaker` is the state machine:

- **closed**: calls go to Redis, each under a short deadline (``timeout``, 250 ms by default).
  ``failure_threshold`` consecutive failures (connection errors, timeouts, any Redis error)
  open it.
- **open**: calls fail fast, without touching Redis, for ``cooldown`` seconds.
- **half-open**: after the cooldown, the next admit is let through as a probe (the others keep
  failing fast meanwhile); its success closes the breaker, its failure opens it again.

:class:`BreakerLimitStore` wraps a :class:`~aigw.state.limits.LimitStore` (the Redis one) with
it. When a call cannot reach Redis (failed, or the breaker is open):

- ``fail_mode="open"`` (default) admits through a process-local
  :class:`~aigw.state.limits_memory.MemoryLimitStore`, so each process still enforces the
  limits on its own; such admissions are marked ``local`` and are settled locally.
  :attr:`BreakerLimitStore.fail_open_admissions` counts them; one warning is logged when the
  breaker opens and one line when it closes, never one per request.
- ``fail_mode="closed"`` refuses: the admission has ``allowed=False, unavailable=True``, which
  the gateway answers with a 503. :attr:`BreakerLimitStore.fail_closed_refusals` counts them.

A settle that cannot reach Redis is queued (up to ``max_queued_settles``) and retried once the
breaker is closed again: settles are idempotent, so a retry never counts twice, and the
concurrency slots held by requests that ended during an outage are released as soon as Redis is
back instead of waiting for their leases to expire.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

from aigw.state.limits import Admission, LimitPlan, LimitStore, new_admission_id
from aigw.state.limits_memory import MemoryLimitStore

log = logging.getLogger("aigw.state.limits")

FailMode = Literal["open", "closed"]
State = Literal["closed", "open", "half_open"]
T = TypeVar("T")

# A healthy Redis answers in well under a millisecond; 250 ms leaves room for a loaded host and a
# burst of new connections, and bounds what a dead Redis costs before the breaker opens.
DEFAULT_TIMEOUT = 0.25
DEFAULT_SETTLE_TIMEOUT = 1.0
DEFAULT_COOLDOWN = 5.0
DEFAULT_FAILURE_THRESHOLD = 3


def _failures() -> tuple[type[BaseException], ...]:
    from redis.exceptions import RedisError

    return (RedisError, OSError, TimeoutError)


class CircuitBreaker:
    """closed → open (``failure_threshold`` consecutive failures) → half-open (after
    ``cooldown``; one probe) → closed (probe succeeded) or open (probe failed)."""

    def __init__(
        self,
        *,
        failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
        cooldown: float = DEFAULT_COOLDOWN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self._clock = clock
        self._state: State = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probe_started: float | None = None
        self.opened_count = 0
        """How many times the breaker opened (from closed)."""

    @property
    def state(self) -> State:
        return self._state

    def allow(self) -> bool:
        """Whether a call may go to the store now (in half-open: the one probe)."""
        if self._state == "closed":
            return True
        now = self._clock()
        if self._state == "open":
            if now - self._opened_at < self.cooldown:
                return False
            self._state = "half_open"
            self._probe_started = now
            return True
        # half-open: one probe at a time; a probe lost for a whole cooldown gets a successor
        if self._probe_started is not None and now - self._probe_started < self.cooldown:
            return False
        self._probe_started = now
        return True

    def retry_after(self) -> float:
        """Seconds until the breaker lets a probe through (0 when it would now)."""
        if self._state == "closed":
            return 0.0
        return max(0.0, self.cooldown - (self._clock() - self._opened_at))

    def success(self) -> bool:
        """Record a success; returns whether this closed the breaker."""
        was = self._state
        self._state = "closed"
        self._failures = 0
        self._probe_started = None
        return was != "closed"

    def failure(self) -> bool:
        """Record a failure; returns whether this opened the breaker (from closed)."""
        self._failures += 1
        if self._state == "half_open":
            self._state = "open"
            self._opened_at = self._clock()
            self._probe_started = None
            return False
        if self._state == "closed" and self._failures >= self.failure_threshold:
            self._state = "open"
            self._opened_at = self._clock()
            self.opened_count += 1
            return True
        return False


class BreakerLimitStore:
    """A :class:`~aigw.state.limits.LimitStore` that survives its primary store's outages."""

    def __init__(
        self,
        primary: LimitStore,
        *,
        fallback: LimitStore | None = None,
        fail_mode: FailMode = "open",
        timeout: float = DEFAULT_TIMEOUT,
        settle_timeout: float = DEFAULT_SETTLE_TIMEOUT,
        cooldown: float = DEFAULT_COOLDOWN,
        failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
        max_queued_settles: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if fail_mode not in ("open", "closed"):
            raise ValueError(f"fail_mode must be 'open' or 'closed', not {fail_mode!r}")
        self.primary = primary
        self.fallback = fallback if fallback is not None else MemoryLimitStore()
        self.fail_mode: FailMode = fail_mode
        self.timeout = timeout
        self.settle_timeout = settle_timeout
        self.breaker = CircuitBreaker(
            failure_threshold=failure_threshold, cooldown=cooldown, clock=clock
        )
        self.fail_open_admissions = 0
        """Admissions decided by the local fallback because the shared store was unreachable."""
        self.fail_closed_refusals = 0
        """Requests refused because the shared store was unreachable (``fail_mode="closed"``)."""
        self.dropped_settles = 0
        """Settles given up because the retry queue was full."""
        self._queued: deque[tuple[Admission, int, int]] = deque()
        self._max_queued = max_queued_settles
        self._flushing: asyncio.Task[None] | None = None
        self._outage_started: float | None = None
        self._outage_admissions = 0
        self._failures = _failures()
        # A primary that bounds its own calls (one timer for all) spares a timer per call here.
        set_deadlines = getattr(primary, "set_deadlines", None)
        self._primary_bounds_calls = bool(set_deadlines and set_deadlines(timeout, settle_timeout))

    @property
    def state(self) -> State:
        return self.breaker.state

    @property
    def queued_settles(self) -> int:
        return len(self._queued)

    async def _call(self, make: Callable[[], Awaitable[T]], deadline: float) -> T:
        """Run ``make()`` against the primary within ``deadline`` seconds; record the
        outcome."""
        try:
            if self._primary_bounds_calls:
                result = await make()
            else:
                # asyncio.timeout runs the call in this task; wait_for (3.11) spawns a task.
                async with asyncio.timeout(deadline):
                    result = await make()
        except self._failures as error:
            self._failed(error)
            raise
        self._succeeded()
        return result

    def _failed(self, error: BaseException) -> None:
        if self.breaker.failure():
            self._outage_started = time.monotonic()
            self._outage_admissions = 0
            log.warning(
                "limits: shared store unreachable (%s: %s); breaker open, failing %s",
                type(error).__name__,
                error,
                self.fail_mode,
            )

    def _succeeded(self) -> None:
        if self.breaker.success():
            lasted = time.monotonic() - (self._outage_started or time.monotonic())
            log.warning(
                "limits: shared store is back after %.1fs; %d admissions failed %s meanwhile",
                lasted,
                self._outage_admissions,
                self.fail_mode,
            )
            self._outage_started = None
        if self._queued and self.breaker.state == "closed":
            self._start_flush()

    async def admit(self, plan: LimitPlan, *, admission_id: str | None = None) -> Admission:
        if not plan.checks:
            return await self.primary.admit(plan, admission_id=admission_id)
        admission_id = admission_id or new_admission_id()
        if self.breaker.allow():
            try:
                return await self._call(
                    lambda: self.primary.admit(plan, admission_id=admission_id), self.timeout
                )
            except self._failures:
                pass
        return await self._degraded(plan, admission_id)

    async def _degraded(self, plan: LimitPlan, admission_id: str) -> Admission:
        self._outage_admissions += 1
        if self.fail_mode == "closed":
            self.fail_closed_refusals += 1
            return Admission(
                id=admission_id,
                plan=plan,
                allowed=False,
                at_ms=int(time.time() * 1000),
                retry_after_seconds=max(1.0, self.breaker.retry_after()),
                unavailable=True,
            )
        self.fail_open_admissions += 1
        admission = await self.fallback.admit(plan, admission_id=admission_id)
        return _as_local(admission)

    async def peek(self, plan: LimitPlan) -> Admission:
        if self.breaker.allow():
            try:
                return await self._call(lambda: self.primary.peek(plan), self.timeout)
            except self._failures:
                pass
        return _as_local(await self.fallback.peek(plan))

    async def settle(
        self, admission: Admission, actual_tokens: int, actual_cost_micro: int
    ) -> bool:
        if admission.local:
            return await self.fallback.settle(admission, actual_tokens, actual_cost_micro)
        if not admission.allowed or not admission.plan.needs_settle():
            return False
        if self.breaker.state == "closed":
            try:
                return await self._call(
                    lambda: self.primary.settle(admission, actual_tokens, actual_cost_micro),
                    self.settle_timeout,
                )
            except self._failures:
                pass
        self._queue(admission, actual_tokens, actual_cost_micro)
        return False

    def settle_soon(
        self,
        admission: Admission,
        actual_tokens: int,
        actual_cost_micro: int,
        done: Callable[[asyncio.Future[Any]], None] | None = None,
    ) -> None:
        """:meth:`settle` in the background: batched with other Redis traffic by the primary
        when it can (no task per request), queued for a retry when Redis cannot take it.
        ``done(future)`` gets the outcome: ``False`` when the settle was queued."""
        if admission.local:
            self.fallback.settle_soon(admission, actual_tokens, actual_cost_micro, done)
            return
        if not admission.allowed or not admission.plan.needs_settle():
            _report(done, False)
            return
        if self.breaker.state != "closed":
            self._queue(admission, actual_tokens, actual_cost_micro)
            _report(done, False)
            return

        def landed(future: asyncio.Future[Any]) -> None:
            error = None if future.cancelled() else future.exception()
            if error is None and not future.cancelled():
                self._succeeded()
            elif future.cancelled() or isinstance(error, self._failures):
                if error is not None:
                    self._failed(error)
                self._queue(admission, actual_tokens, actual_cost_micro)
            else:
                log.error("limits: settle of %s failed: %r", admission.id, error)
            if done is not None:
                done(future)

        self.primary.settle_soon(admission, actual_tokens, actual_cost_micro, done=landed)

    def _queue(self, admission: Admission, actual_tokens: int, actual_cost_micro: int) -> None:
        if len(self._queued) >= self._max_queued:
            self._queued.popleft()
            self.dropped_settles += 1
        self._queued.append((admission, actual_tokens, actual_cost_micro))

    def _start_flush(self) -> None:
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self.flush_settles())

    async def flush_settles(self) -> int:
        """Retry the queued settles while the breaker stays closed; returns how many went
        through. Runs by itself after the first successful call following an outage."""
        done = 0
        while self._queued and self.breaker.state == "closed":
            admission, tokens, cost = self._queued.popleft()
            try:
                await self._call(
                    lambda a=admission, t=tokens, c=cost: self.primary.settle(a, t, c),
                    self.settle_timeout,
                )
            except self._failures:
                self._queued.appendleft((admission, tokens, cost))
                break
            done += 1
        return done

    async def close(self) -> None:
        if self._flushing is not None and not self._flushing.done():
            self._flushing.cancel()
            try:
                await self._flushing
            except (asyncio.CancelledError, *self._failures):
                pass
        await self.primary.close()
        await self.fallback.close()


def _report(done: Callable[[asyncio.Future[Any]], None] | None, result: object) -> None:
    if done is not None:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(result)
        done(future)


def _as_local(admission: Admission) -> Admission:
    from dataclasses import replace

    return replace(admission, local=True)
