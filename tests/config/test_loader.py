from __future__ import annotations

from pathlib import Path

import pytest

from aigw.config.keys import hash_key
from aigw.config.loader import ConfigError, load_config_file, load_config_text

HASH = hash_key("sk-aigw-x")

VALID = f"""\
version: 1
providers:
  - name: openai
    base_url: https://api.openai.com/v1/
    api_key: ${{TEST_OPENAI_KEY}}
models:
  - name: gpt-4o-mini
    aliases: [mini]
    targets:
      - provider: openai
        model: gpt-4o-mini
namespaces:
  - name: team
    policy:
      models: {{allow: ["gpt-*"]}}
    keys:
      - name: ci
        key_hash: {HASH}
"""


def _issues(text: str, env: dict[str, str] | None = None) -> list[tuple[str, int | None, str]]:
    with pytest.raises(ConfigError) as raised:
        load_config_text(text, env={"TEST_OPENAI_KEY": "sk-real"} if env is None else env)
    return [(i.path, i.line, i.message) for i in raised.value.issues]


def test_valid_document_loads_with_env_interpolation() -> None:
    config = load_config_text(VALID, env={"TEST_OPENAI_KEY": "sk-real"})
    provider = config.providers[0]
    assert provider.api_key is not None and provider.api_key.get_secret_value() == "sk-real"
    assert provider.base_url == "https://api.openai.com/v1"  # trailing slash dropped
    assert config.namespaces[0].policy.models.allow == ["gpt-*"]
    assert "sk-real" not in repr(config)  # secrets never print


def test_missing_env_var_names_field_and_line() -> None:
    assert _issues(VALID, env={}) == [
        (
            "providers[0].api_key",
            5,
            "environment variable TEST_OPENAI_KEY is not set (write ${TEST_OPENAI_KEY:-} for an "
            "empty default)",
        )
    ]


def test_env_default_is_used() -> None:
    text = VALID.replace("${TEST_OPENAI_KEY}", "${TEST_OPENAI_KEY:-fallback}")
    config = load_config_text(text, env={})
    assert config.providers[0].api_key.get_secret_value() == "fallback"  # type: ignore[union-attr]


def test_type_error_names_field_and_line() -> None:
    text = VALID.replace(
        "        model: gpt-4o-mini", "        model: gpt-4o-mini\n        weight: lots"
    )
    [(path, line, message)] = _issues(text)
    assert (path, line) == ("models[0].targets[0].weight", 12)
    assert "integer" in message


def test_unknown_field_is_an_error_not_ignored() -> None:
    text = VALID.replace("      models: {allow", "      modles: {allow")
    issues = _issues(text)
    assert ("namespaces[0].policy.modles", 15, "Extra inputs are not permitted") in issues


def test_unknown_provider_reference_names_target_and_line() -> None:
    [(path, line, message)] = _issues(
        VALID.replace("      - provider: openai", "      - provider: opnai")
    )
    assert path == "models[0].targets[0].provider"
    assert line == 10
    assert "unknown provider 'opnai'" in message


def test_duplicate_model_alias() -> None:
    text = VALID.replace("aliases: [mini]", "aliases: [mini, gpt-4o-mini]")
    [(_, _, message)] = _issues(text)
    assert "'gpt-4o-mini' is already used" in message


def test_bad_key_hash_and_bad_url() -> None:
    text = VALID.replace(HASH, "plaintext-key").replace("https://api", "ftp://api")
    paths = {path for path, _, _ in _issues(text)}
    assert paths == {"providers[0].base_url", "namespaces[0].keys[0].key_hash"}


def test_yaml_syntax_error_has_a_line() -> None:
    [(path, line, message)] = _issues("providers:\n  - name: [unclosed\n")
    assert path == "" and line is not None and message.startswith("invalid YAML")


def test_document_must_be_a_mapping() -> None:
    assert _issues("- 1\n- 2\n") == [("", 1, "the document must be a mapping")]


def test_empty_document_is_an_empty_configuration() -> None:
    config = load_config_text("")
    assert config.models == [] and config.gateway.max_request_body_bytes == 10 * 1024 * 1024


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config_file(tmp_path / "missing.yaml")
    assert "cannot read file" in str(raised.value)
    assert str(tmp_path / "missing.yaml") in str(raised.value)


def test_counting_tokens_upstream_needs_an_anthropic_provider() -> None:
    text = VALID.replace(
        "    base_url: https://", "    count_tokens: upstream\n    base_url: https://", 1
    )
    [(path, _, message)] = _issues(text)
    assert path == "providers[0]"
    assert "needs an anthropic provider" in message
