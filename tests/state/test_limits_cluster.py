"""The limits suite again, against a 3-master Redis Cluster (``cluster_url``, tests/conftest.py).

Three ``redis-server --cluster-enabled yes`` processes on free loopback ports (their bus ports,
+10000, free too), joined by ``redis-cli --cluster create``; stopped after the run. Every
backend-parametrised test of ``test_limits.py`` (its ``SUITE``) runs here with
``backend="cluster"``: the multi-key scripts work because a namespace's keys share one slot.
"""

from __future__ import annotations

import pytest
import redis

from tests.state import test_limits as suite
from tests.state.test_limits import Env

# The suite's tests and the fixtures they use; `backend` is overridden below.
globals().update(
    {name: getattr(suite, name) for name in (*suite.SUITE, "env", "redis_env", "clock")}
)


@pytest.fixture(params=["cluster"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(params=["cluster"])
def redis_backend(request: pytest.FixtureRequest) -> str:
    return request.param


def test_the_cluster_has_three_masters(cluster_url: str) -> None:
    client = redis.Redis.from_url(cluster_url)
    try:
        masters = [n for n in client.cluster("nodes").values() if "master" in n["flags"]]
    finally:
        client.close()
    assert len(masters) == 3


async def test_namespaces_spread_over_the_masters(env: Env) -> None:
    """Different namespaces land on different masters; each one's plan still runs as one
    script on its own master."""
    from aigw.state.limits import LimitPlan
    from aigw.state.limits_redis import limit_key

    store = env.make()
    names = [f"tenant-{i}" for i in range(12)]
    for name in names:
        built = LimitPlan.for_request(
            name, "k", namespace_limits={"rpm": 1}, key_limits={"concurrency": 1}
        )
        assert (await store.admit(built)).allowed
        assert not (await store.admit(built)).allowed
    client = redis.RedisCluster.from_url(env.url or "")
    try:
        owners = {
            client.get_node_from_key(limit_key(env.prefix, name, f"ns:{name}", "rpm")).name
            for name in names
        }
    finally:
        client.close()
    assert len(owners) > 1
