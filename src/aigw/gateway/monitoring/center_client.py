"""The connection a gateway worker keeps to the config center it follows, for what it reports
there off the request path (usage counters, request records)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import aiohttp


class CenterPoster:
    """One pooled aiohttp session to ``center_url + path`` with the gateway token, bound to the
    running event loop (a session belongs to one loop); subclasses decide what they POST."""

    def __init__(self, center_url: str, path: str, token: str, *, timeout: float) -> None:
        self.url = center_url.rstrip("/") + path
        self._token = token
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _client(self) -> aiohttp.ClientSession:
        import aiohttp

        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                headers={
                    "Authorization": f"Bearer {self._token}",
                    "Content-Type": "application/json",
                },
            )
            self._loop = loop
        return self._session

    async def close(self) -> None:
        session, self._session, self._loop = self._session, None, None
        if session is not None:
            await session.close()

    def __str__(self) -> str:
        return f"the config center ({self.url})"
