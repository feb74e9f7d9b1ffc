"""Redis clients from one URL and one switch: a single server, or a Redis Cluster.

``AIGW_REDIS_URL`` names the server, or any node of a cluster; ``AIGW_REDIS_CLUSTER=1`` says it
is a cluster (redis-py then discovers the other masters and routes every key to its slot's
owner). Every Redis user in aigw makes its client here, so the switch means the same thing for
all of them:

- limits (``state/limits_redis.py``): a namespace's keys share one hash slot, so its admit and
  settle scripts run on one master;
- realtime usage (``state/realtime.py``): single-key commands, pipelined per node;
- config-change notifications between config centers (``config_center/feed.py``): classic
  pub/sub, which a cluster forwards to every node.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

URL_ENV = "AIGW_REDIS_URL"
CLUSTER_ENV = "AIGW_REDIS_CLUSTER"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def url_from_env(env: Mapping[str, str]) -> str | None:
    return env.get(URL_ENV) or None


def cluster_from_env(env: Mapping[str, str]) -> bool:
    """Whether ``AIGW_REDIS_CLUSTER`` is on; a value that is neither on nor off is an error
    (a typo must not quietly talk to one node of a cluster)."""
    value = env.get(CLUSTER_ENV, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(
        f"{CLUSTER_ENV} must be 1/true/yes/on or 0/false/no/off, not {env[CLUSTER_ENV]!r}"
    )


def connect(url: str, *, cluster: bool = False, **options: Any) -> Redis | RedisCluster:
    """An asyncio client for ``url``: a :class:`RedisCluster` seeded by it when ``cluster``.

    ``options`` are redis-py's (timeouts, ``decode_responses``...), valid for both kinds.
    """
    if cluster:
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(url, **options)
    from redis.asyncio import Redis

    return Redis.from_url(url, **options)
