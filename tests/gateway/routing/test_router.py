from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from aigw.config.schema import CircuitBreakerSettings, Config
from aigw.config.snapshot import ModelEntry, build_snapshot
from aigw.gateway.core.errors import ModelNotFound, NoUpstreamAvailable
from aigw.gateway.routing.router import Router, TargetBreaker, resolve_model

SETTINGS = CircuitBreakerSettings(
    consecutive_failures=3, error_rate=0.5, window=10, min_requests=6, cooldown=5
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _model(targets: list[dict[str, Any]], strategy: str = "weighted") -> ModelEntry:
    snapshot = build_snapshot(
        Config.model_validate(
            {
                "providers": [{"name": p, "base_url": f"http://{p}/v1"} for p in "abcd"],
                "models": [
                    {
                        "name": "m",
                        "aliases": ["alias"],
                        "targets": targets,
                        "routing": {"strategy": strategy},
                    }
                ],
            }
        )
    )
    return resolve_model(snapshot, "m")


def _names(plan: list[Any]) -> list[str]:
    return [t.provider.name for t in plan]


def test_resolve_by_name_or_alias_and_404_otherwise() -> None:
    model = _model([{"provider": "a", "model": "up"}])
    assert model.name == "m"
    snapshot = build_snapshot(
        Config.model_validate(
            {
                "providers": [{"name": "a", "base_url": "http://a/v1"}],
                "models": [
                    {
                        "name": "m",
                        "aliases": ["alias"],
                        "targets": [{"provider": "a", "model": "x"}],
                    }
                ],
            }
        )
    )
    assert resolve_model(snapshot, "alias").name == "m"
    with pytest.raises(ModelNotFound) as raised:
        resolve_model(snapshot, "nope")
    assert raised.value.status == 404 and raised.value.param == "model"


def test_weighted_order_within_a_group_then_the_fallback_group() -> None:
    random.seed(7)
    model = _model(
        [
            {"provider": "a", "model": "x", "weight": 3},
            {"provider": "b", "model": "x", "weight": 1},
            {"provider": "c", "model": "x", "priority": 1, "weight": 100},
        ]
    )
    router = Router()
    plans = [_names(router.plan(model, SETTINGS)) for _ in range(4000)]
    assert all(plan[2] == "c" for plan in plans)  # the fallback group always comes last
    firsts = Counter(plan[0] for plan in plans)
    assert set(firsts) == {"a", "b"}
    assert 2.5 < firsts["a"] / firsts["b"] < 3.5  # first place drawn by weight


def test_zero_weight_is_never_tried_and_nothing_left_is_a_503() -> None:
    model = _model(
        [
            {"provider": "a", "model": "x", "weight": 0},
            {"provider": "b", "model": "x", "priority": 2},
        ]
    )
    assert _names(Router().plan(model, SETTINGS)) == ["b"]
    dead = _model([{"provider": "a", "model": "x", "weight": 0}])
    with pytest.raises(NoUpstreamAvailable) as raised:
        Router().plan(dead, SETTINGS)
    assert raised.value.status == 503 and "retry-after" in raised.value.headers


def test_least_inflight_puts_the_idlest_target_first() -> None:
    model = _model([{"provider": p, "model": "x"} for p in "abc"], strategy="least_inflight")
    router = Router()
    for name, busy in (("a", 4), ("b", 1), ("c", 2)):
        target = next(t for t in model.targets if t.provider.name == name)
        router.state(target).in_flight = busy
    assert _names(router.plan(model, SETTINGS)) == ["b", "c", "a"]


def test_lowest_latency_measures_unknown_targets_first_then_prefers_the_fastest() -> None:
    model = _model([{"provider": p, "model": "x"} for p in "abc"], strategy="lowest_latency")
    router = Router()
    a, b, _ = model.targets
    router.state(a).observe_latency(0.300)
    router.state(b).observe_latency(0.100)
    assert _names(router.plan(model, SETTINGS)) == ["c", "b", "a"]
    for _ in range(30):  # a moving average: a's new speed wins it first place over time
        router.state(a).observe_latency(0.010)
    router.state(model.targets[2]).observe_latency(0.200)
    assert _names(router.plan(model, SETTINGS)) == ["a", "b", "c"]


def test_consecutive_failures_open_the_breaker_and_one_probe_closes_it() -> None:
    clock = Clock()
    breaker = TargetBreaker(clock)
    assert not breaker.record(False, SETTINGS)
    assert not breaker.record(False, SETTINGS)
    assert breaker.record(False, SETTINGS)  # the third in a row opens it
    assert breaker.state == "open" and not breaker.available(SETTINGS)
    clock.now += 5
    assert breaker.available(SETTINGS)  # looking takes nothing...
    assert breaker.available(SETTINGS)
    assert breaker.begin(SETTINGS)  # ...trying takes the one probe: half-open
    assert breaker.state == "half_open"
    assert not breaker.available(SETTINGS) and not breaker.begin(SETTINGS)  # only one
    breaker.record(False, SETTINGS)  # the probe failed: open again, for a whole cooldown
    assert breaker.state == "open"
    clock.now += 4.9
    assert not breaker.begin(SETTINGS)
    clock.now += 0.1
    assert breaker.begin(SETTINGS)
    breaker.record(True, SETTINGS)
    assert breaker.state == "closed" and breaker.available(SETTINGS)


def test_a_lost_probe_gets_a_successor_after_a_cooldown() -> None:
    clock = Clock()
    breaker = TargetBreaker(clock)
    for _ in range(3):
        breaker.record(False, SETTINGS)
    clock.now += 5
    assert breaker.begin(SETTINGS)  # the probe never reports back
    clock.now += 4
    assert not breaker.begin(SETTINGS)
    clock.now += 1
    assert breaker.begin(SETTINGS)


def test_an_error_rate_over_the_window_opens_the_breaker() -> None:
    clock = Clock()
    breaker = TargetBreaker(clock)
    opened = []
    for _ in range(6):  # alternate: never 3 in a row, but half of them fail
        opened.append(breaker.record(True, SETTINGS))
        clock.now += 0.5
        opened.append(breaker.record(False, SETTINGS))
    assert opened.index(True) == 5  # at the 6th request (min_requests): 3 of 6 failed
    assert breaker.state == "open"


def test_old_failures_leave_the_window() -> None:
    clock = Clock()
    breaker = TargetBreaker(clock)
    for _ in range(2):
        breaker.record(False, SETTINGS)
        breaker.record(True, SETTINGS)
    clock.now += 11  # the window is 10 s
    for _ in range(5):
        breaker.record(True, SETTINGS)
    assert not breaker.record(False, SETTINGS)  # 1 of 6 in the window
    assert breaker.state == "closed"


def test_open_cooling_and_unhealthy_targets_are_left_out() -> None:
    clock = Clock()
    model = _model([{"provider": p, "model": "x"} for p in "abcd"], strategy="least_inflight")
    router = Router(clock)
    a, b, _, d = model.targets
    for _ in range(3):
        router.state(a).breaker.record(False, SETTINGS)
    router.state(b).cooling_until = clock.now + 2  # a 429 said Retry-After: 2
    router.unhealthy_providers.add("c")
    assert _names(router.plan(model, SETTINGS)) == ["d"]
    clock.now += 2
    assert sorted(_names(router.plan(model, SETTINGS))) == ["b", "d"]
    router.unhealthy_providers.clear()
    router.state(d).breaker.record(False, SETTINGS)  # one failure does not open it
    assert sorted(_names(router.plan(model, SETTINGS))) == ["b", "c", "d"]


def test_nothing_available_is_a_503_saying_when_to_retry() -> None:
    clock = Clock()
    model = _model([{"provider": "a", "model": "x"}])
    router = Router(clock)
    for _ in range(3):
        router.state(model.targets[0]).breaker.record(False, SETTINGS)
    clock.now += 2
    with pytest.raises(NoUpstreamAvailable) as raised:
        router.plan(model, SETTINGS)
    assert raised.value.headers["retry-after"] == "3"
    assert raised.value.code == "no_upstream_available"


def test_targets_only_rate_limited_by_their_provider_are_a_429() -> None:
    clock = Clock()
    model = _model([{"provider": p, "model": "x"} for p in "ab"])
    router = Router(clock)
    for target in model.targets:
        router.state(target).cooling_until = clock.now + 1.5
    with pytest.raises(NoUpstreamAvailable) as raised:
        router.plan(model, SETTINGS)
    assert raised.value.status == 429 and raised.value.headers["retry-after"] == "2"
    for _ in range(3):
        router.state(model.targets[0]).breaker.record(False, SETTINGS)
    with pytest.raises(NoUpstreamAvailable) as raised:
        router.plan(model, SETTINGS)
    assert raised.value.status == 503  # one of them is failing, not just busy


def test_planning_reserves_no_probe_only_a_try_does() -> None:
    """A plan lists a fallback past its cooldown without taking its probe, so when the target
    before it fails, the fallback can still be tried."""
    clock = Clock()
    model = _model(
        [{"provider": "a", "model": "x"}, {"provider": "b", "model": "x", "priority": 1}]
    )
    router = Router(clock)
    a, b = model.targets
    for _ in range(3):
        router.state(b).breaker.record(False, SETTINGS)
    clock.now += 5
    assert _names(router.plan(model, SETTINGS)) == ["a", "b"]
    assert router.acquire(a, SETTINGS)
    assert router.acquire(b, SETTINGS)  # a failed: b's probe is this try's
    assert not router.acquire(b, SETTINGS)  # and nobody else's


def test_cooling_uses_the_router_clock() -> None:
    clock = Clock()
    model = _model([{"provider": "a", "model": "x"}, {"provider": "b", "model": "x"}])
    router = Router(clock)
    router.cool(model.targets[0], 2.0)
    assert _names(router.plan(model, SETTINGS)) == ["b"]
    clock.now += 2
    assert sorted(_names(router.plan(model, SETTINGS))) == ["a", "b"]
