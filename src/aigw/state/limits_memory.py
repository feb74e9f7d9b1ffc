"""The in-process limit store: the embedded default, and the breaker's fail-open fallback.

It is the reference of the semantics in ``docs/limits.md``: the Redis store's Lua script does
exactly what :meth:`MemoryLimitStore._admit` and :meth:`MemoryLimitStore._settle` do, step for
step, and one behavioural suite runs against both. Limits hold for one process only (the
gateway's workers are processes: each would count on its own), so any deployment with more
than one gateway process needs Redis.

``admit`` and ``settle`` never await: on one event loop each is atomic. A lock makes them safe
from several threads too.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aigw.state.limits import (
    CONCURRENCY_RETRY_MS,
    DEFAULT_LEASE_SECONDS,
    DEFAULT_SETTLE_TTL_SECONDS,
    NEVER,
    SLIDING_KINDS,
    TOKEN_KINDS,
    WINDOW_SECONDS,
    Admission,
    CheckResult,
    Clock,
    LimitPlan,
    build_admission,
    new_admission_id,
    period_of,
    unchecked_admission,
)

W = WINDOW_SECONDS
PRUNE_EVERY_MS = 60_000


@dataclass(slots=True)
class _Sliding:
    """A sliding window: amounts per one-second bucket, their total, the oldest bucket that may
    still hold something, and the newest bucket written."""

    oldest: int
    newest: int
    total: int = 0
    buckets: dict[int, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Fixed:
    """A UTC day or month counter: which period it counts and how much."""

    period: int
    value: int
    end_ms: int


class _Expiring:
    """Ids with expiry times, like a Redis sorted set scored by expiry: add, remove, and drop
    the expired in O(log n) each (a heap with lazy deletion, compacted when it is mostly
    stale)."""

    __slots__ = ("_expiry", "_heap")

    def __init__(self) -> None:
        self._expiry: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self._expiry)

    def add(self, member: str, expiry: int) -> None:
        self._expiry[member] = expiry
        heapq.heappush(self._heap, (expiry, member))
        if len(self._heap) > 2 * len(self._expiry) + 64:
            self._heap = [(e, m) for m, e in self._expiry.items()]
            heapq.heapify(self._heap)

    def remove(self, member: str) -> int | None:
        """Remove ``member``; its expiry, or ``None`` if it was absent."""
        return self._expiry.pop(member, None)

    def purge(self, now: int) -> None:
        """Drop every member whose expiry is ``<= now`` (ZREMRANGEBYSCORE -inf now)."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            expiry, member = heapq.heappop(heap)
            if self._expiry.get(member) == expiry:
                del self._expiry[member]


StateKey = tuple[str, str, str]
"""(namespace, scope, kind)."""


class MemoryLimitStore:
    """Limits in process; see the module documentation."""

    def __init__(
        self,
        *,
        clock: Clock = time.time,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        settle_ttl_seconds: float = DEFAULT_SETTLE_TTL_SECONDS,
    ) -> None:
        self._clock = clock
        self._lease_ms = int(lease_seconds * 1000)
        self._settle_ttl_ms = int(settle_ttl_seconds * 1000)
        self._sliding: dict[StateKey, _Sliding] = {}
        self._fixed: dict[StateKey, _Fixed] = {}
        self._leases: dict[StateKey, _Expiring] = {}
        self._pending: dict[str, _Expiring] = {}
        self._lock = threading.Lock()
        self._pruned = 0

    def _now_ms(self) -> int:
        return math.floor(self._clock() * 1000)

    # -- the interface ----------------------------------------------------------------------

    async def admit(self, plan: LimitPlan, *, admission_id: str | None = None) -> Admission:
        if not plan.checks:
            return unchecked_admission(plan, admission_id, self._now_ms())
        return self._admit(plan, admission_id or new_admission_id(), dry_run=False)

    async def peek(self, plan: LimitPlan) -> Admission:
        if not plan.checks:
            return unchecked_admission(plan, None, self._now_ms())
        return self._admit(plan, new_admission_id(), dry_run=True)

    async def settle(
        self, admission: Admission, actual_tokens: int, actual_cost_micro: int
    ) -> bool:
        if not admission.allowed or not admission.plan.needs_settle():
            return False
        return self._settle(admission, actual_tokens, actual_cost_micro)

    def settle_soon(
        self,
        admission: Admission,
        actual_tokens: int,
        actual_cost_micro: int,
        done: Callable[[asyncio.Future[Any]], None] | None = None,
    ) -> None:
        """:meth:`settle`, done at once: in process there is nothing to batch."""
        applied = False
        if admission.allowed and admission.plan.needs_settle():
            applied = self._settle(admission, actual_tokens, actual_cost_micro)
        if done is not None:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            future.set_result(applied)
            done(future)

    async def close(self) -> None:
        pass

    # -- windows (the Lua script mirrors these) ---------------------------------------------

    def _slide(self, key: StateKey, sec: int) -> _Sliding | None:
        """Drop the buckets that left the window ending at second ``sec``."""
        state = self._sliding.get(key)
        if state is None:
            return None
        low = sec - W
        if state.newest < low:
            del self._sliding[key]
            return None
        if state.oldest < low:
            for bucket in range(state.oldest, low):
                state.total -= state.buckets.pop(bucket, 0)
            state.total = max(0, state.total)
            state.oldest = low
        return state

    @staticmethod
    def _sliding_retry(
        state: _Sliding, sec: int, used: int, cost: int, limit: int, now: int
    ) -> int:
        if cost > limit:
            return NEVER
        need = used + cost - limit
        last = max(sec, state.newest)
        for bucket in range(sec - W, min(last, sec + W) + 1):
            need -= state.buckets.get(bucket, 0)
            if need <= 0:
                return (bucket + W + 1) * 1000 - now
        return (last + W + 1) * 1000 - now

    def _fixed_state(self, key: StateKey, period: int) -> _Fixed | None:
        state = self._fixed.get(key)
        if state is not None and state.period != period:
            return None
        return state

    def _admit(self, plan: LimitPlan, admission_id: str, *, dry_run: bool) -> Admission:
        with self._lock:
            now = self._now_ms()
            sec = now // 1000
            if now - self._pruned >= PRUNE_EVERY_MS:
                self._prune(now)
            ns = plan.namespace
            used: list[int] = []
            for check in plan.checks:
                key = (ns, check.scope, check.kind)
                if check.kind in SLIDING_KINDS:
                    state = self._slide(key, sec)
                    used.append(state.total if state else 0)
                elif check.kind == "concurrency":
                    leases = self._leases.get(key)
                    if leases is not None:
                        leases.purge(now)
                    used.append(len(leases) if leases is not None else 0)
                else:
                    state = self._fixed_state(key, period_of(check.kind, now)[0])
                    used.append(state.value if state else 0)
            costs = [plan.cost(check) for check in plan.checks]
            allowed = all(
                u + c <= check.limit for u, c, check in zip(used, costs, plan.checks, strict=True)
            )
            reserve = allowed and not dry_run
            results = []
            for check, u, cost in zip(plan.checks, used, costs, strict=True):
                key = (ns, check.scope, check.kind)
                fits = u + cost <= check.limit
                after = u + cost if reserve else u
                if check.kind in SLIDING_KINDS:
                    state = self._sliding.get(key)
                    if reserve and cost > 0:
                        bucket = max(sec, state.newest) if state else sec
                        if state is None:
                            state = self._sliding[key] = _Sliding(oldest=bucket, newest=bucket)
                        state.buckets[bucket] = state.buckets.get(bucket, 0) + cost
                        state.total += cost
                        state.newest = bucket
                    reset = (state.newest + W + 1) * 1000 - now if state and after > 0 else 0
                    if fits:
                        retry = 0
                    elif state is None:
                        retry = NEVER
                    else:
                        retry = self._sliding_retry(state, sec, u, cost, check.limit, now)
                elif check.kind == "concurrency":
                    if reserve:
                        leases = self._leases.setdefault(key, _Expiring())
                        leases.add(admission_id, now + self._lease_ms)
                    reset = 0
                    retry = 0 if fits else (NEVER if cost > check.limit else CONCURRENCY_RETRY_MS)
                else:
                    period, end = period_of(check.kind, now)
                    if reserve and cost > 0:
                        state = self._fixed_state(key, period)
                        if state is None:
                            self._fixed[key] = _Fixed(period, cost, end)
                        else:
                            state.value += cost
                    reset = end - now if after > 0 else 0
                    retry = 0 if fits else (NEVER if cost > check.limit else end - now)
                results.append(CheckResult(u, reset, retry))
            if reserve and plan.needs_settle():
                pending = self._pending.setdefault(ns, _Expiring())
                pending.purge(now)
                pending.add(admission_id, now + self._settle_ttl_ms)
            return build_admission(plan, admission_id, allowed, now, results)

    def _settle(self, admission: Admission, actual_tokens: int, actual_cost_micro: int) -> bool:
        plan = admission.plan
        with self._lock:
            now = self._now_ms()
            sec = now // 1000
            ns = plan.namespace
            pending = self._pending.get(ns)
            deadline = pending.remove(admission.id) if pending is not None else None
            first = deadline is not None and deadline > now
            token_delta = actual_tokens - plan.estimated_tokens
            cost_delta = actual_cost_micro - plan.estimated_cost_micro
            for check in plan.checks:
                key = (ns, check.scope, check.kind)
                if check.kind == "concurrency":
                    leases = self._leases.get(key)
                    if leases is not None:
                        leases.remove(admission.id)
                    continue
                if not first:
                    continue
                delta = token_delta if check.kind in TOKEN_KINDS else cost_delta
                if check.kind in ("rpm", "rpd") or delta == 0:
                    continue
                if check.kind in SLIDING_KINDS:
                    state = self._slide(key, sec)
                    bucket = admission.at_ms // 1000
                    if state is not None and bucket >= sec - W and bucket in state.buckets:
                        old = state.buckets[bucket]
                        new = max(0, old + delta)
                        state.buckets[bucket] = new
                        state.total = max(0, state.total + new - old)
                else:
                    state = self._fixed_state(key, period_of(check.kind, admission.at_ms)[0])
                    if state is not None:
                        state.value = max(0, state.value + delta)
            return first

    def _prune(self, now: int) -> None:
        """Forget what can no longer count (the Redis store lets such keys expire)."""
        self._pruned = now
        low = now // 1000 - W
        for key in [k for k, s in self._sliding.items() if s.newest < low]:
            del self._sliding[key]
        for key in [k for k, s in self._fixed.items() if s.end_ms <= now]:
            del self._fixed[key]
        for group in (self._leases, self._pending):
            for key, entries in list(group.items()):
                entries.purge(now)
                if not entries:
                    del group[key]
