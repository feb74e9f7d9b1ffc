"""Tenant limits shared by every gateway process: the interface, its data, and what stores share.

The design is in ``docs/limits.md``; in short:

- A :class:`LimitPlan` lists the :class:`LimitCheck` s that apply to one request (its namespace's
  and its key's), with what the request is estimated to use (tokens and micro-USD).
- :meth:`LimitStore.admit` checks every limit and, only when all of them pass, reserves on all of
  them, atomically (one Redis round trip in :class:`~aigw.state.limits_redis.RedisLimitStore`).
  A request is admitted when ``used + cost <= limit`` for every check.
- :meth:`LimitStore.settle` (after the response, off the response path) corrects the token and
  spend reservations to the real usage and releases the concurrency slot; it applies at most once
  per admission.

Windows: ``rpm`` and ``tpm`` are sliding 60-second windows kept as one-second buckets (exact: a
reservation counts for more than 60 and at most 61 seconds, so no 60-second span ever holds more
than the limit); ``rpd``, ``tokens_per_day`` and ``spend_per_day_usd`` are UTC days;
``tokens_per_month`` and ``spend_per_month_usd`` are UTC calendar months; ``concurrency`` is a set
of leases that expire (:data:`DEFAULT_LEASE_SECONDS`) if a gateway dies before settling.
"""

from __future__ import annotations

import asyncio
import calendar
import functools
import math
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from aigw.state.breaker import FailMode

Kind = Literal[
    "rpm",
    "rpd",
    "tpm",
    "concurrency",
    "tokens_per_day",
    "tokens_per_month",
    "spend_per_day_usd",
    "spend_per_month_usd",
]
KINDS: tuple[Kind, ...] = (
    "rpm",
    "rpd",
    "tpm",
    "concurrency",
    "tokens_per_day",
    "tokens_per_month",
    "spend_per_day_usd",
    "spend_per_month_usd",
)

SLIDING_KINDS = frozenset({"rpm", "tpm"})
"""Sliding 60-second windows of one-second buckets."""
DAILY_KINDS = frozenset({"rpd", "tokens_per_day", "spend_per_day_usd"})
"""Fixed UTC days."""
MONTHLY_KINDS = frozenset({"tokens_per_month", "spend_per_month_usd"})
"""Fixed UTC calendar months."""
REQUEST_KINDS = frozenset({"rpm", "rpd", "concurrency"})
"""A request costs 1 on these."""
TOKEN_KINDS = frozenset({"tpm", "tokens_per_day", "tokens_per_month"})
"""A request costs its estimated (then actual) tokens on these."""
SPEND_KINDS = frozenset({"spend_per_day_usd", "spend_per_month_usd"})
"""A request costs its estimated (then actual) price in micro-USD on these."""
SETTLED_KINDS = TOKEN_KINDS | SPEND_KINDS | {"concurrency"}
"""Kinds that :meth:`LimitStore.settle` touches; a plan without any needs no settle."""
HEADER_REQUEST_KINDS = frozenset({"rpm", "rpd"})
"""Kinds behind ``x-ratelimit-*-requests`` (concurrency is not a rate: not in the headers)."""
HEADER_TOKEN_KINDS = frozenset({"tpm", "tokens_per_day", "tokens_per_month"})
"""Kinds behind ``x-ratelimit-*-tokens``."""

WINDOW_SECONDS = 60
"""Length of the sliding window of ``rpm`` and ``tpm``."""
DAY_MS = 86_400_000
DEFAULT_LEASE_SECONDS = 600
"""A concurrency slot not released by ``settle`` frees itself after this long (10 minutes)."""
DEFAULT_SETTLE_TTL_SECONDS = 3600
"""``settle`` corrects usage only within this long after admission (1 hour); later it only
releases the concurrency slot (already expired by then)."""
CONCURRENCY_RETRY_MS = 1000
"""``retry_after`` suggested when a concurrency limit refuses (a slot frees when some request
ends, which no store can predict)."""
DEFAULT_PREFIX = "aigw:lim"
NEVER = -1
"""A per-check ``retry_ms`` meaning the request can never pass (its cost alone exceeds the
limit)."""

Clock = Callable[[], float]
"""Unix time in seconds."""


def cost_of(kind: str, tokens: int, cost_micro: int) -> int:
    """What one request costs on a limit of ``kind``."""
    if kind in TOKEN_KINDS:
        return tokens
    if kind in SPEND_KINDS:
        return cost_micro
    return 1


# -- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LimitCheck:
    """One limit on one scope: at most ``limit`` of ``kind`` for ``scope``.

    ``scope`` names whose usage this is, e.g. ``ns:team`` for the namespace or ``key:team/ci`` for
    one of its keys (see :func:`namespace_scope`, :func:`key_scope`). Spend limits are in
    micro-USD (1 USD = 1,000,000).
    """

    scope: str
    kind: Kind
    limit: int

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown limit kind {self.kind!r}; one of {', '.join(KINDS)}")
        if not self.scope or any(c in self.scope for c in "{}\n\r"):
            raise ValueError(f"invalid limit scope {self.scope!r}")
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 0:
            raise ValueError(f"limit of {self.kind} for {self.scope} must be an integer >= 0")


CONFIG_FIELDS: dict[str, Kind] = {
    "requests_per_minute": "rpm",
    "requests_per_day": "rpd",
    "tokens_per_minute": "tpm",
    "concurrent_requests": "concurrency",
    "tokens_per_day": "tokens_per_day",
    "tokens_per_month": "tokens_per_month",
    "spend_per_day_usd": "spend_per_day_usd",
    "spend_per_month_usd": "spend_per_month_usd",
}
"""The configuration's ``policy.limits`` fields (``aigw.config.schema.Limits``) -> kinds."""


def limit_kinds(limits: object) -> dict[Kind, int]:
    """The kinds and limits set in a configuration ``Limits`` (read by attribute name; unset
    ones left out), budgets converted from USD to micro-USD."""
    found: dict[Kind, int] = {}
    for name, kind in CONFIG_FIELDS.items():
        value = getattr(limits, name, None)
        if value is None:
            continue
        found[kind] = round(value * 1_000_000) if kind in SPEND_KINDS else int(value)
    return found


def namespace_scope(namespace: str) -> str:
    return f"ns:{namespace}"


def key_scope(namespace: str, key: str) -> str:
    return f"key:{namespace}/{key}"


@dataclass(frozen=True, slots=True)
class LimitPlan:
    """Every limit that applies to one request, and what the request is estimated to use.

    ``namespace`` is the unit of sharding: every check of the plan is stored under the
    namespace's Redis hash tag (so a key's limits must be planned with its namespace).
    ``estimated_tokens`` is prompt tokens + ``max_tokens``; ``estimated_cost_micro`` is the price
    of those tokens in micro-USD. Build one with :meth:`for_request`.
    """

    namespace: str
    checks: tuple[LimitCheck, ...]
    estimated_tokens: int = 0
    estimated_cost_micro: int = 0
    _settles: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.namespace or any(c in self.namespace for c in "{}\n\r"):
            raise ValueError(f"invalid namespace {self.namespace!r}")
        if not isinstance(self.checks, tuple):
            object.__setattr__(self, "checks", tuple(self.checks))
        seen = set()
        for check in self.checks:
            pair = (check.scope, check.kind)
            if pair in seen:
                raise ValueError(f"{check.kind} for {check.scope} is in the plan twice")
            seen.add(pair)
        for name in ("estimated_tokens", "estimated_cost_micro"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0")
        settles = any(check.kind in SETTLED_KINDS for check in self.checks)
        object.__setattr__(self, "_settles", settles)

    def with_estimates(self, tokens: int, cost_micro: int) -> LimitPlan:
        """This plan for one request: the same (already validated) checks, its estimates.

        Once per request on the hot path, hence without ``dataclasses.replace``, which would
        validate the checks again."""
        if tokens < 0 or cost_micro < 0:
            raise ValueError("estimates must be >= 0")
        plan = object.__new__(LimitPlan)
        for name, value in (
            ("namespace", self.namespace),
            ("checks", self.checks),
            ("estimated_tokens", int(tokens)),
            ("estimated_cost_micro", int(cost_micro)),
            ("_settles", self._settles),
        ):
            object.__setattr__(plan, name, value)
        return plan

    @classmethod
    def for_request(
        cls,
        namespace: str,
        key: str | None = None,
        *,
        namespace_limits: Mapping[str, int | None] | None = None,
        key_limits: Mapping[str, int | None] | None = None,
        estimated_tokens: int = 0,
        estimated_cost_micro: int = 0,
    ) -> LimitPlan:
        """The plan of a request of ``key`` in ``namespace``: both sets of limits apply.

        ``*_limits`` map a kind to its limit (``None`` or absent: no limit of that kind).
        """
        checks = [
            LimitCheck(namespace_scope(namespace), kind, limit)  # type: ignore[arg-type]
            for kind, limit in (namespace_limits or {}).items()
            if limit is not None
        ]
        if key is not None:
            checks += [
                LimitCheck(key_scope(namespace, key), kind, limit)  # type: ignore[arg-type]
                for kind, limit in (key_limits or {}).items()
                if limit is not None
            ]
        return cls(namespace, tuple(checks), estimated_tokens, estimated_cost_micro)

    def cost(self, check: LimitCheck) -> int:
        return cost_of(check.kind, self.estimated_tokens, self.estimated_cost_micro)

    def needs_settle(self) -> bool:
        return self._settles


# -- the answer -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Exceeded:
    """The limit that refused a request."""

    kind: Kind
    scope: str
    limit: int
    current: int
    """Usage before this request (what it would have added to)."""
    cost: int
    """What this request would have added."""
    retry_after_seconds: float | None
    """When the request would fit again if nothing else happened; ``None``: never (its cost
    alone is over the limit)."""


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """One ``x-ratelimit-*`` trio: the tightest limit of its family after this request."""

    kind: Kind
    scope: str
    limit: int
    remaining: int
    reset_seconds: float
    """Until usage is back to zero (OpenAI's "resets to its initial state") if nothing else
    arrives: the sliding window drains, or the UTC day/month ends. 0 when nothing is used."""


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer of :meth:`LimitStore.admit`; give it back to :meth:`LimitStore.settle`."""

    id: str
    plan: LimitPlan
    allowed: bool
    at_ms: int
    """The store's time of the decision (Unix ms): which buckets and periods it reserved in."""
    exceeded: Exceeded | None = None
    """Why it was refused (``None`` when allowed, or when ``unavailable``)."""
    retry_after_seconds: float | None = None
    requests: RateLimitInfo | None = None
    """The tightest of the plan's ``rpm``/``rpd`` limits (``None``: the plan has none)."""
    tokens: RateLimitInfo | None = None
    """The tightest of the plan's ``tpm``/``tokens_per_day``/``tokens_per_month`` limits."""
    unavailable: bool = False
    """Refused because the shared store is unreachable and the breaker fails closed: a 503."""
    local: bool = False
    """Admitted by the process-local fallback while the shared store is unreachable (fail open);
    settled locally too."""
    checks: tuple[CheckResult, ...] = field(default=(), repr=False)
    """Per check of the plan, in order: usage before this request and the window's timing."""

    def headers(self) -> dict[str, str]:
        """OpenAI's rate-limit headers (and ``retry-after`` when refused)."""
        out: dict[str, str] = {}
        for family, info in (("requests", self.requests), ("tokens", self.tokens)):
            if info is not None:
                out[f"x-ratelimit-limit-{family}"] = str(info.limit)
                out[f"x-ratelimit-remaining-{family}"] = str(info.remaining)
                out[f"x-ratelimit-reset-{family}"] = format_duration(info.reset_seconds)
        if not self.allowed and self.retry_after_seconds is not None:
            out["retry-after"] = str(max(1, math.ceil(self.retry_after_seconds)))
            out["retry-after-ms"] = str(max(1, round(self.retry_after_seconds * 1000)))
        return out


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What a store reports for one check (the common code turns it into an Admission)."""

    used: int
    """Usage before this request."""
    reset_ms: int
    """Until usage is back to zero if nothing else arrives (this request's reservation included
    when it was admitted)."""
    retry_ms: int
    """Until this request would fit, when it does not now; :data:`NEVER` if it never can; 0
    when it fits."""


def format_duration(seconds: float) -> str:
    """Go-style durations, as OpenAI sends them: ``250ms``, ``1s``, ``59.5s``, ``6m0s``."""
    ms = max(0, round(seconds * 1000))
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def new_admission_id() -> str:
    return secrets.token_hex(8)


def _tightest(
    plan: LimitPlan, results: Sequence[CheckResult], kinds: frozenset[str], reserved: bool
) -> RateLimitInfo | None:
    """The check of ``kinds`` with the least remaining (then the lowest limit, then the first)."""
    best: tuple[int, int, int] | None = None
    info = None
    for index, (check, result) in enumerate(zip(plan.checks, results, strict=True)):
        if check.kind not in kinds:
            continue
        used = result.used + (plan.cost(check) if reserved else 0)
        remaining = max(0, check.limit - used)
        rank = (remaining, check.limit, index)
        if best is None or rank < best:
            best = rank
            info = RateLimitInfo(
                check.kind, check.scope, check.limit, remaining, result.reset_ms / 1000
            )
    return info


def build_admission(
    plan: LimitPlan,
    admission_id: str,
    allowed: bool,
    at_ms: int,
    results: Sequence[CheckResult],
    *,
    local: bool = False,
) -> Admission:
    """The one place both stores turn per-check results into an :class:`Admission`.

    When refused, the reported limit is the failing check with the longest wait (retrying before
    it is pointless); a check the request can never pass beats any wait; ties go to plan order.
    """
    exceeded = None
    retry_after = None
    if not allowed:
        worst: tuple[float, int] | None = None
        for index, (check, result) in enumerate(zip(plan.checks, results, strict=True)):
            cost = plan.cost(check)
            if result.used + cost <= check.limit:
                continue
            wait = math.inf if result.retry_ms == NEVER else result.retry_ms
            if worst is None or (wait, -index) > worst:
                worst = (wait, -index)
                retry = None if result.retry_ms == NEVER else result.retry_ms / 1000
                exceeded = Exceeded(check.kind, check.scope, check.limit, result.used, cost, retry)
        retry_after = exceeded.retry_after_seconds if exceeded else None
    return Admission(
        id=admission_id,
        plan=plan,
        allowed=allowed,
        at_ms=at_ms,
        exceeded=exceeded,
        retry_after_seconds=retry_after,
        requests=_tightest(plan, results, HEADER_REQUEST_KINDS, allowed),
        tokens=_tightest(plan, results, HEADER_TOKEN_KINDS, allowed),
        local=local,
        checks=tuple(results),
    )


def unchecked_admission(plan: LimitPlan, admission_id: str | None, at_ms: int) -> Admission:
    """The answer for a plan without checks: allowed, nothing stored, no round trip."""
    return Admission(admission_id or new_admission_id(), plan, True, at_ms)


# -- periods (UTC) ----------------------------------------------------------------------------


def period_of(kind: str, now_ms: int) -> tuple[int, int]:
    """``(period id, end in Unix ms)`` of the UTC day or month holding ``now_ms``.

    A day's id is its number since 1970-01-01; a month's is ``year * 12 + month - 1``.
    """
    return _period(kind in DAILY_KINDS, now_ms // DAY_MS)


@functools.lru_cache(maxsize=64)
def _period(daily: bool, day: int) -> tuple[int, int]:
    if daily:
        return day, (day + 1) * DAY_MS
    moment = datetime.fromtimestamp(day * 86_400, UTC)
    year, month = moment.year, moment.month
    month_days = calendar.monthrange(year, month)[1]
    start = datetime(year, month, 1, tzinfo=UTC)
    end_ms = int(start.timestamp()) * 1000 + month_days * DAY_MS
    return year * 12 + month - 1, end_ms


# -- the interface ----------------------------------------------------------------------------


class LimitStore(Protocol):
    async def admit(self, plan: LimitPlan, *, admission_id: str | None = None) -> Admission:
        """Check every limit of ``plan``; only if all pass, reserve on all (atomically).

        Reserves 1 on ``rpm``/``rpd``, ``estimated_tokens`` on token kinds,
        ``estimated_cost_micro`` on spend kinds, and a lease on ``concurrency``. A plan without
        checks is allowed without touching the store. ``admission_id`` defaults to a random id.
        """

    async def peek(self, plan: LimitPlan) -> Admission:
        """What :meth:`admit` would answer now, reserving nothing."""

    async def settle(
        self, admission: Admission, actual_tokens: int, actual_cost_micro: int
    ) -> bool:
        """Correct the admission's token and spend reservations to the actual usage and release
        its concurrency slot.

        Returns whether the corrections were applied: ``False`` for a refused admission, a
        repeated settle (it never counts twice), or one later than the settle TTL. The slot is
        released in every case.
        """

    def settle_soon(
        self,
        admission: Admission,
        actual_tokens: int,
        actual_cost_micro: int,
        done: Callable[[asyncio.Future[Any]], None] | None = None,
    ) -> None:
        """:meth:`settle` in the background, without a task per call where the store can
        batch it; ``done(future)`` is called with the outcome (by default failures are
        logged). :meth:`close` waits for every settle still on its way."""

    async def close(self) -> None: ...


def limit_store_for(
    redis_url: str | None,
    prefix: str = DEFAULT_PREFIX,
    *,
    cluster: bool = False,
    fail_mode: FailMode = "open",
    timeout: float | None = None,
) -> LimitStore:
    """Redis behind a circuit breaker when a URL is given, else the in-process store."""
    from aigw.state.limits_memory import MemoryLimitStore

    if not redis_url:
        return MemoryLimitStore()
    from aigw.state.breaker import BreakerLimitStore
    from aigw.state.limits_redis import RedisLimitStore

    options = {} if timeout is None else {"timeout": timeout}
    return BreakerLimitStore(
        RedisLimitStore(redis_url, prefix, cluster=cluster), fail_mode=fail_mode, **options
    )
