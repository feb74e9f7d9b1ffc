"""Fixtures: a real mock server on a free local port, and clients pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import anthropic
import openai
import pytest
from aiohttp import web

from aigw.mock import MockOptions, create_app
from tests.mock.harness import MockServer, StartMock


@pytest.fixture
async def start_mock() -> AsyncIterator[StartMock]:
    """Start mock servers (options and runner flags as keyword arguments); all stop at teardown."""
    runners: list[web.AppRunner] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(
        options: MockOptions | None = None, *, handler_cancellation: bool = True
    ) -> MockServer:
        runner = web.AppRunner(
            create_app(options or MockOptions()),
            access_log=None,
            handler_cancellation=handler_cancellation,
            shutdown_timeout=0.1,
        )
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        session = aiohttp.ClientSession()
        sessions.append(session)
        return MockServer(f"http://127.0.0.1:{port}", session)

    yield start
    for session in sessions:
        await session.close()
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def mock(start_mock: StartMock) -> MockServer:
    return await start_mock()


@pytest.fixture
async def openai_client(mock: MockServer) -> AsyncIterator[openai.AsyncOpenAI]:
    # No retries: the tests want to see each injected fault exactly once.
    async with openai.AsyncOpenAI(base_url=f"{mock.url}/v1", api_key="x", max_retries=0) as client:
        yield client


@pytest.fixture
async def anthropic_client(mock: MockServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(base_url=mock.url, api_key="x", max_retries=0) as client:
        yield client
