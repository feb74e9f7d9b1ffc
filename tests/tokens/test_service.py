"""The token service over HTTP (in-process with httpx's ASGI transport, then as a real process)
and the two TokenCounter clients."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from aigw.tokens.cli import token_service
from aigw.tokens.client import (
    LocalTokenCounter,
    RemoteTokenCounter,
    TokenCounter,
    TokenServiceUnavailable,
)
from aigw.tokens.counting import TokenCountError, count_chat
from aigw.tokens.service import create_app
from tests.helpers import Process, free_port

from .test_counting import COOKBOOK_MESSAGES, COOKBOOK_TOOL_MESSAGES, COOKBOOK_TOOLS

COUNT = "/v1/tokens/count"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(preload_encodings=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tokens") as http:
        yield http


async def test_chat_count(client: httpx.AsyncClient) -> None:
    response = await client.post(COUNT, json={"model": "gpt-4o", "messages": COOKBOOK_MESSAGES})
    assert response.status_code == 200
    assert response.json() == {
        "model": "gpt-4o",
        "tokens": 124,
        "exact": True,
        "encoding": "o200k_base",
    }


async def test_chat_count_with_tools(client: httpx.AsyncClient) -> None:
    body = {"model": "gpt-4", "messages": COOKBOOK_TOOL_MESSAGES, "tools": COOKBOOK_TOOLS}
    response = await client.post(COUNT, json=body)
    assert response.json()["tokens"] == 105


@pytest.mark.parametrize(
    ("body", "tokens", "encoding"),
    [
        ({"model": "gpt-3.5-turbo-instruct", "prompt": "hello world"}, 2, "cl100k_base"),
        ({"model": "gpt-3.5-turbo-instruct", "prompt": ["hello", "world"]}, 2, "cl100k_base"),
        ({"model": "davinci-002", "prompt": [[1, 2, 3], [4]]}, 4, "cl100k_base"),
        ({"model": "text-embedding-3-small", "input": "hello world"}, 2, "cl100k_base"),
        ({"model": "text-embedding-3-small", "input": [101, 102]}, 2, "cl100k_base"),
        ({"model": "claude-3-5-haiku", "input": "hello world"}, 3, "claude-estimate"),
    ],
)
async def test_prompt_and_input_counts(
    client: httpx.AsyncClient, body: dict[str, Any], tokens: int, encoding: str
) -> None:
    response = await client.post(COUNT, json=body)
    assert response.status_code == 200, response.text
    assert (response.json()["tokens"], response.json()["encoding"]) == (tokens, encoding)


async def test_a_large_prompt_is_counted_like_in_process(client: httpx.AsyncClient) -> None:
    messages = [{"role": "user", "content": "All work and no play makes Jack a dull boy. " * 5000}]
    response = await client.post(COUNT, json={"model": "gpt-4o", "messages": messages})
    assert response.status_code == 200
    assert response.json()["tokens"] == count_chat("gpt-4o", messages).tokens


# Bad input: never a 500. 400 when the body is not a JSON object or its content cannot be
# counted; 422 when it has the wrong shape. param names the field where there is one.
BAD_INPUT = [
    (b"{not json", 400, "invalid_json", None),
    (b"[1, 2]", 400, "invalid_json", None),
    (b'"text"', 400, "invalid_json", None),
    (b"", 400, "invalid_json", None),
    (b'{"messages": [{"role": "user", "content": "x"}]}', 422, "invalid_value", "model"),
    (b'{"model": "", "prompt": "x"}', 422, "invalid_value", "model"),
    (b'{"model": 4, "prompt": "x"}', 422, "invalid_value", "model"),
    (b'{"model": "gpt-4o"}', 422, "invalid_value", None),
    (b'{"model": "gpt-4o", "prompt": "x", "input": "y"}', 422, "invalid_value", None),
    (b'{"model": "gpt-4o", "prompt": "x", "tools": []}', 422, "invalid_value", None),
    (b'{"model": "gpt-4o", "prompt": "x", "temperature": 1}', 422, "invalid_value", "temperature"),
    (b'{"model": "gpt-4o", "messages": "hello"}', 422, "invalid_value", "messages"),
    (b'{"model": "gpt-4o", "messages": ["hello"]}', 422, "invalid_value", "messages[0]"),
    (b'{"model": "gpt-4o", "prompt": [1, "a"]}', 422, "invalid_value", "prompt"),
    (b'{"model": "gpt-4o", "prompt": [true]}', 422, "invalid_value", "prompt"),
    (b'{"model": "gpt-4o", "input": [-1]}', 422, "invalid_value", "input"),
    (b'{"model": "gpt-4o", "input": {"text": "x"}}', 422, "invalid_value", "input"),
    (
        b'{"model": "gpt-4o", "messages": [{"content": "x"}]}',
        400,
        "invalid_value",
        "messages[0].role",
    ),
    (
        b'{"model": "gpt-4o", "messages": [{"role": "user", "content": [{"type": "text"}]}]}',
        400,
        "invalid_value",
        "messages[0].content[0].text",
    ),
    (
        b'{"model": "gpt-4o", "messages": [], "tools": [{"type": "function"}]}',
        400,
        "invalid_value",
        "tools[0].function",
    ),
    (b'{"model": "gpt-4o", "messages": [' + b"[" * 5000 + b"]" * 5000 + b"]}", 400, None, None),
]


@pytest.mark.parametrize(("body", "status", "code", "param"), BAD_INPUT)
async def test_bad_input(
    client: httpx.AsyncClient, body: bytes, status: int, code: str | None, param: str | None
) -> None:
    response = await client.post(COUNT, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    assert error["param"] == param


async def test_form_body_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(COUNT, data={"model": "gpt-4o"})
    assert response.status_code == 400
    assert "JSON object" in response.json()["error"]["message"]


async def test_body_over_the_limit_is_413() -> None:
    app = create_app(max_body_bytes=1024, preload_encodings=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tokens") as http:
        big = {"model": "gpt-4o", "prompt": "x" * 2000}
        response = await http.post(COUNT, json=big)
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "request_too_large"

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
            yield b'{"model": "gpt-4o", "prompt": "'
            for _ in range(10):
                yield b"x" * 200
            yield b'"}'

        response = await http.post(COUNT, content=chunks())
        assert response.status_code == 413
        small = await http.post(COUNT, json={"model": "gpt-4o", "prompt": "x" * 500})
        assert small.status_code == 200


def test_default_body_limit_is_10_mib() -> None:
    from aigw.tokens import service

    assert service.MAX_BODY_BYTES == 10 * 1024 * 1024


async def test_healthz_and_unknown_paths(client: httpx.AsyncClient) -> None:
    health = await client.get("/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    missing = await client.get("/v1/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong_method = await client.get(COUNT)
    assert wrong_method.status_code == 405


async def test_openapi_describes_the_endpoint(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    operation = spec["paths"][COUNT]["post"]
    request_schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert request_schema["$ref"].endswith("/CountRequest")
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"].endswith("/CountResponse")
    for status in ("400", "413", "422"):
        error = operation["responses"][status]["content"]["application/json"]["schema"]
        assert error["$ref"].endswith("/ErrorResponse")
    response_fields = spec["components"]["schemas"]["CountResponse"]["properties"]
    assert set(response_fields) == {"model", "tokens", "exact", "encoding"}


async def test_local_counter_follows_the_protocol() -> None:
    counter = LocalTokenCounter()
    assert isinstance(counter, TokenCounter)
    assert (await counter.count_chat("gpt-4o", COOKBOOK_MESSAGES)).tokens == 124
    assert (await counter.count_completion_prompt("gpt-4", "hello world")).tokens == 2
    assert (await counter.count_embedding_input("text-embedding-3-small", [1, 2])).tokens == 2
    with pytest.raises(TokenCountError):
        await counter.count_chat("gpt-4o", [{"content": "no role"}])
    await counter.aclose()


# --- the real process ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def service_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = Path(tmp_path_factory.mktemp("token-service")) / "token-service.log"
    args = [sys.executable, "-m", "aigw.tokens.cli", "--host", "127.0.0.1"]
    process = Process([*args, "--port", str(port), "--workers", "1"], log)
    url = f"http://127.0.0.1:{port}"
    try:
        process.wait_http(url + "/healthz", timeout=30)
        yield url
    finally:
        assert process.stop() == 0, process.output()


async def test_real_process_and_remote_counter(service_url: str) -> None:
    async with httpx.AsyncClient() as http:
        health = (await http.get(service_url + "/healthz")).json()
    assert health["encodings_loaded"] == ["o200k_base", "cl100k_base"]  # preloaded at startup
    remote = RemoteTokenCounter(service_url)
    local = LocalTokenCounter()
    try:
        assert isinstance(remote, TokenCounter)
        for model in ("gpt-4o", "gpt-4", "claude-3-5-sonnet", "mystery-model"):
            assert await remote.count_chat(
                model, COOKBOOK_TOOL_MESSAGES, COOKBOOK_TOOLS
            ) == await local.count_chat(model, COOKBOOK_TOOL_MESSAGES, COOKBOOK_TOOLS)
        prompt = ["first prompt", "second one"]
        assert await remote.count_completion_prompt(
            "gpt-3.5-turbo-instruct", prompt
        ) == await local.count_completion_prompt("gpt-3.5-turbo-instruct", prompt)
        long_input = "token " * 50_000
        assert await remote.count_embedding_input(
            "text-embedding-3-large", long_input
        ) == await local.count_embedding_input("text-embedding-3-large", long_input)
        with pytest.raises(TokenCountError) as raised:
            await remote.count_chat("gpt-4o", [{"role": "user", "content": [{"type": "text"}]}])
        assert raised.value.param == "messages[0].content[0].text"
        with pytest.raises(TokenCountError):
            await remote.count_completion_prompt("gpt-4o", {"not": "a prompt"})
    finally:
        await remote.aclose()


async def test_remote_counter_reports_an_unreachable_service() -> None:
    remote = RemoteTokenCounter(f"http://127.0.0.1:{free_port()}", timeout=2)
    try:
        with pytest.raises(TokenServiceUnavailable):
            await remote.count_completion_prompt("gpt-4o", "hello")
    finally:
        await remote.aclose()


def test_cli_options_and_environment() -> None:
    result = CliRunner().invoke(token_service, ["--help"])
    assert result.exit_code == 0
    for text in ("--host", "--port", "--workers", "AIGW_TOKEN_SERVICE_PORT", "8002"):
        assert text in result.output
