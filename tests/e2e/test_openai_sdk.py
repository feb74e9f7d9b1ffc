"""The official openai SDK, sync and async, streaming and not, through the gateway."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.e2e.conftest import Stack

USER = [{"role": "user", "content": "Say hello"}]


def test_sync_chat_completion(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="mock-gpt-4o-mini", messages=USER)
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.total_tokens > 0


def test_sync_stream(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="mock-gpt-4o-mini", messages=USER, stream=True, max_tokens=5
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 5
    assert chunks[-1].choices[0].finish_reason == "length"


async def test_async_chat_completion_via_alias(async_client: openai.AsyncOpenAI) -> None:
    client = async_client
    completion = await client.chat.completions.create(model="demo-chat", messages=USER)
    assert completion.choices[0].finish_reason == "stop"


async def test_async_stream_with_usage(async_client: openai.AsyncOpenAI) -> None:
    client = async_client
    stream = await client.chat.completions.create(
        model="mock-gpt-4o", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


async def test_async_completions_and_embeddings(async_client: openai.AsyncOpenAI) -> None:
    client = async_client
    completion = await client.completions.create(model="mock-instruct", prompt="Once", max_tokens=3)
    assert completion.choices[0].text
    embeddings = await client.embeddings.create(model="mock-embedding", input=["a", "b"])
    assert [e.index for e in embeddings.data] == [0, 1]
    assert len(embeddings.data[0].embedding) > 0


async def test_async_completions_stream(async_client: openai.AsyncOpenAI) -> None:
    client = async_client
    stream = await client.completions.create(
        model="mock-instruct", prompt="Once", max_tokens=4, stream=True
    )
    text = "".join([chunk.choices[0].text async for chunk in stream if chunk.choices])
    assert len(text.split()) == 4


def test_gateway_injects_provider_credentials_and_upstream_model(
    stack: Stack, client: openai.OpenAI
) -> None:
    httpx.delete(f"{stack.mock}/_mock/requests")
    client.chat.completions.create(model="demo-chat", messages=USER)
    received = httpx.get(f"{stack.mock}/_mock/requests").json()[-1]
    headers = {k.lower(): v for k, v in received["headers"].items()}
    assert headers["authorization"] == "Bearer sk-upstream-secret"
    assert stack.key not in str(received)
    assert received["body"]["model"] == "gpt-4o-mini"
    assert received["body"]["messages"] == USER


def test_models_lists_only_what_the_caller_may_use(stack: Stack, client: openai.OpenAI) -> None:
    every = {m.id for m in client.models.list()}
    assert {"mock-gpt-4o-mini", "demo-chat", "mock-embedding", "faulty-chat"} <= every
    with openai.OpenAI(base_url=stack.base_url, api_key=stack.narrow_key) as narrow_client:
        assert {m.id for m in narrow_client.models.list()} == {"mock-gpt-4o"}
        assert narrow_client.models.retrieve("mock-gpt-4o").id == "mock-gpt-4o"
        with pytest.raises(openai.NotFoundError):
            narrow_client.models.retrieve("mock-embedding")


def test_key_policy_narrows_its_namespace(stack: Stack) -> None:
    key = stack.key_narrowed_by_key_policy
    with openai.OpenAI(base_url=stack.base_url, api_key=key) as client:
        assert client.chat.completions.create(model="demo-chat", messages=USER).choices
        with pytest.raises(openai.PermissionDeniedError):
            client.embeddings.create(model="mock-embedding", input="x")


def test_a_namespace_path_prefix_must_name_the_key_s_namespace(stack: Stack) -> None:
    mine = openai.OpenAI(base_url=f"{stack.gateway}/ns/team-a/v1", api_key=stack.key)
    completion = mine.chat.completions.create(model="mock-gpt-4o-mini", messages=USER)
    assert completion.choices[0].message.content
    assert [m.id for m in mine.models.list()]
    theirs = openai.OpenAI(base_url=f"{stack.gateway}/ns/team-b/v1", api_key=stack.key)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        theirs.chat.completions.create(model="mock-gpt-4o-mini", messages=USER)
    assert caught.value.code == "namespace_mismatch"
    header = openai.OpenAI(
        base_url=stack.base_url, api_key=stack.key, default_headers={"x-aigw-namespace": "team-b"}
    )
    with pytest.raises(openai.PermissionDeniedError):
        header.chat.completions.create(model="mock-gpt-4o-mini", messages=USER)
