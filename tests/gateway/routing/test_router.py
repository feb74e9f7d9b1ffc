from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from aigw.config.schema import Config
from aigw.config.snapshot import build_snapshot
from aigw.gateway.core.errors import ModelNotFound, UpstreamUnavailable
from aigw.gateway.routing.router import choose_target, resolve_model


def _snapshot(targets: list[dict[str, Any]]):  # type: ignore[no-untyped-def]
    return build_snapshot(
        Config.model_validate(
            {
                "providers": [{"name": p, "base_url": f"http://{p}/v1"} for p in "abc"],
                "models": [{"name": "m", "aliases": ["alias"], "targets": targets}],
            }
        )
    )


def test_resolve_by_name_or_alias_and_404_otherwise() -> None:
    snapshot = _snapshot([{"provider": "a", "model": "up"}])
    assert resolve_model(snapshot, "alias").name == "m"
    with pytest.raises(ModelNotFound) as raised:
        resolve_model(snapshot, "nope")
    assert raised.value.status == 404 and raised.value.param == "model"


def test_weighted_choice_within_the_first_priority_group() -> None:
    random.seed(7)
    model = resolve_model(
        _snapshot(
            [
                {"provider": "a", "model": "x", "weight": 3},
                {"provider": "b", "model": "x", "weight": 1},
                {"provider": "c", "model": "x", "priority": 1, "weight": 100},
            ]
        ),
        "m",
    )
    picks = Counter(choose_target(model).provider.name for _ in range(4000))
    assert set(picks) == {"a", "b"}  # the fallback group is never used while group 0 has weight
    assert 2.5 < picks["a"] / picks["b"] < 3.5


def test_zero_weight_group_falls_through_and_all_zero_is_502() -> None:
    model = resolve_model(
        _snapshot(
            [
                {"provider": "a", "model": "x", "weight": 0},
                {"provider": "b", "model": "x", "priority": 2},
            ]
        ),
        "m",
    )
    assert choose_target(model).provider.name == "b"
    dead = resolve_model(_snapshot([{"provider": "a", "model": "x", "weight": 0}]), "m")
    with pytest.raises(UpstreamUnavailable):
        choose_target(dead)
