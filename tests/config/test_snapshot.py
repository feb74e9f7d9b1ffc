from __future__ import annotations

from typing import Any

from aigw.config.keys import hash_key
from aigw.config.schema import Config
from aigw.config.snapshot import build_snapshot


def _config(policy: dict[str, Any], key_policy: dict[str, Any] | None = None) -> Config:
    key: dict[str, Any] = {"name": "k", "key_hash": hash_key("sk-1")}
    if key_policy is not None:
        key["policy"] = key_policy
    return Config.model_validate(
        {
            "providers": [{"name": "p", "base_url": "http://x/v1", "api_key": "sk-up"}],
            "models": [
                {"name": n, "aliases": a, "targets": [{"provider": "p", "model": n}]}
                for n, a in [
                    ("gpt-4o", ["latest"]),
                    ("gpt-4o-mini", []),
                    ("claude-3.5", []),
                    ("o1", ["reasoning"]),
                ]
            ],
            "namespaces": [{"name": "ns", "policy": policy, "keys": [key]}],
        }
    )


def _allowed(policy: dict[str, Any], key_policy: dict[str, Any] | None = None) -> set[str]:
    snapshot = build_snapshot(_config(policy, key_policy))
    return set(snapshot.keys_by_hash[hash_key("sk-1").removeprefix("sha256:")].allowed_models)


def test_default_policy_allows_every_model() -> None:
    assert _allowed({}) == {"gpt-4o", "gpt-4o-mini", "claude-3.5", "o1"}


def test_wildcards_allow_and_deny() -> None:
    assert _allowed({"models": {"allow": ["gpt-4o*"]}}) == {"gpt-4o", "gpt-4o-mini"}
    assert _allowed({"models": {"allow": ["*"], "deny": ["*-mini", "claude-*"]}}) == {
        "gpt-4o",
        "o1",
    }


def test_only_star_is_special() -> None:
    # '.' and '?' are literal: 'claude-3?5' must not match 'claude-3.5'.
    assert _allowed({"models": {"allow": ["claude-3?5", "gpt-4o"]}}) == {"gpt-4o"}


def test_an_alias_can_grant_and_deny() -> None:
    assert _allowed({"models": {"allow": ["latest"]}}) == {"gpt-4o"}
    assert _allowed({"models": {"deny": ["reason*"]}}) == {"gpt-4o", "gpt-4o-mini", "claude-3.5"}


def test_key_policy_only_narrows() -> None:
    namespace = {"models": {"allow": ["gpt-*"]}}
    assert _allowed(namespace, {"models": {"allow": ["*"]}}) == {"gpt-4o", "gpt-4o-mini"}
    assert _allowed(namespace, {"models": {"deny": ["*-mini"]}}) == {"gpt-4o"}


def test_models_resolve_by_alias_and_providers_carry_credentials() -> None:
    snapshot = build_snapshot(_config({}))
    assert snapshot.models_by_name["latest"] is snapshot.models_by_name["gpt-4o"]
    provider = snapshot.models_by_name["o1"].targets[0].provider
    assert provider.headers["Authorization"] == "Bearer sk-up"
    assert provider.headers["Accept-Encoding"] == "identity"


def test_disabled_keys_are_left_out_and_version_tracks_content() -> None:
    config = _config({})
    disabled = config.model_copy(
        update={
            "namespaces": [
                config.namespaces[0].model_copy(
                    update={
                        "keys": [config.namespaces[0].keys[0].model_copy(update={"disabled": True})]
                    }
                )
            ]
        }
    )
    assert build_snapshot(disabled).keys_by_hash == {}
    assert build_snapshot(config).version == build_snapshot(_config({})).version
    assert build_snapshot(config).version != build_snapshot(disabled).version


def test_prices_attach_to_models_by_name_or_alias_and_compute_cost() -> None:
    config = _config({}).model_copy(deep=True)
    priced = Config.model_validate(
        {
            **config.model_dump(mode="json"),
            "providers": [{"name": "p", "base_url": "http://x/v1"}],
            "prices": [
                {
                    "model": "latest",
                    "input_per_million": 2.5,
                    "output_per_million": 10.0,
                    "cached_input_per_million": 1.25,
                },
                {"model": "o1", "input_per_million": 15, "output_per_million": 60},
            ],
        }
    )
    snapshot = build_snapshot(priced)
    gpt4o = snapshot.models_by_name["gpt-4o"].price
    assert gpt4o is not None
    # 1,000 prompt tokens of which 400 cached, 200 completion tokens.
    assert gpt4o.cost(1000, 200, 400) == (600 * 2.5 + 400 * 1.25 + 200 * 10.0) / 1_000_000
    o1 = snapshot.models_by_name["reasoning"].price
    assert o1 is not None and o1.cached_input == 15
    assert snapshot.models_by_name["gpt-4o-mini"].price is None


def test_anthropic_providers_get_their_own_credential_headers() -> None:
    config = Config.model_validate(
        {
            "providers": [
                {"name": "c", "type": "anthropic", "base_url": "https://a/v1", "api_key": "sk-ant"}
            ],
            "models": [{"name": "claude", "targets": [{"provider": "c", "model": "claude-x"}]}],
        }
    )
    headers = build_snapshot(config).models_by_name["claude"].targets[0].provider.headers
    assert headers["x-api-key"] == "sk-ant" and headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in headers
