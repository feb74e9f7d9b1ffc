"""A real mock server for the tests, and a thin client for its control endpoints."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass
class MockServer:
    url: str
    """Base URL without the /v1 suffix."""
    http: aiohttp.ClientSession

    async def configure(self, **changes: Any) -> None:
        async with self.http.put(f"{self.url}/_mock/config", json=changes) as response:
            assert response.status == 200, await response.text()

    async def stats(self) -> dict[str, int]:
        async with self.http.get(f"{self.url}/_mock/stats") as response:
            return await response.json()

    async def requests(self) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.url}/_mock/requests") as response:
            return await response.json()


StartMock = Callable[..., Awaitable[MockServer]]
"""Starts a mock server: ``await start_mock(options, handler_cancellation=...)``."""
