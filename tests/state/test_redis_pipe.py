"""The pipelined Redis client of the limits' hot path, against the real Redis."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from aigw.state.redis_pipe import PipelinedRedis, Script, pack

URL = "redis://127.0.0.1:6379/11"


@pytest.fixture
def sync() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(URL)
    yield client
    client.close()


@pytest.fixture
async def pipe() -> AsyncIterator[PipelinedRedis]:
    client = PipelinedRedis(URL, timeout=1.0)
    yield client
    await client.close()


def _key() -> str:
    return f"aigw:test:pipe:{secrets.token_hex(6)}"


def _count_writes(client: PipelinedRedis) -> list[bytes]:
    protocol = client._protocol
    assert protocol is not None and protocol.transport is not None
    transport = protocol.transport
    writes: list[bytes] = []
    original = transport.write

    def write(data: bytes) -> None:
        writes.append(data)
        original(data)

    transport.write = write  # type: ignore[method-assign]
    return writes


async def test_replies_match_their_calls_and_one_loop_iteration_is_one_write(
    pipe: PipelinedRedis, sync: redis.Redis
) -> None:
    key = _key()
    await pipe.execute("DEL", key)
    writes = _count_writes(pipe)
    replies = await asyncio.gather(*(pipe.execute("INCRBY", key, n) for n in range(1, 51)))
    assert sorted(replies) == [sum(range(1, n + 1)) for n in range(1, 51)]
    assert len(writes) == 1 and writes[0].count(b"INCRBY") == 50
    assert int(sync.get(key) or 0) == sum(range(1, 51))  # the URL's database (11) was selected
    sync.delete(key)


async def test_an_error_reply_raises_for_its_call_only(pipe: PipelinedRedis) -> None:
    key = _key()
    await pipe.execute("SET", key, "text")
    results = await asyncio.gather(
        pipe.execute("GET", key),
        pipe.execute("INCR", key),
        pipe.execute("GET", key),
        return_exceptions=True,
    )
    assert results[0] == results[2] == b"text"
    assert isinstance(results[1], ResponseError) and "not an integer" in str(results[1])
    await pipe.execute("DEL", key)


async def test_evalsha_loads_an_unknown_script_once_and_runs_it_once(
    pipe: PipelinedRedis, sync: redis.Redis
) -> None:
    key = _key()
    script = Script(f"-- {key}\nreturn redis.call('INCR', KEYS[1])")
    sync.script_flush()
    command = pack(b"EVALSHA", script.sha, 1, key)
    assert await pipe.evalsha(script, command) == 1  # NOSCRIPT: nothing ran; loaded, run once
    assert await pipe.evalsha(script, command) == 2
    assert int(sync.get(key) or 0) == 2
    sync.delete(key)


async def test_lazy_commands_wait_for_company_then_go_ahead_of_it(pipe: PipelinedRedis) -> None:
    key = _key()
    script = Script("return redis.call('RPUSH', KEYS[1], ARGV[1])")
    await pipe.execute("SCRIPT", "LOAD", script.source)
    writes = _count_writes(pipe)
    outcomes: list[int] = []
    for n in range(3):
        command = pack(b"EVALSHA", script.sha, 1, key, f"lazy{n}")
        pipe.evalsha_soon(script, command, lambda f: outcomes.append(f.result()))
    assert writes == []
    await pipe.execute("RPUSH", key, "eager")  # takes the queued settles with it, after them
    assert len(writes) == 1 and outcomes == [1, 2, 3]
    assert await pipe.execute("LRANGE", key, 0, -1) == [b"lazy0", b"lazy1", b"lazy2", b"eager"]
    pipe.evalsha_soon(script, pack(b"EVALSHA", script.sha, 1, key, "alone"), lambda f: None)
    await asyncio.sleep(0.05)  # no company: the short delay sends it alone
    assert len(writes) == 3 and writes[2].count(b"EVALSHA") == 1  # after the LRANGE
    assert await pipe.execute("LLEN", key) == 5
    await pipe.execute("DEL", key)


async def test_a_deadline_fails_the_call_and_its_late_reply_is_discarded(
    pipe: PipelinedRedis, sync: redis.Redis
) -> None:
    key = _key()
    await pipe.execute("SET", key, "before")
    sync.execute_command("CLIENT", "PAUSE", 300, "ALL")  # Redis holds every command 0.3 s
    with pytest.raises(TimeoutError):
        await pipe.execute("GET", key, deadline=0.1)
    assert await pipe.execute("ECHO", "after") == b"after"  # not the GET's late reply
    assert pipe.connections_made == 1
    await pipe.execute("DEL", key)


async def test_a_connection_whose_replies_stop_is_replaced(sync: redis.Redis) -> None:
    client = PipelinedRedis(URL, timeout=0.2)
    try:
        await client.execute("PING")
        sync.execute_command("CLIENT", "PAUSE", 600, "ALL")
        waiting = asyncio.ensure_future(client.execute("PING", deadline=5.0))
        with pytest.raises(RedisConnectionError, match="did not answer in time"):
            await waiting  # the oldest reply is overdue by `timeout`: the connection is dropped
        await asyncio.sleep(0.5)  # the pause ends
        assert await client.execute("PING") == b"PONG"
        assert client.connections_made == 2
    finally:
        await client.close()


async def test_a_lost_connection_fails_its_calls_at_once_and_the_next_call_reconnects(
    pipe: PipelinedRedis, sync: redis.Redis
) -> None:
    name = f"aigw-test-{secrets.token_hex(4)}"
    await pipe.execute("CLIENT", "SETNAME", name)
    blocked = asyncio.ensure_future(pipe.execute("BLPOP", _key(), 5, deadline=10.0))
    await asyncio.sleep(0.05)
    killed = sync.execute_command("CLIENT", "KILL", "SKIPME", "yes", "TYPE", "normal")
    assert killed >= 1
    with pytest.raises(RedisConnectionError, match="connection to Redis lost"):
        await asyncio.wait_for(blocked, 1.0)
    assert await pipe.execute("PING") == b"PONG"
    assert pipe.connections_made == 2


async def test_unreachable_redis_fails_fast_with_a_connection_error() -> None:
    client = PipelinedRedis("redis://127.0.0.1:1/0", timeout=1.0)
    with pytest.raises(RedisConnectionError, match="cannot connect"):
        await client.execute("PING")
    await client.close()


async def test_credentials_in_the_url_authenticate(sync: redis.Redis) -> None:
    user, password = f"aigw-test-{secrets.token_hex(4)}", secrets.token_hex(8)
    sync.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all"])
    try:
        client = PipelinedRedis(f"redis://{user}:{password}@127.0.0.1:6379/11")
        assert await client.execute("ACL", "WHOAMI") == user.encode()
        await client.close()
        wrong = PipelinedRedis(f"redis://{user}:nope@127.0.0.1:6379/11")
        with pytest.raises(ResponseError, match="WRONGPASS"):
            await wrong.execute("PING")
        await wrong.close()
    finally:
        sync.acl_deluser(user)


def test_tls_urls_are_left_to_redis_py() -> None:
    with pytest.raises(ValueError, match="not TLS"):
        PipelinedRedis("rediss://127.0.0.1:6380/0")


async def test_close_waits_for_a_lazy_call_sent_again_after_noscript(
    pipe: PipelinedRedis, sync: redis.Redis
) -> None:
    """Redis forgot the script (a restart, SCRIPT FLUSH) just before a lazy call at shutdown:
    the call is loaded and sent again, and close() waits for that too, so nothing is lost."""
    key = _key()
    script = Script(f"-- {key}\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])")
    await pipe.execute("PING")  # connected: the lazy call takes the pipelined path
    outcomes: list[Any] = []
    pipe.evalsha_soon(
        script, pack("EVALSHA", script.sha, 1, key, 7), lambda f: outcomes.append(f.result())
    )
    await pipe.close()
    assert outcomes == [7]
    assert int(sync.get(key) or 0) == 7
