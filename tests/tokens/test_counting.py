"""Token counting: published counts, the offline encodings, the exact long-text path, images,
estimates and bad input."""

from __future__ import annotations

import asyncio
import base64
import math
import os
import random
import struct
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from aigw.tokens import counting, encodings
from aigw.tokens.counting import (
    CLAUDE_ESTIMATE,
    CLAUDE_TEXT_FACTOR,
    TokenCount,
    TokenCountError,
    count_chat,
    count_chat_async,
    count_completion_prompt,
    count_embedding_input,
    count_text,
    count_text_async,
    openai_image_tokens,
)
from aigw.tokens.encodings import (
    CL100K_BASE,
    DEGENERATE_CHARS,
    O200K_BASE,
    SPECS,
    get_tokenizer,
    model_info,
    split_at_piece_boundaries,
)

# --- published counts ----------------------------------------------------------------------------
# openai/openai-cookbook, examples/How_to_count_tokens_with_tiktoken.ipynb (section 2-5): token ids
# of "tiktoken is great!" in o200k_base (gpt-4o-mini) and cl100k_base, and compare_encodings().


@pytest.mark.parametrize(
    ("text", "o200k", "cl100k"),
    [
        ("hello world", 2, 2),
        ("tiktoken is great!", 6, 6),
        ("antidisestablishmentarianism", 6, 6),
        ("2 + 2 = 4", 7, 7),
        ("お誕生日おめでとう", 8, 9),  # the encodings differ here
    ],
)
def test_published_text_counts(text: str, o200k: int, cl100k: int) -> None:
    assert count_text("gpt-4o", text) == TokenCount(o200k, True, O200K_BASE)
    assert count_text("gpt-4", text) == TokenCount(cl100k, True, CL100K_BASE)


def test_published_token_ids() -> None:
    text = "tiktoken is great!"
    assert get_tokenizer(O200K_BASE).encode(text) == [83, 8251, 2488, 382, 2212, 0]
    assert get_tokenizer(CL100K_BASE).encode(text) == [83, 1609, 5963, 374, 2294, 0]
    # Same count, different tokens.
    assert get_tokenizer(O200K_BASE).encode("antidisestablishmentarianism") == [
        493, 129901, 376, 160388, 21203, 2367,
    ]  # fmt: skip
    assert get_tokenizer(CL100K_BASE).encode("antidisestablishmentarianism") == [
        519, 85342, 34500, 479, 8997, 2191,
    ]  # fmt: skip


def test_encodings_differ_where_they_should() -> None:
    text = "Ünïcödé 🙂 and 数百万のトークン, plus code: for (int i = 0; i < n; ++i) {}"
    assert count_text("gpt-4o", text).tokens != count_text("gpt-4", text).tokens
    assert count_text("gpt-4o", text).tokens == count_text("o3-mini", text).tokens


# The cookbook's section 6 example, whose counts it checks against the API's prompt_tokens:
# 129 for gpt-3.5-turbo, gpt-4-0613 and gpt-4; 124 for gpt-4o and gpt-4o-mini. The earlier
# revision of the notebook (tokens_per_message=4, tokens_per_name=-1) gives 127 for
# gpt-3.5-turbo-0301, also matching the API.
COOKBOOK_MESSAGES: list[dict[str, str]] = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate "
        "jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on "
        "opportunities for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client "
        "deliverable.",
    },
]


@pytest.mark.parametrize(
    ("model", "tokens", "encoding"),
    [
        ("gpt-3.5-turbo", 129, CL100K_BASE),
        ("gpt-3.5-turbo-0125", 129, CL100K_BASE),
        ("gpt-3.5-turbo-0301", 127, CL100K_BASE),
        ("gpt-4-0613", 129, CL100K_BASE),
        ("gpt-4", 129, CL100K_BASE),
        ("gpt-4o", 124, O200K_BASE),
        ("gpt-4o-2024-08-06", 124, O200K_BASE),
        ("gpt-4o-mini", 124, O200K_BASE),
    ],
)
def test_cookbook_chat_example(model: str, tokens: int, encoding: str) -> None:
    assert count_chat(model, COOKBOOK_MESSAGES) == TokenCount(tokens, True, encoding)


# The cookbook's section 7 example (num_tokens_for_tools), also checked against the API:
# 105 for gpt-3.5-turbo and gpt-4, 101 for gpt-4o and gpt-4o-mini.
COOKBOOK_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {
                        "type": "string",
                        "description": "The city and state, e.g. San Francisco, CA",
                    },
                    "unit": {
                        "type": "string",
                        "description": "The unit of temperature to return",
                        "enum": ["celsius", "fahrenheit"],
                    },
                },
                "required": ["location"],
            },
        },
    }
]
COOKBOOK_TOOL_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful assistant that can answer to questions about the weather.",
    },
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


@pytest.mark.parametrize(
    ("model", "tokens"),
    [("gpt-3.5-turbo", 105), ("gpt-4", 105), ("gpt-4o", 101), ("gpt-4o-mini", 101)],
)
def test_cookbook_tools_example(model: str, tokens: int) -> None:
    result = count_chat(model, COOKBOOK_TOOL_MESSAGES, COOKBOOK_TOOLS)
    assert (result.tokens, result.exact) == (tokens, True)


def test_newer_families_use_the_gpt4o_constants_marked_inexact() -> None:
    for model in ("gpt-4.1", "o3", "gpt-5", "gpt-5-mini"):
        result = count_chat(model, COOKBOOK_MESSAGES)
        assert result == TokenCount(124, False, O200K_BASE)


def test_tools_outside_the_cookbook_shape_are_counted_but_inexact() -> None:
    nested = {
        "type": "function",
        "function": {
            "name": "book",
            "description": "Book a table.",
            "parameters": {
                "type": "object",
                "properties": {
                    "party": {
                        "type": "object",
                        "description": "Who comes",
                        "properties": {"size": {"type": "integer", "description": "People"}},
                    },
                    "when": {"type": "string", "format": "date-time"},
                },
                "additionalProperties": False,
            },
        },
    }
    base = count_chat("gpt-4o", COOKBOOK_TOOL_MESSAGES)
    result = count_chat("gpt-4o", COOKBOOK_TOOL_MESSAGES, [nested])
    assert not result.exact
    assert result.tokens > base.tokens + 20


# --- model names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "encoding", "provider"),
    [
        ("gpt-4o", O200K_BASE, "openai"),
        ("gpt-4o-mini-2024-07-18", O200K_BASE, "openai"),
        ("chatgpt-4o-latest", O200K_BASE, "openai"),
        ("gpt-4.1-nano", O200K_BASE, "openai"),
        ("o1-preview", O200K_BASE, "openai"),
        ("o3-mini", O200K_BASE, "openai"),
        ("o4-mini-2025-04-16", O200K_BASE, "openai"),
        ("gpt-5", O200K_BASE, "openai"),
        ("gpt-5.1-codex", O200K_BASE, "openai"),
        ("GPT-4O", O200K_BASE, "openai"),
        ("openai/gpt-4o", O200K_BASE, "openai"),
        ("ft:gpt-4o-mini-2024-07-18:acme::abc123", O200K_BASE, "openai"),
        ("gpt-4", CL100K_BASE, "openai"),
        ("gpt-4-turbo", CL100K_BASE, "openai"),
        ("gpt-4-32k-0613", CL100K_BASE, "openai"),
        ("gpt-3.5-turbo-instruct", CL100K_BASE, "openai"),
        ("gpt-35-turbo", CL100K_BASE, "openai"),
        ("text-embedding-3-small", CL100K_BASE, "openai"),
        ("text-embedding-3-large", CL100K_BASE, "openai"),
        ("text-embedding-ada-002", CL100K_BASE, "openai"),
        ("claude-3-5-sonnet-20241022", CL100K_BASE, "anthropic"),
        ("claude-sonnet-4-5", CL100K_BASE, "anthropic"),
        ("llama-3.1-70b", O200K_BASE, "unknown"),
        ("demo-chat", O200K_BASE, "unknown"),
    ],
)
def test_model_to_encoding(model: str, encoding: str, provider: str) -> None:
    info = model_info(model)
    assert (info.encoding, info.provider) == (encoding, provider)


def test_unknown_models_use_o200k_and_are_inexact() -> None:
    assert count_text("my-local-llama", "hello world") == TokenCount(2, False, O200K_BASE)
    assert not count_chat("my-local-llama", COOKBOOK_MESSAGES).exact


# --- the encodings are OpenAI's, and load offline ------------------------------------------------


@pytest.mark.parametrize("name", [O200K_BASE, CL100K_BASE])
def test_specs_equal_tiktokens_own(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Our pattern, special tokens and rank-file hash are tiktoken's (its constructor is called
    with the download replaced by a recorder)."""
    from tiktoken_ext import openai_public

    seen: dict[str, Any] = {}

    def fake_load(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        seen["url"], seen["hash"] = url, expected_hash
        return {}

    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", fake_load)
    reference = getattr(openai_public, name)()
    spec = SPECS[name]
    assert reference["pat_str"] == spec.pat_str
    assert reference["special_tokens"] == spec.special_tokens
    assert seen["hash"] == spec.sha256
    assert seen["url"].endswith(f"/{name}.tiktoken")


def test_rank_file_with_wrong_hash_is_refused() -> None:
    spec = encodings.EncodingSpec(O200K_BASE, "0" * 64, "", {})
    with pytest.raises(encodings.EncodingUnavailable, match="SHA-256"):
        encodings.read_rank_file(spec)


OFFLINE_SCRIPT = """
import json, os, socket, sys

def no_network(*args, **kwargs):
    raise OSError("network access attempted")

socket.socket.connect = no_network
socket.socket.connect_ex = no_network
socket.create_connection = no_network
import tiktoken.load
tiktoken.load.read_file = no_network

from aigw.tokens import count_chat, count_text
print(json.dumps({
    "o200k": count_text("gpt-4o", "hello world").tokens,
    "cl100k": count_text("gpt-4", "hello world").tokens,
    "chat": count_chat("gpt-4o-mini", [{"role": "user", "content": "hi"}]).tokens,
    "bpe_openai_imported": "bpe_openai" in sys.modules,
}))
"""


def test_encodings_load_offline_with_an_empty_tiktoken_cache(tmp_path: Path) -> None:
    """A fresh process with an empty TIKTOKEN_CACHE_DIR and every way to the network cut."""
    import json

    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(cache), "DATA_GYM_CACHE_DIR": str(cache)}
    env.pop("HTTP_PROXY", None)
    done = subprocess.run(
        [sys.executable, "-c", OFFLINE_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "o200k": 2,
        "cl100k": 2,
        "chat": 8,  # 3 + "user" + "hi" + 3
        "bpe_openai_imported": False,  # only its data files are read
    }
    assert list(cache.iterdir()) == []


def test_encodings_are_built_once_under_concurrent_first_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(encodings, "_tokenizers", {})
    builds: list[str] = []
    real_build = encodings.build_tiktoken_encoding
    barrier = threading.Barrier(8)

    def counting_build(name: str) -> Any:
        builds.append(name)
        return real_build(name)

    def first_use(_: int) -> encodings.Tokenizer:
        barrier.wait()
        return get_tokenizer(CL100K_BASE)

    monkeypatch.setattr(encodings, "build_tiktoken_encoding", counting_build)
    with ThreadPoolExecutor(8) as pool:
        tokenizers = list(pool.map(first_use, range(8)))
    assert builds == [CL100K_BASE]
    assert all(t is tokenizers[0] for t in tokenizers)


# --- long and degenerate texts -------------------------------------------------------------------


def _random_text(rng: random.Random, length: int) -> str:
    alphabet = [
        *"aAbZ zé's'S'LL\n\r\t 0123456789!?./,-_()",
        *(" ", " ", "  ", "\u00a0", "\u2003", "\u0301", "🙂", "世界", "Жж", "ǅ", "²"),
        *("\u2028", "\x85"),
    ]
    return "".join(rng.choice(alphabet) for _ in range(length))


def test_every_unicode_whitespace_is_python_whitespace() -> None:
    """The cut rule relies on str.isspace() covering the tokenizers' \\s (Unicode White_Space;
    the regex module, which tiktoken uses for its Python side, has the same tables)."""
    import regex

    space = regex.compile(r"\s")
    missed = [
        hex(code)
        for code in range(sys.maxunicode + 1)
        if not 0xD800 <= code <= 0xDFFF and space.match(chr(code)) and not chr(code).isspace()
    ]
    assert missed == []


@pytest.mark.parametrize("name", [O200K_BASE, CL100K_BASE])
def test_cuts_are_piece_boundaries(name: str) -> None:
    """Counting segment by segment gives the whole text's count (tiktoken on both sides)."""
    tokenizer = get_tokenizer(name)
    rng = random.Random(7)
    for _ in range(300):
        text = _random_text(rng, rng.randint(0, 400))
        segments = list(
            split_at_piece_boundaries(text, size=rng.randint(1, 40), window=rng.randint(1, 30))
        )
        assert "".join(segments) == text
        whole = len(tokenizer.encode(text))
        assert sum(len(tokenizer.encode(s)) for s in segments) == whole, repr(text)


@pytest.mark.parametrize("name", [O200K_BASE, CL100K_BASE])
def test_linear_backend_agrees_with_tiktoken(name: str) -> None:
    tokenizer = get_tokenizer(name)
    rng = random.Random(11)
    samples = [_random_text(rng, rng.randint(0, 200)) for _ in range(2000)]
    samples += ["<|endoftext|> is text here", "lone \ud800 surrogate", "A" * 70_000]
    for text in samples:
        assert tokenizer._count_linear(text) == tokenizer._count_reference(text), repr(text[:50])


def test_long_text_count_is_exact() -> None:
    rng = random.Random(3)
    text = " ".join(_random_text(rng, 30) for _ in range(8000))  # ~250 KB, cut into segments
    assert len(text) > 4 * DEGENERATE_CHARS
    for name in (O200K_BASE, CL100K_BASE):
        tokenizer = get_tokenizer(name)
        assert tokenizer.count(text) == len(tokenizer.encode(text))


def test_degenerate_runs_are_counted_exactly_and_quickly() -> None:
    # Long enough to leave tiktoken's fast range, short enough for it to check us.
    for text in ("A" * 200_000, "\n" * 200_000, "!" * 150_000, "中" * 150_000):
        for name in (O200K_BASE, CL100K_BASE):
            tokenizer = get_tokenizer(name)
            assert tokenizer.count(text) == len(tokenizer.encode(text))


def test_a_megabyte_of_spaces_does_not_crash() -> None:
    """tiktoken's regex overflows its stack here (a PanicException); we must still count."""
    text = "start " + " " * 1_100_000 + " end"
    result = count_text("gpt-4o", text)
    assert result.exact
    assert result.tokens == get_tokenizer(O200K_BASE)._count_linear(text)


# --- async ---------------------------------------------------------------------------------------


async def test_async_counts_equal_sync_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    in_thread: list[bool] = []
    real_to_thread = asyncio.to_thread

    async def spy(function: Any, *args: Any) -> Any:
        in_thread.append(True)
        return await real_to_thread(function, *args)

    monkeypatch.setattr(counting.asyncio, "to_thread", spy)
    get_tokenizer(O200K_BASE)  # loaded: a small input is counted inline
    small = await count_chat_async("gpt-4o", COOKBOOK_MESSAGES)
    assert small == count_chat("gpt-4o", COOKBOOK_MESSAGES)
    assert in_thread == []

    big_messages = [{"role": "user", "content": "lorem ipsum dolor sit amet " * 2000}]
    big = await count_chat_async("gpt-4o", big_messages, COOKBOOK_TOOLS)
    assert big == count_chat("gpt-4o", big_messages, COOKBOOK_TOOLS)
    assert in_thread == [True]
    assert await count_text_async("gpt-4", "x " * 40_000) == count_text("gpt-4", "x " * 40_000)


async def test_long_count_does_not_block_the_event_loop() -> None:
    text = "The quick brown fox jumps over the lazy dog. " * 100_000  # 4.5 MB
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    result = await count_text_async("gpt-4o", text)
    done.set()
    await task
    assert result == count_text("gpt-4o", text)
    assert result.tokens > 1_000_000
    assert ticks >= 5  # the loop kept running while tiktoken encoded in a thread


# --- multi-part content and images ---------------------------------------------------------------


def _png(width: int, height: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I4sII", 13, b"IHDR", width, height) + b"\x08\x02"


def _jpeg(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + b"\x00" * 9
    sof = b"\xff\xc0" + struct.pack(">HBHH", 17, 8, height, width) + b"\x03" + b"\x00" * 9
    return b"\xff\xd8" + app0 + sof


def _gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00" * 4


def _webp(width: int, height: int) -> bytes:
    body = b"VP8X" + struct.pack("<I", 10) + b"\x00" * 4
    body += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


def _data_url(image: bytes, kind: str = "png") -> str:
    return f"data:image/{kind};base64," + base64.b64encode(image + b"\x00" * 64).decode()


@pytest.mark.parametrize("make", [_png, _jpeg, _gif, _webp])
def test_image_size_is_read_from_data_urls(make: Any) -> None:
    assert counting.image_size_from_data_url(_data_url(make(1800, 2400))) == (1800, 2400)


# OpenAI's vision guide: 1024x1024 high = 765 tokens; 2048x4096 high = 1105; low = 85 on gpt-4o;
# gpt-4o-mini's base and tile are 2833 and 5667; o1/o3's 75 and 150.
@pytest.mark.parametrize(
    ("model", "detail", "size", "tokens", "exact"),
    [
        ("gpt-4o", "high", (1024, 1024), 765, True),
        ("gpt-4o", "high", (2048, 4096), 1105, True),
        ("gpt-4o", "low", (2048, 4096), 85, True),
        ("gpt-4o", "low", None, 85, True),
        ("gpt-4o", "auto", (1024, 1024), 765, False),
        ("gpt-4o", "high", None, 765, False),
        ("gpt-4o-mini", "low", None, 2833, True),
        ("gpt-4o-mini", "high", (512, 512), 2833 + 5667, True),
        ("o1", "high", (1024, 1024), 75 + 4 * 150, True),
        ("gpt-4.1-mini", "high", (1024, 1024), math.ceil(1024 * 1.62), False),
        # The guide's patch example: 1800x2400 -> 1452 patches.
        ("gpt-4.1-mini", "low", (1800, 2400), math.ceil(1452 * 1.62), False),
    ],
)
def test_openai_image_tokens(
    model: str, detail: str, size: tuple[int, int] | None, tokens: int, exact: bool
) -> None:
    assert openai_image_tokens(model_info(model), detail, size) == (tokens, exact)


def test_chat_with_an_image_part() -> None:
    text_only = count_chat("gpt-4o", [{"role": "user", "content": "What is this?"}])
    image = {
        "type": "image_url",
        "image_url": {"url": _data_url(_png(1024, 1024)), "detail": "high"},
    }
    one_part = [{"role": "user", "content": [{"type": "text", "text": "What is this?"}]}]
    assert count_chat("gpt-4o", one_part) == text_only
    with_image = [{"role": "user", "content": [one_part[0]["content"][0], image]}]
    result = count_chat("gpt-4o", with_image)
    assert result.tokens == text_only.tokens + 765
    assert not result.exact  # several parts: how the API joins them is not published
    remote = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    assert count_chat("gpt-4o", [{"role": "user", "content": [remote]}]).tokens == 7 + 765


def test_audio_and_tool_calls_make_a_count_inexact() -> None:
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    assert not count_chat("gpt-4o", [{"role": "user", "content": [audio]}]).exact
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
        ],
    }
    result = count_chat("gpt-4o", [call, {"role": "tool", "tool_call_id": "c1", "content": "2"}])
    assert not result.exact
    assert result.tokens > 3 + 3 + 3


# --- Claude estimates ----------------------------------------------------------------------------


def test_claude_counts_are_marked_estimates() -> None:
    text = "Security by obscurity is not a good idea. " * 20
    cl100k = count_text("gpt-4", text).tokens
    result = count_text("claude-3-5-sonnet-20241022", text)
    assert result == TokenCount(math.ceil(cl100k * CLAUDE_TEXT_FACTOR), False, CLAUDE_ESTIMATE)
    chat = count_chat("claude-sonnet-4-5", COOKBOOK_MESSAGES)
    assert chat == TokenCount(math.ceil(129 * CLAUDE_TEXT_FACTOR), False, CLAUDE_ESTIMATE)
    with_tools = count_chat("claude-sonnet-4-5", COOKBOOK_TOOL_MESSAGES, COOKBOOK_TOOLS)
    assert with_tools.tokens > counting.CLAUDE_TOOL_PROMPT_TOKENS
    image = {
        "type": "image",
        "source": {
            "type": "base64",
            "media_type": "image/png",
            "data": base64.b64encode(_png(750, 1000)).decode(),
        },
    }
    result = count_chat("claude-3-haiku", [{"role": "user", "content": [image]}])
    assert result.tokens == math.ceil(7 * CLAUDE_TEXT_FACTOR) + 1000  # 750*1000/750


# --- completion prompts and embedding inputs -----------------------------------------------------


@pytest.mark.parametrize("function", [count_completion_prompt, count_embedding_input])
def test_prompt_and_input_shapes(function: Any) -> None:
    assert function("gpt-3.5-turbo-instruct", "hello world") == TokenCount(2, True, CL100K_BASE)
    assert function("text-embedding-3-small", ["hello world", "hello"]).tokens == 3
    assert function("text-embedding-3-small", [1, 2, 3]) == TokenCount(3, True, CL100K_BASE)
    assert function("text-embedding-3-small", [[1, 2], [3]]).tokens == 3
    assert function("text-embedding-3-small", []).tokens == 0
    assert function("davinci-002", "").tokens == 0


@pytest.mark.parametrize(
    "value",
    [None, 3, {"text": "x"}, ["a", 1], [1, True], [-1], [[1], "a"], [[1, "a"]], [1.5]],
)
def test_bad_prompts_are_refused(value: Any) -> None:
    with pytest.raises(TokenCountError):
        count_completion_prompt("gpt-4o", value)


# --- bad chat input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "tools", "param"),
    [
        ("hello", None, "messages"),
        (["hello"], None, "messages[0]"),
        ([{"content": "x"}], None, "messages[0].role"),
        ([{"role": 1, "content": "x"}], None, "messages[0].role"),
        ([{"role": "user", "content": 5}], None, "messages[0].content"),
        ([{"role": "user", "name": 5, "content": "x"}], None, "messages[0].name"),
        ([{"role": "user", "content": [5]}], None, "messages[0].content[0]"),
        ([{"role": "user", "content": [{"text": "x"}]}], None, "messages[0].content[0].type"),
        ([{"role": "user", "content": [{"type": "text"}]}], None, "messages[0].content[0].text"),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}],
            None,
            "messages[0].content[0].image_url.url",
        ),
        ([{"role": "assistant", "tool_calls": "x"}], None, "messages[0].tool_calls"),
        ([], "x", "tools"),
        ([], ["x"], "tools[0]"),
        ([], [{"type": "function"}], "tools[0].function"),
        ([], [{"function": {"description": "d"}}], "tools[0].function.name"),
        ([], [{"function": {"name": "f", "parameters": []}}], "tools[0].function.parameters"),
    ],
)
def test_bad_chat_input_names_the_field(messages: Any, tools: Any, param: str) -> None:
    with pytest.raises(TokenCountError) as raised:
        count_chat("gpt-4o", messages, tools)
    assert raised.value.param == param


@pytest.mark.parametrize("model", ["", "   ", None, 5])
async def test_model_must_be_named(model: Any) -> None:
    with pytest.raises(TokenCountError):
        count_text(model, "x")
    with pytest.raises(TokenCountError):
        await count_chat_async(model, [{"role": "user", "content": "x"}])
