"""Knobs of the mock upstream: speed, answer length and injected faults."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass
class MockOptions:
    """How the mock upstream behaves; every field can be changed live via ``PUT /_mock/config``.

    Fault rates are independent per-request probabilities drawn from a private RNG (seeded by
    ``seed`` for reproducible runs). Per-request ``x-mock-*`` headers override all of them.
    """

    latency_ms: float = 0.0
    """Delay before the response starts (before the headers and the first stream chunk)."""
    tokens_per_second: float = 0.0
    """Generation speed; 0 means as fast as possible. Streams are paced token by token and
    non-streaming answers are held back until their last token would have been streamed."""
    error_rate: float = 0.0
    """Fraction (0..1) of API requests answered with ``error_status``."""
    error_status: int = 500
    """Status of injected errors (400..599)."""
    hang_rate: float = 0.0
    """Fraction (0..1) of API requests never answered until the client gives up."""
    disconnect_rate: float = 0.0
    """Fraction (0..1) of streaming requests cut off mid-stream, without the terminating event."""
    stream_error_rate: float = 0.0
    """Fraction (0..1) of streaming requests that report an error mid-stream (an Anthropic
    ``error`` event, an OpenAI ``data: {"error": ...}`` chunk) and then end."""
    completion_tokens: int = 16
    """Answer length in tokens when the request sets no lower ``max_tokens``."""
    seed: int | None = None
    """Seed of the fault RNG; ``None`` draws from system entropy."""

    def __post_init__(self) -> None:
        # Values arrive from JSON (PUT /_mock/config) and the CLI, so types are checked too;
        # bools are rejected explicitly because they are ints to Python but never meant here.
        for name in ("latency_ms", "tokens_per_second"):
            value = _number(name, getattr(self, name))
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
            setattr(self, name, value)
        for name in ("error_rate", "hang_rate", "disconnect_rate", "stream_error_rate"):
            value = _number(name, getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
            setattr(self, name, value)
        if not 400 <= _integer("error_status", self.error_status) <= 599:
            raise ValueError(f"error_status must be within 400..599, got {self.error_status}")
        if _integer("completion_tokens", self.completion_tokens) < 1:
            raise ValueError(f"completion_tokens must be >= 1, got {self.completion_tokens}")
        if self.seed is not None:
            _integer("seed", self.seed)

    def updated(self, changes: Mapping[str, Any]) -> MockOptions:
        """Return a validated copy with ``changes`` applied; unknown names raise ValueError."""
        unknown = sorted(set(changes) - {field.name for field in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"unknown option(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def _integer(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return value
