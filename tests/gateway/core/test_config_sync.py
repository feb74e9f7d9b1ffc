"""The gateway's ConfigFollower against a scripted feed: following, disk cache, bad documents.

The feed here is a small aiohttp server speaking the config center's long-poll protocol, so each
failure (an invalid document, a wrong master key, a config center that is down) can be staged.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web

from aigw.config.keys import hash_key
from aigw.config.secrets import ENCRYPTED_PREFIX, SecretBox
from aigw.gateway.core import config_sync
from aigw.gateway.core.app import GatewayApp
from aigw.gateway.core.config_sync import ConfigFollower, FollowerSettings
from aigw.gateway.core.init import create_app
from tests.helpers import free_port

MASTER_KEY = "follower-test-master-key"
TOKEN = "follower-test-gateway-token"
SECRET = "sk-upstream-follower-secret"
CALLER_KEY = "sk-aigw-follower-caller"


def document(*models: str, disabled: bool = False) -> dict[str, Any]:
    return {
        "providers": [{"name": "up", "base_url": "http://127.0.0.1:9/v1", "api_key": SECRET}],
        "models": [{"name": m, "targets": [{"provider": "up", "model": m}]} for m in models],
        "namespaces": [
            {
                "name": "t",
                "keys": [{"name": "k", "key_hash": hash_key(CALLER_KEY), "disabled": disabled}],
            }
        ],
    }


@dataclass
class FakeFeed:
    """``GET /internal/v1/config?after=N&wait=S`` over a list of published bodies."""

    port: int = field(default_factory=free_port)
    bodies: dict[int, bytes] = field(default_factory=dict)
    head: int = 0
    requests: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def publish(self, doc: dict[str, Any], key: str = MASTER_KEY, raw: bytes | None = None) -> int:
        self.head += 1
        encrypted = SecretBox(key).encrypt_document(doc)
        self.bodies[self.head] = raw or orjson.dumps({"version": self.head, "document": encrypted})
        self._changed.set()
        self._changed = asyncio.Event()
        return self.head

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"error": "unauthenticated"}, status=401)
        after = int(request.query["after"])
        deadline = time.monotonic() + float(request.query["wait"])
        while self.head <= after:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return web.Response(status=204)
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return web.Response(status=204)
        return web.Response(body=self.bodies[self.head], content_type="application/json")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/internal/v1/config", self.handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@pytest.fixture
async def feed() -> AsyncIterator[FakeFeed]:
    fake = FakeFeed()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@dataclass
class Holder:
    snapshot: Any = None
    config_center_version: int | None = None


def settings(url: str, cache: Path, **overrides: Any) -> FollowerSettings:
    base = FollowerSettings(
        center_url=url,
        token=TOKEN,
        master_key=MASTER_KEY,
        cache_path=cache,
        wait=5,
        min_backoff=0.05,
        max_backoff=0.2,
        startup_timeout=1,
    )
    return replace(base, **overrides)


@asynccontextmanager
async def following(url: str, cache: Path, **overrides: Any) -> AsyncIterator[ConfigFollower]:
    follower = ConfigFollower(Holder(), settings(url, cache, **overrides))
    await follower.start()
    try:
        yield follower
    finally:
        await follower.stop()


async def eventually(check: Callable[[], bool], limit: float = 3) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > limit:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def models(follower: ConfigFollower) -> list[str]:
    snapshot = follower.target.snapshot
    return [] if snapshot is None else sorted(snapshot.models_by_name)


async def test_follows_each_new_version_and_caches_it_encrypted(
    feed: FakeFeed, tmp_path: Path
) -> None:
    cache = tmp_path / "cache" / "snapshot.json"
    feed.publish(document("m1"))
    async with following(feed.url, cache) as follower:
        # The first version is in service when start() returns.
        assert follower.version == 1 and models(follower) == ["m1"]
        assert follower.target.config_center_version == 1
        provider = follower.target.snapshot.models_by_name["m1"].targets[0].provider
        assert provider.headers["Authorization"] == f"Bearer {SECRET}"  # decrypted in memory

        before = follower.target.snapshot
        feed.publish(document("m1", "m2"))
        assert await eventually(lambda: models(follower) == ["m1", "m2"]) < 1
        assert follower.version == 2 and follower.target.config_center_version == 2
        assert before.models_by_name.keys() == {"m1"}  # the old snapshot was replaced, not changed

    cached = orjson.loads(cache.read_bytes())
    assert cached["version"] == 2
    assert cached["document"]["providers"][0]["api_key"].startswith(ENCRYPTED_PREFIX)
    assert SECRET.encode() not in cache.read_bytes()
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert [p.name for p in cache.parent.iterdir()] == ["snapshot.json"]  # no temporary left


async def test_serves_the_disk_cache_while_the_config_center_is_down(
    feed: FakeFeed, tmp_path: Path
) -> None:
    cache = tmp_path / "snapshot.json"
    feed.publish(document("m1"))
    feed.publish(document("m1", "cached"))
    async with following(feed.url, cache) as first:
        assert first.version == 2
    dead = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    async with following(dead, cache) as follower:
        assert time.monotonic() - started < 1  # a refused connection does not hold startup up
        assert follower.version == 2
        assert models(follower) == ["cached", "m1"]
        provider = follower.target.snapshot.models_by_name["cached"].targets[0].provider
        assert provider.headers["Authorization"] == f"Bearer {SECRET}"
        await asyncio.sleep(0.3)  # retrying in the background changes nothing
        assert follower.version == 2


async def test_invalid_or_undecryptable_documents_are_skipped(
    feed: FakeFeed, tmp_path: Path
) -> None:
    cache = tmp_path / "snapshot.json"
    feed.publish(document("good"))
    async with following(feed.url, cache) as follower:
        assert follower.version == 1
        good = follower.target.snapshot

        invalid = document("bad")
        invalid["models"][0]["targets"][0]["provider"] = "nowhere"
        feed.publish(invalid)
        await eventually(lambda: follower.seen == 2)
        feed.publish(document("other-key"), key="not-the-master-key")
        await eventually(lambda: follower.seen == 3)
        feed.publish(document(), raw=b'{"version": 4, "document": "nope"}')
        await eventually(lambda: follower.seen == 4)
        feed.publish(document(), raw=b"<html>not json</html>")

        requests = feed.requests
        await asyncio.sleep(0.3)
        assert feed.requests - requests <= 3  # waiting for a newer version, not fetching again
        assert follower.target.snapshot is good and follower.version == 1
        assert orjson.loads(cache.read_bytes())["version"] == 1  # never cached

        feed.publish(document("good", "fixed"))
        await eventually(lambda: models(follower) == ["fixed", "good"])
        assert follower.version == 6
        # The cache is written just after the swap, in a thread: wait for it, not for luck.
        await eventually(lambda: orjson.loads(cache.read_bytes())["version"] == 6)


async def test_recovers_by_itself_when_the_config_center_comes_up(tmp_path: Path) -> None:
    fake = FakeFeed()
    async with following(fake.url, tmp_path / "snapshot.json") as follower:
        assert follower.target.snapshot is None  # no cache, no config center: not ready yet
        await asyncio.sleep(0.3)
        fake.publish(document("late"))
        await fake.start()
        try:
            await eventually(lambda: models(follower) == ["late"], limit=2)
            # And again after the config center goes away and comes back.
            await fake.stop()
            await asyncio.sleep(0.3)
            fake.publish(document("late", "later"))
            await fake.start()
            await eventually(lambda: models(follower) == ["late", "later"], limit=2)
        finally:
            await fake.stop()


async def test_a_wrong_gateway_token_is_retried_not_fatal(feed: FakeFeed, tmp_path: Path) -> None:
    feed.publish(document("m1"))
    async with following(feed.url, tmp_path / "c.json", token="wrong") as follower:
        await asyncio.sleep(0.3)
        assert follower.target.snapshot is None
        assert 2 <= feed.requests < 20  # with backoff


def test_the_cache_is_replaced_atomically_and_never_by_an_older_version(tmp_path: Path) -> None:
    cache = tmp_path / "snapshot.json"
    follower = ConfigFollower(Holder(), settings("http://x", cache))
    follower._write_cache(5, b'{"version": 5, "document": {}}')
    follower._write_cache(4, b'{"version": 4, "document": {}}')  # a slower worker, older version
    assert orjson.loads(cache.read_bytes())["version"] == 5
    follower._write_cache(6, b'{"version": 6, "document": {}}')
    assert orjson.loads(cache.read_bytes())["version"] == 6
    assert [p.name for p in tmp_path.iterdir()] == ["snapshot.json"]


async def test_a_damaged_cache_is_ignored(feed: FakeFeed, tmp_path: Path) -> None:
    cache = tmp_path / "snapshot.json"
    cache.write_bytes(b'{"version": 9, "document": {"models": [{"oops"')
    dead = f"http://127.0.0.1:{free_port()}"
    async with following(dead, cache) as follower:
        assert follower.target.snapshot is None and follower.seen == 0
    feed.publish(document("m1"))
    async with following(feed.url, cache) as follower:
        assert follower.version == 1
    assert orjson.loads(cache.read_bytes())["version"] == 1


async def test_a_large_document_is_compiled_off_the_event_loop(
    feed: FakeFeed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[Callable[..., Any]] = []
    real_to_thread = asyncio.to_thread

    async def to_thread(function: Callable[..., Any], *args: Any) -> Any:
        threads.append(function)
        return await real_to_thread(function, *args)

    monkeypatch.setattr(config_sync.asyncio, "to_thread", to_thread)
    names = [f"model-{i:05d}-{'x' * 40}" for i in range(4000)]
    feed.publish(document(*names))
    assert len(feed.bodies[1]) > config_sync.OFFLOAD_BYTES
    async with following(feed.url, tmp_path / "snapshot.json") as follower:
        # Compiling 4,000 models may outlast the 2 s startup wait on a loaded machine; the
        # follower's background loop installs it then.
        await eventually(lambda: len(models(follower)) == 4000, limit=60)
    assert any(getattr(f, "__name__", "") == "_compile" for f in threads)


# -- in the gateway app ------------------------------------------------------------------------


@asynccontextmanager
async def lifespan(app: GatewayApp) -> AsyncIterator[None]:
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = asyncio.create_task(app({"type": "lifespan"}, inbox.get, _put(outbox)))
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
        await task


def _put(queue: asyncio.Queue[dict[str, Any]]) -> Callable[[dict[str, Any]], Awaitable[None]]:
    async def send(message: dict[str, Any]) -> None:
        await queue.put(message)

    return send


async def test_a_following_gateway_is_ready_only_with_a_snapshot(
    feed: FakeFeed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIGW_CONFIG", raising=False)
    monkeypatch.setenv("AIGW_CONFIG_CENTER", feed.url)
    monkeypatch.setenv("AIGW_GATEWAY_TOKEN", TOKEN)
    monkeypatch.setenv("AIGW_MASTER_KEY", MASTER_KEY)
    monkeypatch.setenv("AIGW_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("AIGW_SNAPSHOT_CACHE", raising=False)
    app = create_app()
    assert app.snapshot is None and app.follower is not None
    assert app.follower.settings.cache_path == tmp_path / "gateway-snapshot.json"
    transport = httpx.ASGITransport(app=app)
    async with (
        lifespan(app),
        httpx.AsyncClient(transport=transport, base_url="http://gw") as client,
    ):
        assert (await client.get("/readyz")).status_code == 503
        feed.publish(document("m1"))
        await eventually(lambda: app.snapshot is not None)
        ready = (await client.get("/readyz")).json()
        assert ready["config_center_version"] == 1 and ready["status"] == "ready"
        listed = await client.get("/v1/models", headers={"Authorization": f"Bearer {CALLER_KEY}"})
        assert [m["id"] for m in listed.json()["data"]] == ["m1"]

        feed.publish(document("m1", disabled=True))
        await eventually(lambda: app.config_center_version == 2)
        listed = await client.get("/v1/models", headers={"Authorization": f"Bearer {CALLER_KEY}"})
        assert listed.status_code == 401
    assert (tmp_path / "gateway-snapshot.json").exists()


def test_following_needs_the_token_and_the_master_key() -> None:
    assert FollowerSettings.from_env({}) is None
    with pytest.raises(RuntimeError, match="AIGW_GATEWAY_TOKEN and AIGW_MASTER_KEY"):
        FollowerSettings.from_env({"AIGW_CONFIG_CENTER": "http://cc"})
    env = {
        "AIGW_CONFIG_CENTER": "http://cc/",
        "AIGW_GATEWAY_TOKEN": "t",
        "AIGW_MASTER_KEY": "k",
        "AIGW_SNAPSHOT_CACHE": os.path.join("x", "y.json"),
    }
    following = FollowerSettings.from_env(env)
    assert following is not None
    assert following.center_url == "http://cc" and following.cache_path == Path("x/y.json")
