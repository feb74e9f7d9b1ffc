"""Follow the config center: each gateway worker keeps its snapshot current by long-polling.

On startup the worker first loads the last good document from its disk cache (so it serves even
while the config center is down), then asks the config center for anything newer and keeps a
long-poll open on ``GET /internal/v1/config?after=V``. Each new document is decrypted, validated
and compiled off the request path, then swapped in with one assignment; in-flight requests finish
on the snapshot they started with. A document that is invalid or cannot be decrypted is logged
and skipped: the worker keeps serving its last good snapshot. Connection failures are retried
with a capped backoff, forever; nothing here ever stops the worker from serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import orjson

from aigw.config.loader import ConfigError, validate_config
from aigw.config.secrets import MASTER_KEY_ENV, SecretBox, SecretError
from aigw.config.snapshot import Snapshot, build_snapshot

log = logging.getLogger("aigw.gateway.config")

CENTER_ENV = "AIGW_CONFIG_CENTER"
TOKEN_ENV = "AIGW_GATEWAY_TOKEN"
CACHE_ENV = "AIGW_SNAPSHOT_CACHE"
DATA_DIR_ENV = "AIGW_DATA_DIR"
CACHE_FILE = "gateway-snapshot.json"
FEED_PATH = "/internal/v1/config"

# Documents larger than this are parsed, decrypted, validated and compiled in a worker thread.
OFFLOAD_BYTES = 256 * 1024


class FeedError(Exception):
    """The config center answered, but not with a document or a 204."""


@dataclass(frozen=True)
class FollowerSettings:
    center_url: str
    token: str
    master_key: str
    cache_path: Path
    wait: float = 25.0
    """Seconds each long-poll waits at the config center (at most 30)."""
    min_backoff: float = 0.2
    max_backoff: float = 5.0
    startup_timeout: float = 2.0
    """How long startup waits for a first answer before serving the cached snapshot."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FollowerSettings | None:
        """The settings when ``AIGW_CONFIG_CENTER`` names a config center, else None."""
        url = env.get(CENTER_ENV)
        if not url:
            return None
        missing = [name for name in (TOKEN_ENV, MASTER_KEY_ENV) if not env.get(name)]
        if missing:
            raise RuntimeError(f"following the config center {url} needs {' and '.join(missing)}")
        return cls(
            center_url=url.rstrip("/"),
            token=env[TOKEN_ENV],
            master_key=env[MASTER_KEY_ENV],
            cache_path=default_cache_path(env),
        )


def default_cache_path(env: Mapping[str, str]) -> Path:
    """``AIGW_SNAPSHOT_CACHE``, else ``<AIGW_DATA_DIR or .aigw>/gateway-snapshot.json``."""
    if env.get(CACHE_ENV):
        return Path(env[CACHE_ENV])
    return Path(env.get(DATA_DIR_ENV) or ".aigw") / CACHE_FILE


class SnapshotHolder(Protocol):
    """What the follower updates: the worker's :class:`GatewayApp`."""

    snapshot: Snapshot | None
    config_center_version: int | None


class ConfigFollower:
    def __init__(self, target: SnapshotHolder, settings: FollowerSettings) -> None:
        self.target = target
        self.settings = settings
        self.box = SecretBox(settings.master_key)
        self.version: int | None = None
        """The config-center version of the snapshot being served (None: none yet)."""
        self.seen = 0
        self.last_contact: float | None = None
        """When the config center last answered a poll (monotonic), for the sync-age metric."""
        """The newest version received, served or skipped: the next poll asks for newer."""
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Serve the cached snapshot, catch up once if the config center answers, then follow."""
        await self.load_cache()
        self._session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {self.settings.token}"},
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
        )
        try:
            await asyncio.wait_for(self.poll(wait=0), self.settings.startup_timeout)
        except Exception as exc:  # the background loop keeps trying
            log.warning(
                "config center %s not reachable at startup (%s); serving %s",
                self.settings.center_url,
                _describe(exc),
                f"cached version {self.version}" if self.version else "nothing yet (503)",
            )
        self._task = asyncio.create_task(self._follow(), name="aigw-config-follower")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- following -------------------------------------------------------------------------------

    async def _follow(self) -> None:
        failures = 0
        while True:
            try:
                await self.poll(self.settings.wait)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                if failures == 1:
                    log.warning(
                        "config center %s: %s; retrying, serving version %s meanwhile",
                        self.settings.center_url,
                        _describe(exc),
                        self.version,
                    )
                await asyncio.sleep(self._backoff(failures))
                continue
            if failures:
                log.info("config center %s reachable again", self.settings.center_url)
                failures = 0

    async def poll(self, wait: float) -> bool:
        """One request to the feed; True when it brought a new snapshot."""
        assert self._session is not None, "start() first"
        timeout = aiohttp.ClientTimeout(total=wait + 15, sock_connect=5)
        async with self._session.get(
            self.settings.center_url + FEED_PATH,
            params={"after": str(self.seen), "wait": str(wait)},
            timeout=timeout,
        ) as response:
            if response.status in (200, 204):
                self.last_contact = time.monotonic()
            if response.status == 204:
                return False
            if response.status != 200:
                text = (await response.text(errors="replace"))[:300]
                raise FeedError(f"HTTP {response.status}: {text}")
            raw = await response.read()
        return await self.apply(raw, source=self.settings.center_url)

    def _backoff(self, failures: int) -> float:
        delay = min(self.settings.max_backoff, self.settings.min_backoff * 2 ** (failures - 1))
        return delay * random.uniform(0.8, 1.0)  # spread many gateways' retries a little

    # -- documents -------------------------------------------------------------------------------

    async def apply(self, raw: bytes, *, source: str, from_feed: bool = True) -> bool:
        """Install the ``{"version", "document"}`` in ``raw``; False if it had to be skipped.

        A document from the feed is written to the disk cache once in service. A feed answer
        without a readable version raises :class:`FeedError`, so the caller backs off.
        """
        try:
            if len(raw) > OFFLOAD_BYTES:
                version, snapshot = await asyncio.to_thread(self._compile, raw)
            else:
                version, snapshot = self._compile(raw)
        except _Rejected as exc:
            if exc.version is None and from_feed:
                # Not even a version to skip past: back off like after any failed poll.
                raise FeedError(str(exc)) from None
            if exc.version is not None:
                self.seen = exc.version  # wait for a newer one instead of fetching it again
            log.error(
                "configuration version %s from %s skipped, still serving version %s: %s",
                exc.version if exc.version is not None else "?",
                source,
                self.version,
                exc,
            )
            return False
        self.seen = version
        self.version = version
        # One assignment is the swap (the version beside it is only for /readyz).
        self.target.config_center_version = version
        self.target.snapshot = snapshot
        log.info(
            "configuration version %s from %s in service (digest %s)",
            version,
            source,
            snapshot.version,
        )
        if from_feed:
            try:
                await asyncio.to_thread(self._write_cache, version, raw)
            except OSError as exc:
                log.warning("cannot write the snapshot cache %s: %s", self.settings.cache_path, exc)
        return True

    def _compile(self, raw: bytes) -> tuple[int, Snapshot]:
        version: int | None = None
        try:
            payload = orjson.loads(raw)
            version = payload["version"]
            document = payload["document"]
            if not isinstance(version, int) or not isinstance(document, dict):
                raise TypeError("expected {'version': int, 'document': {...}}")
            config = validate_config(
                self.box.decrypt_document(document), source=f"config center version {version}"
            )
            return version, build_snapshot(config)
        except ConfigError as exc:
            raise _Rejected(version, f"invalid configuration: {exc}") from None
        except SecretError as exc:
            raise _Rejected(version, str(exc)) from None
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise _Rejected(version, f"malformed feed answer: {exc}") from None

    # -- disk cache ------------------------------------------------------------------------------

    async def load_cache(self) -> bool:
        """Serve the cached document, if there is a usable one."""
        path = self.settings.cache_path
        try:
            raw = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.warning("cannot read the snapshot cache %s: %s", path, exc)
            return False
        return await self.apply(raw, source=f"cache {path}", from_feed=False)

    def _write_cache(self, version: int, raw: bytes) -> None:
        """Write atomically; never replace a newer version another worker already wrote."""
        path = self.settings.cache_path
        if _cached_version(path) > version:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        # A unique temporary file per writer: several workers of a gateway write this at once.
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(raw)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise


class _Rejected(Exception):
    def __init__(self, version: Any, message: str) -> None:
        super().__init__(message)
        self.version = version if isinstance(version, int) else None


def _cached_version(path: Path) -> int:
    try:
        version = orjson.loads(path.read_bytes()).get("version")
    except (OSError, orjson.JSONDecodeError, AttributeError):
        return -1
    return version if isinstance(version, int) else -1


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
