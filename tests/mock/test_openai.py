"""The OpenAI side of the mock, driven by the official SDK and checked on the wire."""

from __future__ import annotations

import array
import base64
import json
import math

import openai
import pytest

from aigw.mock import MockOptions
from aigw.mock.answer import SENTENCE
from tests.mock.harness import MockServer, StartMock

WORDS = SENTENCE.split()
USER_HI = [{"role": "user", "content": "hello mock"}]  # 2 words + 3 overhead = 5 prompt tokens
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}},
]


def expected_text(tokens: int) -> str:
    return " ".join(WORDS[i % len(WORDS)] for i in range(tokens))


async def test_chat_completion(mock: MockServer, openai_client: openai.AsyncOpenAI) -> None:
    completion = await openai_client.chat.completions.create(model="gpt-test", messages=USER_HI)

    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "gpt-test"
    assert completion.created > 0
    [choice] = completion.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == expected_text(16)
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (5, 16)
    assert completion.usage.total_tokens == 21

    [logged] = await mock.requests()
    assert logged["method"] == "POST"
    assert logged["path"] == "/v1/chat/completions"
    assert logged["headers"]["authorization"] == "Bearer x"
    assert logged["body"]["messages"] == USER_HI


@pytest.mark.parametrize("limit", ["max_tokens", "max_completion_tokens"])
async def test_chat_token_limit_cuts_answer(openai_client: openai.AsyncOpenAI, limit: str) -> None:
    completion = await openai_client.chat.completions.create(
        model="m", messages=USER_HI, **{limit: 12}
    )

    assert completion.choices[0].message.content == expected_text(12)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 12


async def test_completion_tokens_option_sets_natural_length(start_mock: StartMock) -> None:
    mock = await start_mock(MockOptions(completion_tokens=3))
    async with openai.AsyncOpenAI(base_url=f"{mock.url}/v1", api_key="x") as client:
        completion = await client.chat.completions.create(
            model="m", messages=USER_HI, max_tokens=100
        )

    assert completion.choices[0].message.content == "This is a"
    assert completion.choices[0].finish_reason == "stop"


async def test_chat_stream_with_usage(openai_client: openai.AsyncOpenAI) -> None:
    stream = await openai_client.chat.completions.create(
        model="m",
        messages=USER_HI,
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk.id for chunk in chunks}) == 1
    first, *tokens, finish, usage_chunk = chunks
    assert first.choices[0].delta.role == "assistant"
    assert first.choices[0].delta.content == ""
    assert [chunk.choices[0].delta.content for chunk in tokens] == ["This", " is", " a", " mock"]
    assert finish.choices[0].finish_reason == "length"
    assert finish.choices[0].delta.content is None
    assert all(chunk.usage is None for chunk in chunks[:-1])
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert (usage_chunk.usage.prompt_tokens, usage_chunk.usage.completion_tokens) == (5, 4)


async def stream_payloads(mock: MockServer, path: str, body: dict[str, object]) -> list[dict]:
    """The JSON events of a raw stream, checked to end with exactly one ``[DONE]``."""
    async with mock.http.post(f"{mock.url}{path}", json=body | {"stream": True}) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        raw = await response.text()
    events = raw.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    return [json.loads(event.removeprefix("data: ")) for event in events[:-2]]


async def test_chat_stream_wire_format(mock: MockServer) -> None:
    body = {"model": "m", "messages": USER_HI, "max_tokens": 2}
    payloads = await stream_payloads(mock, "/v1/chat/completions", body)

    assert [p["choices"][0]["delta"] for p in payloads] == [
        {"role": "assistant", "content": ""},
        {"content": "This"},
        {"content": " is"},
        {},
    ]
    assert [p["choices"][0]["finish_reason"] for p in payloads] == [None, None, None, "length"]
    # Without include_usage the chunks carry no usage field at all.
    assert all("usage" not in p for p in payloads)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
async def test_stream_usage_chunk_wire_format(mock: MockServer, path: str) -> None:
    body = {
        "model": "m",
        "messages": USER_HI,
        "prompt": "hello mock",
        "max_tokens": 2,
        "stream_options": {"include_usage": True},
    }
    *chunks, last = await stream_payloads(mock, path, body)

    assert all(chunk["usage"] is None and len(chunk["choices"]) == 1 for chunk in chunks)
    assert last["choices"] == []
    assert last["usage"]["completion_tokens"] == 2
    assert last["usage"]["total_tokens"] == last["usage"]["prompt_tokens"] + 2


async def test_chat_tool_call(openai_client: openai.AsyncOpenAI) -> None:
    completion = await openai_client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "Please use a tool now"}],
        tools=TOOLS,
    )

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [tool_call] = choice.message.tool_calls or []
    assert tool_call.id.startswith("call_")
    assert tool_call.type == "function"
    assert tool_call.function.name == "get_weather"
    assert tool_call.function.arguments == "{}"


async def test_chat_answers_in_text_after_tool_result(openai_client: openai.AsyncOpenAI) -> None:
    messages = [
        {"role": "user", "content": "use a tool"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "x", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    completion = await openai_client.chat.completions.create(
        model="m", messages=messages, tools=TOOLS
    )

    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.content == expected_text(16)


async def test_chat_tool_call_stream(openai_client: openai.AsyncOpenAI) -> None:
    stream = await openai_client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": [{"type": "text", "text": "USE A TOOL"}]}],
        tools=TOOLS,
        stream=True,
    )
    chunks = [chunk async for chunk in stream]

    name = "".join(
        call.function.name or ""
        for chunk in chunks
        for call in chunk.choices[0].delta.tool_calls or []
        if call.function
    )
    arguments = "".join(
        call.function.arguments or ""
        for chunk in chunks
        for call in chunk.choices[0].delta.tool_calls or []
        if call.function
    )
    first_call = (chunks[0].choices[0].delta.tool_calls or [])[0]
    assert first_call.id is not None and first_call.id.startswith("call_")
    assert (name, arguments) == ("get_weather", "{}")
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_completions(openai_client: openai.AsyncOpenAI) -> None:
    completion = await openai_client.completions.create(
        model="gpt-3.5-turbo-instruct", prompt="one two three", max_tokens=5
    )

    assert completion.object == "text_completion"
    assert completion.id.startswith("cmpl-")
    assert completion.choices[0].text == expected_text(5)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (3, 5)


async def test_completions_stream(openai_client: openai.AsyncOpenAI) -> None:
    stream = await openai_client.completions.create(
        model="m",
        prompt=[1, 2, 3, 4],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    *text_chunks, usage_chunk = chunks
    assert "".join(chunk.choices[0].text for chunk in text_chunks) == expected_text(16)
    assert text_chunks[-1].choices[0].finish_reason == "stop"
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None and usage_chunk.usage.prompt_tokens == 4


async def test_embeddings_float(openai_client: openai.AsyncOpenAI) -> None:
    result = await openai_client.embeddings.create(
        model="text-embedding-3-small", input=["alpha", "beta", "alpha"], encoding_format="float"
    )

    assert [item.index for item in result.data] == [0, 1, 2]
    vectors = [item.embedding for item in result.data]
    assert all(len(vector) == 8 for vector in vectors)
    assert vectors[0] == vectors[2] != vectors[1]
    assert math.isclose(math.fsum(x * x for x in vectors[0]), 1.0, rel_tol=1e-5)
    assert result.usage.prompt_tokens == 3


async def test_embeddings_base64_matches_float(
    mock: MockServer, openai_client: openai.AsyncOpenAI
) -> None:
    as_float = await openai_client.embeddings.create(
        model="m", input="some text", dimensions=32, encoding_format="float"
    )
    # Without encoding_format the SDK asks for base64 and decodes it itself.
    decoded_by_sdk = await openai_client.embeddings.create(
        model="m", input="some text", dimensions=32
    )
    raw = await openai_client.embeddings.create(
        model="m", input="some text", dimensions=32, encoding_format="base64"
    )

    assert (await mock.requests())[1]["body"]["encoding_format"] == "base64"
    assert len(as_float.data[0].embedding) == 32
    assert decoded_by_sdk.data[0].embedding == as_float.data[0].embedding
    encoded = raw.data[0].embedding
    assert isinstance(encoded, str)
    little_endian = array.array("f", base64.b64decode(encoded))  # test host is little-endian
    assert little_endian.tolist() == as_float.data[0].embedding


async def test_embeddings_token_inputs(openai_client: openai.AsyncOpenAI) -> None:
    single = await openai_client.embeddings.create(
        model="m", input=[5, 6, 7], encoding_format="float"
    )
    batch = await openai_client.embeddings.create(
        model="m", input=[[5, 6, 7], [8]], encoding_format="float"
    )

    assert len(single.data) == 1 and single.usage.prompt_tokens == 3
    assert len(batch.data) == 2 and batch.usage.prompt_tokens == 4
    assert batch.data[0].embedding == single.data[0].embedding


async def test_models(openai_client: openai.AsyncOpenAI) -> None:
    listed = [model.id async for model in openai_client.models.list()]
    model = await openai_client.models.retrieve("ft:gpt-4o:acme:custom")

    assert "gpt-4o" in listed
    assert model.id == "ft:gpt-4o:acme:custom"
    assert model.object == "model"


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", b"{not json", None),
        ("/v1/chat/completions", b'{"messages": []}', "model"),
        ("/v1/chat/completions", b'{"model": "m"}', "messages"),
        ("/v1/chat/completions", b'{"model": "m", "messages": []}', "messages"),
        ("/v1/chat/completions", b'{"model": "m", "messages": [{"content": "x"}]}', None),
        ("/v1/chat/completions", b'{"model": "m", "messages": [1]}', "messages[0]"),
        (
            "/v1/chat/completions",
            b'{"model": "m", "messages": [{"role": "user"}], "max_tokens": "9"}',
            "max_tokens",
        ),
        ("/v1/completions", b'{"model": "m", "prompt": [1, "a"]}', "prompt"),
        ("/v1/embeddings", b'{"model": "m"}', "input"),
        ("/v1/embeddings", b'{"model": "m", "input": "a", "encoding_format": "x"}', None),
        ("/v1/embeddings", b'{"model": "m", "input": "a", "dimensions": 0}', "dimensions"),
    ],
)
async def test_invalid_requests_get_openai_errors(
    mock: MockServer, path: str, body: bytes, param: str | None
) -> None:
    async with mock.http.post(f"{mock.url}{path}", data=body) as response:
        assert response.status == 400
        error = (await response.json())["error"]

    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["message"]
    if param is not None:
        assert error["param"] == param


async def test_unknown_endpoint_is_a_logged_json_404(mock: MockServer) -> None:
    async with mock.http.post(f"{mock.url}/v1/responses", json={"model": "m"}) as response:
        assert response.status == 404
        error = (await response.json())["error"]

    assert error["type"] == "invalid_request_error"
    assert "/v1/responses" in error["message"]
    [logged] = await mock.requests()
    assert (logged["path"], logged["body"]) == ("/v1/responses", {"model": "m"})


async def test_sdk_sees_bad_request(openai_client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_client.chat.completions.create(model="m", messages=[])

    assert caught.value.status_code == 400
    assert caught.value.param == "messages"


@pytest.mark.parametrize("stop", ["mock", ["upstream", "mock"]])
async def test_chat_stop_sequence_ends_the_answer(
    openai_client: openai.AsyncOpenAI, stop: str | list[str]
) -> None:
    completion = await openai_client.chat.completions.create(model="m", messages=USER_HI, stop=stop)

    assert completion.choices[0].message.content == "This is a "
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 4


@pytest.mark.parametrize(
    ("tool_choice", "content", "tool"),
    [
        ("required", "hello", "get_weather"),
        ({"type": "function", "function": {"name": "other"}}, "hello", "other"),
        ("none", "use a tool", None),
        ("auto", "use a tool", "get_weather"),
    ],
)
async def test_chat_tool_choice(
    openai_client: openai.AsyncOpenAI, tool_choice: object, content: str, tool: str | None
) -> None:
    completion = await openai_client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": content}],
        tools=TOOLS,
        tool_choice=tool_choice,
    )

    calls = completion.choices[0].message.tool_calls or []
    assert [call.function.name for call in calls] == ([tool] if tool else [])


async def test_chat_tool_choice_naming_an_unknown_tool(mock: MockServer) -> None:
    body = {
        "model": "m",
        "messages": USER_HI,
        "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "nope"}},
    }
    async with mock.http.post(f"{mock.url}/v1/chat/completions", json=body) as response:
        assert response.status == 400
        error = (await response.json())["error"]

    assert error["param"] == "tool_choice"
