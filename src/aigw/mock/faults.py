"""Deciding, per request, how slow and how broken the answer will be."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from aigw.mock.errors import ApiError
from aigw.mock.options import MockOptions

DEFAULT_CUT_AFTER = 5
"""Events sent before a randomly drawn mid-stream disconnect: every protocol's preamble (at
most 3 events, Anthropic's) and then some tokens, so clients are cut off mid-answer."""
DEFAULT_ERROR_AFTER = DEFAULT_CUT_AFTER
"""Events sent before a randomly drawn mid-stream error event, for the same reason."""

# Per-request overrides, so a test can target one request without reconfiguring the server.
LATENCY_HEADER = "x-mock-latency-ms"
STATUS_HEADER = "x-mock-status"
HANG_HEADER = "x-mock-hang"
DISCONNECT_HEADER = "x-mock-disconnect-after"
STREAM_ERROR_HEADER = "x-mock-stream-error-after"
SPEED_HEADER = "x-mock-tokens-per-second"

_NUMBER = "a finite number >= 0"

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """The resolved behaviour of one request."""

    latency_s: float
    seconds_per_token: float
    """0 means unpaced."""
    hang: bool
    error_status: int | None
    """Answer with this error status instead of the real answer."""
    cut_after: int | None
    """For streams: events to send before cutting the connection."""
    error_after: int | None = None
    """For streams: events to send before an error event that ends the stream (cleanly: the
    response itself completes, as the providers' do after such an error)."""

    def generation_s(self, tokens: int) -> float:
        """Time from the first to the last of ``tokens`` paced tokens."""
        return self.seconds_per_token * max(tokens - 1, 0)


def plan_faults(
    headers: Mapping[str, str], options: MockOptions, rng: random.Random, *, streaming: bool
) -> FaultPlan:
    """Combine the live options, the request's override headers and random fault draws.

    The RNG is drawn from only for rates that are set and not overridden by a header, so a
    seeded sequence of outcomes is spent only on the requests left to chance.
    Raises ApiError(400) for a malformed override header.
    """
    latency_ms = _header(headers, LATENCY_HEADER, _non_negative_float, _NUMBER, options.latency_ms)
    speed = _header(headers, SPEED_HEADER, _non_negative_float, _NUMBER, options.tokens_per_second)

    forced_status = _header(headers, STATUS_HEADER, _status, "an HTTP status (100..599)", None)
    if forced_status is None:
        error_status = options.error_status if _draw(rng, options.error_rate) else None
    else:
        # A non-error status such as 200 forces success despite error_rate.
        error_status = forced_status if forced_status >= 400 else None

    hang = _header(headers, HANG_HEADER, _flag, "1 or 0", None)
    if hang is None:
        hang = _draw(rng, options.hang_rate)

    cut_after = _header(headers, DISCONNECT_HEADER, _non_negative_int, "an integer >= 0", None)
    if not streaming:
        cut_after = None  # only streams are cut; complete answers cannot arrive half-way
    elif cut_after is None and _draw(rng, options.disconnect_rate):
        cut_after = DEFAULT_CUT_AFTER

    error_after = _header(headers, STREAM_ERROR_HEADER, _non_negative_int, "an integer >= 0", None)
    if not streaming:
        error_after = None
    elif error_after is None and _draw(rng, options.stream_error_rate):
        error_after = DEFAULT_ERROR_AFTER

    return FaultPlan(
        latency_s=latency_ms / 1000.0,
        seconds_per_token=1.0 / speed if speed > 0 else 0.0,
        hang=hang,
        error_status=error_status,
        cut_after=cut_after,
        error_after=error_after,
    )


def _draw(rng: random.Random, rate: float) -> bool:
    return rate > 0 and rng.random() < rate


def _header(
    headers: Mapping[str, str],
    name: str,
    parse: Callable[[str], _T],
    expected: str,
    default: _T,
) -> _T:
    raw = headers.get(name)
    if raw is None:
        return default
    try:
        return parse(raw.strip())
    except ValueError:
        raise ApiError(400, f"Invalid {name} header {raw!r}: expected {expected}.") from None


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if not 0 <= value < math.inf:  # also rejects NaN
        raise ValueError(raw)
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError(raw)
    return value


def _status(raw: str) -> int:
    value = int(raw)
    if not 100 <= value <= 599:
        raise ValueError(raw)
    return value


def _flag(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise ValueError(raw)
