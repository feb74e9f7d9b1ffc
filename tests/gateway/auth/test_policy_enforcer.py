from __future__ import annotations

from ipaddress import ip_address
from typing import Any

import pytest

from aigw.config.keys import hash_key
from aigw.config.schema import Config
from aigw.config.snapshot import KeyEntry, ModelEntry, build_snapshot
from aigw.gateway.auth.policy_enforcer import enforce_policy
from aigw.gateway.core.errors import InvalidRequest, PermissionDenied


def _entries(
    policy: dict[str, Any], key_policy: dict[str, Any] | None = None
) -> tuple[KeyEntry, ModelEntry]:
    key: dict[str, Any] = {"name": "k", "key_hash": hash_key("sk-1")}
    if key_policy is not None:
        key["policy"] = key_policy
    snapshot = build_snapshot(
        Config.model_validate(
            {
                "providers": [{"name": "p", "base_url": "http://x/v1"}],
                "models": [{"name": "m", "targets": [{"provider": "p", "model": "m"}]}],
                "namespaces": [{"name": "ns", "policy": policy, "keys": [key]}],
            }
        )
    )
    entry = snapshot.keys_by_hash[hash_key("sk-1").removeprefix("sha256:")]
    return entry, snapshot.models_by_name["m"]


def test_ip_allow_lists_of_namespace_and_key_both_apply() -> None:
    key, model = _entries({"ip_allow": ["10.0.0.0/8"]}, {"ip_allow": ["10.1.0.0/16", "::1/128"]})
    enforce_policy(key, model, {}, ip_address("10.1.2.3"))
    for refused in ("10.2.0.1", "192.168.1.1", "::1"):  # ::1 passes the key but not the namespace
        with pytest.raises(PermissionDenied) as raised:
            enforce_policy(key, model, {}, ip_address(refused))
        assert raised.value.code == "ip_not_allowed"
    with pytest.raises(PermissionDenied):
        enforce_policy(key, model, {}, None)  # no address known: an allow list cannot be met


def test_no_allow_list_admits_any_address() -> None:
    key, model = _entries({})
    enforce_policy(key, model, {}, None)
    enforce_policy(key, model, {}, ip_address("203.0.113.9"))


def test_max_tokens_cap_is_the_tighter_of_namespace_and_key() -> None:
    key, model = _entries({"max_tokens": 1000}, {"max_tokens": 200})
    assert key.max_tokens == 200
    enforce_policy(key, model, {"max_tokens": 200}, None)
    for param in ("max_tokens", "max_completion_tokens"):
        with pytest.raises(InvalidRequest) as raised:
            enforce_policy(key, model, {param: 201}, None)
        assert (raised.value.status, raised.value.param, raised.value.code) == (
            400,
            param,
            "max_tokens_exceeded",
        )
    looser_key, _ = _entries({"max_tokens": 100}, {"max_tokens": 5000})
    assert looser_key.max_tokens == 100  # a key cannot widen its namespace


def test_model_denial_is_403() -> None:
    key, model = _entries({"models": {"deny": ["m"]}})
    with pytest.raises(PermissionDenied) as raised:
        enforce_policy(key, model, {}, None)
    assert raised.value.code == "model_not_allowed"
