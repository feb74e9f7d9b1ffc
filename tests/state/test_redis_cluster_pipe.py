"""The limits' pipelined cluster client, against a real 3-master Redis Cluster (``cluster_url``)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis

from aigw.state.redis_cluster_pipe import ClusterPipes, slot_of
from aigw.state.redis_pipe import Script, pack

INCR = Script("return redis.call('INCRBY', KEYS[1], ARGV[1])")


@pytest.fixture
def cluster(cluster_url: str) -> Iterator[redis.RedisCluster]:
    client = redis.RedisCluster.from_url(cluster_url)
    yield client
    client.close()


@pytest.fixture
async def pipes(cluster_url: str) -> AsyncIterator[ClusterPipes]:
    client = ClusterPipes(cluster_url, timeout=1.0)
    yield client
    await client.close()


def _tagged_keys(count: int) -> list[str]:
    run = secrets.token_hex(4)
    return [f"aigw:test:cpipe:{{{run}-{i}}}:n" for i in range(count)]


def _incr(key: str, by: int = 1) -> bytes:
    return pack(b"EVALSHA", INCR.sha, 1, key, by)


def _master_of(cluster: redis.RedisCluster, key: str) -> tuple[str, int]:
    node = cluster.get_node_from_key(key)
    return (node.host, node.port)


async def test_each_command_goes_to_its_slots_master_over_one_connection_each(
    pipes: ClusterPipes, cluster: redis.RedisCluster
) -> None:
    keys = _tagged_keys(24)
    replies = await asyncio.gather(
        *(pipes.evalsha(INCR, _incr(key, 5), slot=slot_of(key)) for key in keys)
    )
    assert replies == [5] * len(keys)
    assert [int(cluster.get(key) or 0) for key in keys] == [5] * len(keys)
    # The map was loaded once, for all 24 concurrent first calls; one connection per master used.
    assert pipes.map_loads == 1
    masters = {_master_of(cluster, key) for key in keys}
    assert len(masters) == 3
    assert set(pipes._pipes) == masters
    assert sum(pipe.connections_made for pipe in pipes._pipes.values()) == 3


async def test_a_moved_answer_is_followed_and_fixes_the_map(
    pipes: ClusterPipes, cluster: redis.RedisCluster
) -> None:
    key, other = _tagged_keys(2)
    slot = slot_of(key)
    assert await pipes.evalsha(INCR, _incr(key), slot=slot) == 1
    owner = _master_of(cluster, key)
    primaries = {(node.host, node.port) for node in cluster.get_primaries()}
    wrong = next(node for node in primaries if node != owner)
    assert pipes._slots is not None
    pipes._slots[slot] = wrong  # as after a resharding this client has not heard of
    loads = pipes.map_loads

    # The wrong master answers MOVED (nothing ran there); the command runs once, on the owner.
    assert await pipes.evalsha(INCR, _incr(key), slot=slot) == 2
    assert pipes._slots[slot] == owner
    assert int(cluster.get(key) or 0) == 2

    # A lazily sent command follows MOVED too.
    pipes._slots[slot] = wrong
    outcome: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    pipes.evalsha_soon(INCR, _incr(key), lambda f: outcome.set_result(f.result()), slot=slot)
    assert await asyncio.wait_for(outcome, 2) == 3
    await asyncio.sleep(0.1)
    assert pipes.map_loads > loads  # and the whole map was reloaded in the background
    assert await pipes.evalsha(INCR, _incr(other), slot=slot_of(other)) == 1


async def test_a_lost_connection_is_reopened_by_the_next_command(
    pipes: ClusterPipes, cluster: redis.RedisCluster
) -> None:
    (key,) = _tagged_keys(1)
    slot = slot_of(key)
    assert await pipes.evalsha(INCR, _incr(key), slot=slot) == 1
    owner = _master_of(cluster, key)
    node = cluster.get_node(host=owner[0], port=owner[1])
    assert node is not None
    cluster.client_kill_filter(_type="normal", skipme=True, target_nodes=node)
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        try:
            answer = await pipes.evalsha(INCR, _incr(key), slot=slot)
            break
        except redis.ConnectionError:
            # The kill may land while a command is on its way: that one fails (it may have run),
            # the next reconnects.
            assert asyncio.get_running_loop().time() < deadline
    assert answer in (2, 3)
    assert pipes._pipes[owner].connections_made == 2


def test_what_it_cannot_speak_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="Unix socket"):
        ClusterPipes("unix:///tmp/redis.sock")
    with pytest.raises(ValueError, match="TLS"):
        ClusterPipes("rediss://127.0.0.1:7000")
    with pytest.raises(ValueError, match="database 0"):
        ClusterPipes("redis://127.0.0.1:7000/3")


async def test_an_unreachable_cluster_fails_fast_with_a_connection_error() -> None:
    pipes = ClusterPipes("redis://127.0.0.1:1", timeout=0.5)
    try:
        with pytest.raises(redis.ConnectionError):
            await pipes.evalsha(INCR, _incr("k"), slot=slot_of("k"))
    finally:
        await pipes.close()
