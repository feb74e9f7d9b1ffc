"""Active health checks: probe providers that ask for it, and keep their targets out of plans
while they fail.

A provider with ``health_check`` is asked ``GET base_url + path`` (with its credentials) every
``interval`` seconds by each gateway worker; any 2xx is healthy. After ``unhealthy_after``
failures in a row (an error status, a refused connection, no answer within ``timeout``) its
name goes into :attr:`Router.unhealthy_providers`, and :meth:`Router.plan` skips its targets;
the first success takes it out again. Passive signals (the per-target circuit breakers) work
without any of this: checks only spare the first real requests of an outage.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import aiohttp

from aigw.config.snapshot import ProviderEntry, Snapshot
from aigw.gateway.routing.router import Router

log = logging.getLogger("aigw.gateway.health")


class HealthChecker:
    """One per worker; :meth:`run` until cancelled."""

    def __init__(
        self,
        router: Router,
        snapshot: Callable[[], Snapshot | None],
        session: Callable[[], aiohttp.ClientSession | None],
    ) -> None:
        self._router = router
        self._snapshot = snapshot
        self._session = session
        self._failures: dict[str, int] = {}
        self._due: dict[str, float] = {}

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            snapshot = self._snapshot()
            providers = checked_providers(snapshot) if snapshot is not None else []
            names = {p.name for p in providers}
            for gone in set(self._failures) - names:  # no longer checked: trusted again
                self._forget(gone)
            now = loop.time()
            due = [p for p in providers if self._due.get(p.name, 0.0) <= now]
            if due:
                await asyncio.gather(*(self._check(p) for p in due))
                for provider in due:
                    assert provider.health_check is not None
                    self._due[provider.name] = loop.time() + provider.health_check.interval
            await asyncio.sleep(1.0)

    async def _check(self, provider: ProviderEntry) -> None:
        check = provider.health_check
        session = self._session()
        if check is None or session is None:
            return
        headers = {k: v for k, v in provider.headers.items() if k != "Content-Type"}
        try:
            async with session.get(
                check.url, headers=headers, timeout=aiohttp.ClientTimeout(total=check.timeout)
            ) as response:
                await response.read()
                healthy = 200 <= response.status < 300
                reason = f"HTTP {response.status}"
        except (TimeoutError, aiohttp.ClientError) as error:
            healthy, reason = False, type(error).__name__
        name = provider.name
        if healthy:
            if name in self._router.unhealthy_providers:
                log.warning("provider %s: health check passes again", name)
            self._forget(name)
            return
        failures = self._failures[name] = self._failures.get(name, 0) + 1
        if failures >= check.unhealthy_after and name not in self._router.unhealthy_providers:
            self._router.unhealthy_providers.add(name)
            log.warning(
                "provider %s: unhealthy after %d failed checks (%s); its targets are skipped",
                name,
                failures,
                reason,
            )

    def _forget(self, name: str) -> None:
        self._failures.pop(name, None)
        self._router.unhealthy_providers.discard(name)


def checked_providers(snapshot: Snapshot) -> list[ProviderEntry]:
    seen: dict[str, ProviderEntry] = {}
    for model in snapshot.models_by_name.values():
        for target in model.targets:
            if target.provider.health_check is not None:
                seen.setdefault(target.provider.name, target.provider)
    return list(seen.values())
