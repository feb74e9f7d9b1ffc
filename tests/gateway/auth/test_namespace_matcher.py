from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aigw.config.keys import hash_key
from aigw.config.schema import Config
from aigw.config.snapshot import build_snapshot
from aigw.gateway.auth.namespace_matcher import caller_key, match_namespace
from aigw.gateway.core.errors import AuthenticationFailed


def _scope(*headers: tuple[str, str]) -> dict:
    return {"headers": [(k.encode(), v.encode()) for k, v in headers]}


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ((("authorization", "Bearer sk-1"),), "sk-1"),
        ((("authorization", "bearer   sk-1 "),), "sk-1"),
        ((("api-key", "sk-2"),), "sk-2"),
        ((("x-api-key", "sk-3"),), "sk-3"),
        ((("x-api-key", "sk-3"), ("authorization", "Bearer sk-1")), "sk-1"),
        ((("x-api-key", "sk-3"), ("api-key", "sk-2")), "sk-2"),
        ((("authorization", "Basic abc"), ("x-api-key", "sk-3")), "sk-3"),
        ((("authorization", "Bearer "),), None),
        ((), None),
    ],
)
def test_caller_key_precedence(headers: tuple[tuple[str, str], ...], expected: str | None) -> None:
    assert caller_key(_scope(*headers)) == expected


def _snapshot(expires_at: datetime | None = None):  # type: ignore[no-untyped-def]
    return build_snapshot(
        Config.model_validate(
            {
                "namespaces": [
                    {
                        "name": "ns",
                        "keys": [
                            {
                                "name": "k",
                                "key_hash": hash_key("sk-good"),
                                "prefix": "sk-go",
                                "expires_at": expires_at,
                            }
                        ],
                    }
                ]
            }
        )
    )


def test_known_key_maps_to_its_namespace() -> None:
    entry = match_namespace(_scope(("authorization", "Bearer sk-good")), _snapshot())
    assert (entry.namespace, entry.name, entry.prefix) == ("ns", "k", "sk-go")


def test_unknown_missing_and_expired_keys_are_refused() -> None:
    with pytest.raises(AuthenticationFailed) as raised:
        match_namespace(_scope(("authorization", "Bearer sk-bad")), _snapshot())
    assert raised.value.code == "invalid_api_key"
    with pytest.raises(AuthenticationFailed) as raised:
        match_namespace(_scope(), _snapshot())
    assert raised.value.code == "missing_api_key"
    past = datetime.now(UTC) - timedelta(seconds=1)
    with pytest.raises(AuthenticationFailed) as raised:
        match_namespace(_scope(("authorization", "Bearer sk-good")), _snapshot(past))
    assert raised.value.code == "expired_api_key"
    future = datetime.now(UTC) + timedelta(days=1)
    assert match_namespace(_scope(("authorization", "Bearer sk-good")), _snapshot(future))
