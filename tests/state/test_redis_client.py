"""One switch for every Redis user: AIGW_REDIS_URL and AIGW_REDIS_CLUSTER."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from aigw.cli import main
from aigw.state.redis_client import cluster_from_env, connect, url_from_env


@pytest.mark.parametrize("value", ["1", "true", "YES", " on "])
def test_the_cluster_switch_turns_on(value: str) -> None:
    assert cluster_from_env({"AIGW_REDIS_CLUSTER": value}) is True


@pytest.mark.parametrize("value", ["", "0", "false", "No", "off"])
def test_the_cluster_switch_turns_off(value: str) -> None:
    assert cluster_from_env({"AIGW_REDIS_CLUSTER": value}) is False
    assert cluster_from_env({}) is False


def test_a_typo_in_the_switch_is_an_error_naming_the_variable() -> None:
    with pytest.raises(ValueError, match=r"AIGW_REDIS_CLUSTER must be .* not 'ture'"):
        cluster_from_env({"AIGW_REDIS_CLUSTER": "ture"})


def test_an_empty_url_is_no_redis() -> None:
    assert url_from_env({"AIGW_REDIS_URL": ""}) is None
    assert url_from_env({"AIGW_REDIS_URL": "redis://h:1/2"}) == "redis://h:1/2"


async def test_connect_makes_the_kind_of_client_asked_for() -> None:
    single = connect("redis://127.0.0.1:6379/0")
    cluster = connect("redis://127.0.0.1:7000", cluster=True)
    try:
        assert isinstance(single, Redis) and not isinstance(single, RedisCluster)
        assert isinstance(cluster, RedisCluster)
    finally:
        await single.aclose()
        await cluster.aclose()


@pytest.mark.parametrize("command", ["gateway", "config-center"])
def test_the_commands_refuse_a_bad_switch_at_start(command: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "aigw.yaml"
    config.write_text("providers: []\nmodels: []\nnamespaces: []\n")
    args = [command, "--config", str(config)] if command == "gateway" else [command]
    result = CliRunner().invoke(
        main,
        args,
        env={"AIGW_REDIS_CLUSTER": "maybe", "AIGW_DATA_DIR": str(tmp_path)},
    )
    assert result.exit_code == 2, result.output
    assert "AIGW_REDIS_CLUSTER must be" in result.output
