from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aigw.config.keys import hash_key
from aigw.config.schema import Config
from aigw.config.snapshot import build_snapshot
from aigw.gateway.auth.namespace_matcher import (
    caller_key,
    match_namespace,
    split_namespace_path,
)
from aigw.gateway.core.errors import AuthenticationFailed, InvalidRequest, PermissionDenied


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


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/ns/team/v1/chat/completions", ("team", "/v1/chat/completions")),
        ("/ns/team/v1/messages", ("team", "/v1/messages")),
        ("/ns/team", ("team", "")),
        ("/v1/chat/completions", (None, "/v1/chat/completions")),
        ("/nsx/v1/models", (None, "/nsx/v1/models")),
    ],
)
def test_a_path_prefix_names_a_namespace(path: str, expected: tuple[str | None, str]) -> None:
    assert split_namespace_path(path) == expected


KEY = ("authorization", "Bearer sk-good")


@pytest.mark.parametrize(
    ("path_namespace", "header"),
    [("ns", None), (None, "ns"), ("ns", "ns"), (None, "")],
)
def test_naming_the_key_s_own_namespace_passes(
    path_namespace: str | None, header: str | None
) -> None:
    headers = [KEY] if header is None else [KEY, ("x-aigw-namespace", header)]
    assert match_namespace(_scope(*headers), _snapshot(), path_namespace).namespace == "ns"


@pytest.mark.parametrize(
    ("path_namespace", "header", "named"),
    [("other", None, "other"), (None, "other", "other"), (None, "nowhere", "nowhere")],
)
def test_naming_another_namespace_is_a_403_whether_it_exists_or_not(
    path_namespace: str | None, header: str | None, named: str
) -> None:
    headers = [KEY] if header is None else [KEY, ("x-aigw-namespace", header)]
    with pytest.raises(PermissionDenied) as caught:
        match_namespace(_scope(*headers), _snapshot(), path_namespace)
    assert caught.value.code == "namespace_mismatch"
    assert f"namespace '{named}'" in caught.value.message


def test_a_path_and_a_header_that_disagree_are_a_400() -> None:
    scope = _scope(KEY, ("x-aigw-namespace", "other"))
    with pytest.raises(InvalidRequest) as caught:
        match_namespace(scope, _snapshot(), "ns")
    assert caught.value.code == "namespace_conflict"


def test_the_key_is_checked_before_the_named_namespace() -> None:
    with pytest.raises(AuthenticationFailed):  # a bad key never learns about namespaces
        match_namespace(_scope(("authorization", "Bearer sk-bad")), _snapshot(), "other")
