"""Injected latency, errors, hangs and disconnects, and how the mock accounts for them."""

from __future__ import annotations

import asyncio
import random
import time

import aiohttp
import anthropic
import httpx2
import openai
import pytest

from aigw.mock import MockOptions
from tests.mock.harness import MockServer, StartMock

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
STREAM = CHAT | {"stream": True}
ANTHROPIC_MESSAGE = {"model": "m", "max_tokens": 50, "messages": CHAT["messages"]}


async def wait_for_stats(mock: MockServer, **expected: int) -> dict[str, int]:
    """The server notices departed clients asynchronously; poll briefly for the counters."""
    deadline = time.monotonic() + 2.0
    while True:
        stats = await mock.stats()
        if all(stats[key] == value for key, value in expected.items()):
            return stats
        if time.monotonic() > deadline:
            raise AssertionError(f"stats stayed {stats}, expected {expected}")
        await asyncio.sleep(0.02)


async def test_error_rate_answers_with_configured_status(
    mock: MockServer, openai_client: openai.AsyncOpenAI, anthropic_client: anthropic.AsyncAnthropic
) -> None:
    await mock.configure(error_rate=1.0, error_status=503)

    with pytest.raises(openai.APIStatusError) as openai_error:
        await openai_client.chat.completions.create(**CHAT)
    with pytest.raises(anthropic.APIStatusError) as anthropic_error:
        await anthropic_client.messages.create(**ANTHROPIC_MESSAGE)

    assert openai_error.value.status_code == 503
    assert openai_error.value.body["type"] == "server_error"
    assert anthropic_error.value.status_code == 503
    assert anthropic_error.value.body["error"]["type"] == "api_error"
    assert await mock.stats() == {"requests": 2, "completed": 2, "client_disconnects": 0}


async def test_status_header_429_has_retry_after(mock: MockServer) -> None:
    headers = {"x-mock-status": "429"}
    async with mock.http.post(
        f"{mock.url}/v1/chat/completions", json=CHAT, headers=headers
    ) as response:
        openai_status, openai_headers = response.status, response.headers
        openai_body = await response.json()
    async with mock.http.post(
        f"{mock.url}/v1/messages", json=ANTHROPIC_MESSAGE, headers=headers
    ) as response:
        anthropic_status, anthropic_headers = response.status, response.headers
        anthropic_body = await response.json()

    assert (openai_status, openai_headers["Retry-After"]) == (429, "1")
    assert openai_body["error"]["code"] == "rate_limit_exceeded"
    assert (anthropic_status, anthropic_headers["Retry-After"]) == (429, "1")
    assert anthropic_body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": anthropic_body["error"]["message"]},
    }


async def test_sdk_sees_rate_limit(openai_client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        await openai_client.chat.completions.create(**CHAT, extra_headers={"x-mock-status": "429"})

    assert caught.value.response.headers["retry-after"] == "1"


async def test_status_header_below_400_overrides_error_rate(
    mock: MockServer, openai_client: openai.AsyncOpenAI
) -> None:
    await mock.configure(error_rate=1.0)

    completion = await openai_client.chat.completions.create(
        **CHAT, extra_headers={"x-mock-status": "200"}
    )

    assert completion.choices[0].finish_reason == "stop"


async def test_seeded_error_draws_replay(mock: MockServer) -> None:
    async def statuses() -> list[int]:
        results = []
        for _ in range(20):
            async with mock.http.get(f"{mock.url}/v1/models") as response:
                results.append(response.status)
        return results

    await mock.configure(error_rate=0.5, seed=7)
    first = await statuses()
    await mock.configure(seed=7)
    second = await statuses()

    rng = random.Random(7)
    assert first == second == [500 if rng.random() < 0.5 else 200 for _ in range(20)]


@pytest.mark.parametrize("handler_cancellation", [True, False])
async def test_hang_until_client_gives_up(
    start_mock: StartMock, handler_cancellation: bool
) -> None:
    mock = await start_mock(MockOptions(hang_rate=1.0), handler_cancellation=handler_cancellation)
    async with openai.AsyncOpenAI(base_url=f"{mock.url}/v1", api_key="x", max_retries=0) as client:
        started = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            await client.chat.completions.create(**CHAT, timeout=0.3)

    assert time.monotonic() - started >= 0.3
    await wait_for_stats(mock, requests=1, completed=0, client_disconnects=1)


async def test_hang_header(mock: MockServer, anthropic_client: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.APITimeoutError):
        await anthropic_client.messages.create(
            **ANTHROPIC_MESSAGE, extra_headers={"x-mock-hang": "1"}, timeout=0.2
        )

    await wait_for_stats(mock, client_disconnects=1)


async def test_disconnect_mid_stream_breaks_openai_sdk(
    mock: MockServer, openai_client: openai.AsyncOpenAI
) -> None:
    stream = await openai_client.chat.completions.create(
        **STREAM, extra_headers={"x-mock-disconnect-after": "3"}
    )
    received = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            received.append(chunk)

    # The role chunk and two tokens arrived; the rest, [DONE] included, never did.
    assert [chunk.choices[0].delta.content for chunk in received] == ["", "This", " is"]
    # A deliberate cut is neither a completed answer nor a client disconnect.
    assert await mock.stats() == {"requests": 1, "completed": 0, "client_disconnects": 0}


async def test_disconnect_rate_breaks_anthropic_sdk(
    mock: MockServer, anthropic_client: anthropic.AsyncAnthropic
) -> None:
    await mock.configure(disconnect_rate=1.0)

    texts = []
    # This SDK lets the transport error through instead of wrapping it in APIConnectionError.
    with pytest.raises((anthropic.APIConnectionError, httpx2.TransportError)):
        async with anthropic_client.messages.stream(**ANTHROPIC_MESSAGE) as stream:
            async for text in stream.text_stream:
                texts.append(text)
    # Only streams are cut; a complete answer is unaffected.
    message = await anthropic_client.messages.create(**ANTHROPIC_MESSAGE)

    # message_start, content_block_start, ping and two tokens made it; nothing more.
    assert texts == ["This", " is"]
    assert message.stop_reason == "end_turn"


@pytest.mark.parametrize("cut_after", ["0", "2", "1000"])
async def test_cut_stream_is_incomplete_on_the_wire(mock: MockServer, cut_after: str) -> None:
    received = b""
    async with mock.http.post(
        f"{mock.url}/v1/chat/completions",
        json=STREAM,
        headers={"x-mock-disconnect-after": cut_after},
    ) as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            async for data in response.content.iter_any():
                received += data

    events = [event for event in received.split(b"\n\n") if event]
    # The cut never lets the terminator through, even when asked to cut after it.
    assert len(events) == min(int(cut_after), 1 + 16 + 1)
    assert b"[DONE]" not in received


@pytest.mark.parametrize("handler_cancellation", [True, False])
async def test_client_leaving_mid_stream_is_counted(
    start_mock: StartMock, handler_cancellation: bool
) -> None:
    mock = await start_mock(
        MockOptions(tokens_per_second=50), handler_cancellation=handler_cancellation
    )

    async with mock.http.post(f"{mock.url}/v1/chat/completions", json=STREAM) as response:
        first_line = await response.content.readline()
        response.close()  # drop the connection mid-stream

    assert first_line.startswith(b"data: {")
    await wait_for_stats(mock, requests=1, completed=0, client_disconnects=1)


async def test_client_leaving_during_latency_is_counted(mock: MockServer) -> None:
    with pytest.raises(asyncio.TimeoutError):
        async with mock.http.get(
            f"{mock.url}/v1/models",
            headers={"x-mock-latency-ms": "5000"},
            timeout=aiohttp.ClientTimeout(total=0.1),
        ):
            pass

    await wait_for_stats(mock, requests=1, completed=0, client_disconnects=1)


async def test_latency_header_delays_answer(openai_client: openai.AsyncOpenAI) -> None:
    started = time.monotonic()
    await openai_client.models.list(extra_headers={"x-mock-latency-ms": "150"})

    assert time.monotonic() - started >= 0.15


async def test_tokens_per_second_paces_stream(
    mock: MockServer, openai_client: openai.AsyncOpenAI
) -> None:
    await mock.configure(tokens_per_second=50, latency_ms=100)

    started = time.monotonic()
    stream = await openai_client.chat.completions.create(**STREAM, max_tokens=6)
    arrivals = [time.monotonic() - started async for _ in stream]

    # The first token comes after the latency; five more follow at 20 ms intervals.
    first_token, last_token = arrivals[1], arrivals[6]
    assert 0.1 <= first_token < 0.25
    assert last_token - first_token >= 5 / 50 - 0.005


async def test_tokens_per_second_holds_back_complete_answers(
    openai_client: openai.AsyncOpenAI,
) -> None:
    started = time.monotonic()
    await openai_client.chat.completions.create(
        **CHAT, max_tokens=11, extra_headers={"x-mock-tokens-per-second": "100"}
    )

    assert time.monotonic() - started >= 10 / 100


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("x-mock-latency-ms", "soon"),
        ("x-mock-latency-ms", "-5"),
        ("x-mock-status", "99"),
        ("x-mock-hang", "maybe"),
        ("x-mock-disconnect-after", "1.5"),
        ("x-mock-stream-error-after", "-1"),
        ("x-mock-tokens-per-second", "nan"),
    ],
)
async def test_malformed_override_header_is_a_bad_request(
    mock: MockServer, header: str, value: str
) -> None:
    async with mock.http.post(
        f"{mock.url}/v1/chat/completions", json=CHAT, headers={header: value}
    ) as response:
        assert response.status == 400
        error = (await response.json())["error"]

    assert header in error["message"]


async def test_stream_error_header_breaks_anthropic_sdk(
    mock: MockServer, anthropic_client: anthropic.AsyncAnthropic
) -> None:
    texts = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with anthropic_client.messages.stream(
            **ANTHROPIC_MESSAGE, extra_headers={"x-mock-stream-error-after": "5"}
        ) as stream:
            async for text in stream.text_stream:
                texts.append(text)

    # message_start, content_block_start, ping and two tokens came first.
    assert texts == ["This", " is"]
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    # The response itself ended cleanly, so it counts as completed.
    assert await mock.stats() == {"requests": 1, "completed": 1, "client_disconnects": 0}


async def test_stream_error_rate_breaks_openai_sdk(
    mock: MockServer, openai_client: openai.AsyncOpenAI
) -> None:
    await mock.configure(stream_error_rate=1.0)

    stream = await openai_client.chat.completions.create(**STREAM)
    received = []
    with pytest.raises(openai.APIError, match="injected by the aigw mock upstream"):
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content)
    # Only streams get the error; a complete answer is unaffected.
    completion = await openai_client.chat.completions.create(**CHAT)

    assert received == ["", "This", " is", " a", " mock"]
    assert completion.choices[0].finish_reason == "stop"


@pytest.mark.parametrize(
    ("error_after", "cut_after", "events_before_error"),
    [("0", None, 0), ("3", None, 3), ("1000", None, 1 + 16 + 1), ("3", "5", 3)],
)
async def test_stream_error_on_the_wire(
    mock: MockServer, error_after: str, cut_after: str | None, events_before_error: int
) -> None:
    headers = {"x-mock-stream-error-after": error_after}
    if cut_after is not None:
        headers["x-mock-disconnect-after"] = cut_after
    async with mock.http.post(
        f"{mock.url}/v1/chat/completions", json=STREAM, headers=headers
    ) as response:
        raw = await response.read()  # no ClientPayloadError: the response ends cleanly

    *events, error, end = raw.split(b"\n\n")
    assert len(events) == events_before_error
    assert error.startswith(b'data: {"error":{')
    assert end == b""


async def test_disconnect_due_before_the_stream_error_wins(mock: MockServer) -> None:
    headers = {"x-mock-stream-error-after": "4", "x-mock-disconnect-after": "2"}
    received = b""
    async with mock.http.post(
        f"{mock.url}/v1/chat/completions", json=STREAM, headers=headers
    ) as response:
        with pytest.raises(aiohttp.ClientPayloadError):
            async for data in response.content.iter_any():
                received += data

    assert received.count(b"\n\n") == 2
    assert b"error" not in received


async def test_paced_stream_error(mock: MockServer) -> None:
    body = ANTHROPIC_MESSAGE | {"stream": True}
    headers = {"x-mock-stream-error-after": "4", "x-mock-tokens-per-second": "200"}
    async with mock.http.post(f"{mock.url}/v1/messages", json=body, headers=headers) as response:
        raw = await response.read()

    names = [block.split(b"\n")[0] for block in raw.split(b"\n\n")[:-1]]
    assert names == [
        b"event: message_start",
        b"event: content_block_start",
        b"event: ping",
        b"event: content_block_delta",
        b"event: error",
    ]
