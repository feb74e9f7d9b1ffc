"""MockOptions, the /_mock control endpoints, and the standalone runner."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
from pathlib import Path

import pytest

import aigw
from aigw.mock import MockOptions
from tests.mock.harness import MockServer, StartMock

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
SRC_DIR = str(Path(aigw.__file__).resolve().parents[1])


@pytest.mark.parametrize(
    ("changes", "message_part"),
    [
        ({"latency_ms": -1}, "latency_ms"),
        ({"tokens_per_second": float("inf")}, "tokens_per_second"),
        ({"error_rate": 1.5}, "error_rate"),
        ({"hang_rate": -0.1}, "hang_rate"),
        ({"disconnect_rate": "0.5"}, "disconnect_rate"),
        ({"error_status": 200}, "error_status"),
        ({"error_status": 500.0}, "error_status"),
        ({"completion_tokens": 0}, "completion_tokens"),
        ({"completion_tokens": True}, "completion_tokens"),
        ({"seed": "7"}, "seed"),
    ],
)
def test_options_reject_bad_values(changes: dict[str, object], message_part: str) -> None:
    with pytest.raises(ValueError, match=message_part):
        MockOptions(**changes)  # type: ignore[arg-type]


def test_options_defaults_and_normalisation() -> None:
    options = MockOptions(latency_ms=5, error_rate=1)

    assert (options.latency_ms, options.error_rate) == (5.0, 1.0)
    assert isinstance(options.latency_ms, float)
    assert dataclasses.asdict(MockOptions()) == {
        "latency_ms": 0.0,
        "tokens_per_second": 0.0,
        "error_rate": 0.0,
        "error_status": 500,
        "hang_rate": 0.0,
        "disconnect_rate": 0.0,
        "stream_error_rate": 0.0,
        "completion_tokens": 16,
        "seed": None,
    }


def test_options_update_rejects_unknown_fields() -> None:
    with pytest.raises(ValueError, match="unknown option"):
        MockOptions().updated({"latency": 5})


async def test_config_roundtrip(start_mock: StartMock) -> None:
    original = MockOptions(latency_ms=1.0, seed=3)
    mock = await start_mock(original)

    async with mock.http.get(f"{mock.url}/_mock/config") as response:
        initial = await response.json()
    async with mock.http.put(
        f"{mock.url}/_mock/config", json={"completion_tokens": 4, "error_status": 429}
    ) as response:
        assert response.status == 200
        updated = await response.json()
    async with mock.http.get(f"{mock.url}/_mock/config") as response:
        current = await response.json()

    assert initial == dataclasses.asdict(original)
    assert updated == current == initial | {"completion_tokens": 4, "error_status": 429}
    assert original.completion_tokens == 16  # the app works from its own copy
    async with mock.http.post(f"{mock.url}/v1/chat/completions", json=CHAT) as response:
        assert (await response.json())["usage"]["completion_tokens"] == 4


@pytest.mark.parametrize(
    ("body", "message_part"),
    [
        (b'{"error_rate": 2}', "error_rate"),
        (b'{"latency_ms": "fast"}', "latency_ms"),
        (b'{"speed": 1}', "unknown option"),
        (b"[1, 2]", "JSON object"),
        (b"{oops", "JSON object"),
    ],
)
async def test_config_update_validation(mock: MockServer, body: bytes, message_part: str) -> None:
    async with mock.http.put(f"{mock.url}/_mock/config", data=body) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    async with mock.http.get(f"{mock.url}/_mock/config") as response:
        config = await response.json()

    assert message_part in error
    assert config == dataclasses.asdict(MockOptions())  # nothing half-applied


async def test_request_log_keeps_last_100(mock: MockServer) -> None:
    for index in range(105):
        async with mock.http.post(
            f"{mock.url}/v1/chat/completions", json=CHAT | {"user": str(index)}
        ):
            pass
    async with mock.http.get(f"{mock.url}/v1/models"):
        pass
    async with mock.http.post(f"{mock.url}/v1/embeddings", data=b"not json"):
        pass

    logged = await mock.requests()
    assert len(logged) == 100
    assert logged[0]["body"]["user"] == "7"
    assert logged[-2] == {
        "method": "GET",
        "path": "/v1/models",
        "headers": logged[-2]["headers"],
        "body": None,
    }
    assert logged[-1]["body"] is None  # unparseable bodies are logged as null
    # Control traffic (the GETs above) is neither logged nor counted.
    assert await mock.stats() == {"requests": 107, "completed": 107, "client_disconnects": 0}

    async with mock.http.delete(f"{mock.url}/_mock/requests") as response:
        assert response.status == 204
    assert await mock.requests() == []


async def test_run_mock_serves_and_stops_on_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from aigw.mock import MockOptions, run_mock; run_mock('127.0.0.1', 0, MockOptions())",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=os.environ | {"PYTHONPATH": SRC_DIR},
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 10)).decode()
        assert line.startswith("mock upstream listening on http://127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /_mock/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = await reader.read()
        writer.close()
        assert reply.startswith(b"HTTP/1.1 200 OK")
        assert reply.endswith(b'{"requests":0,"completed":0,"client_disconnects":0}')
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = await asyncio.wait_for(process.wait(), 10)
    assert returncode == 0
    assert await process.stdout.read() == b""  # exactly one line, no banner or access log
