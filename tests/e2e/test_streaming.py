"""Streams pass through chunk by chunk, and a caller that goes away cancels the upstream."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from aiohttp import web

from tests.e2e.conftest import Stack
from tests.helpers import ThreadedUpstream, gateway, new_key_entry

USER = [{"role": "user", "content": "hi"}]


def _chunk(text: str) -> bytes:
    return (
        b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":0,'
        b'"model":"m","choices":[{"index":0,"delta":{"content":"' + text.encode() + b'"},'
        b'"finish_reason":null}]}\n\n'
    )


class ScriptedUpstream:
    """Streams one chunk, then holds the rest until the test releases it."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.rest_sent = threading.Event()
        self.cancelled = threading.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        self.server = ThreadedUpstream(app)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("stream"):
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            await response.write(_chunk("first"))
            if body["messages"][0]["content"] == "hang":
                await asyncio.sleep(60)
            # Wait (bounded) for the test to see the first chunk before finishing the answer.
            for _ in range(200):
                if self.release.is_set():
                    break
                await asyncio.sleep(0.05)
            self.rest_sent.set()
            await response.write(_chunk(" second"))
            await response.write(b"data: [DONE]\n\n")
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return response


@pytest.fixture(scope="module")
def scripted(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ScriptedUpstream, str, str]]:
    tmp: Path = tmp_path_factory.mktemp("scripted")
    upstream = ScriptedUpstream()
    key, entry = new_key_entry("k")
    document = {
        "providers": [{"name": "scripted", "base_url": f"{upstream.server.url}/v1"}],
        "models": [{"name": "scripted", "targets": [{"provider": "scripted", "model": "m"}]}],
        "namespaces": [{"name": "ns", "keys": [entry]}],
    }
    with upstream.server, gateway(tmp, document) as url:
        yield upstream, url, key


def test_first_chunk_reaches_the_client_before_the_upstream_finishes(scripted) -> None:  # type: ignore[no-untyped-def]
    upstream, url, key = scripted
    upstream.release.clear()
    upstream.rest_sent.clear()
    with openai.OpenAI(base_url=f"{url}/v1", api_key=key) as client:
        stream = client.chat.completions.create(model="scripted", messages=USER, stream=True)
        first = next(iter(stream))
        # The upstream still holds the rest of its answer: the chunk cannot have been buffered.
        assert first.choices[0].delta.content == "first"
        assert not upstream.rest_sent.is_set()
        upstream.release.set()
        rest = "".join(c.choices[0].delta.content or "" for c in stream)
    assert rest == " second"


def test_client_disconnect_mid_stream_cancels_the_upstream(scripted) -> None:  # type: ignore[no-untyped-def]
    upstream, url, key = scripted
    upstream.cancelled.clear()
    with httpx.stream(
        "POST",
        f"{url}/v1/chat/completions",
        json={
            "model": "scripted",
            "stream": True,
            "messages": [{"role": "user", "content": "hang"}],
        },
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ) as response:
        assert next(response.iter_bytes()).startswith(b"data: ")
    # The caller has gone; the gateway must drop its upstream request rather than wait 60 s.
    assert upstream.cancelled.wait(10)


def test_client_disconnect_while_waiting_cancels_the_upstream(scripted) -> None:  # type: ignore[no-untyped-def]
    upstream, url, key = scripted
    upstream.cancelled.clear()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "scripted", "messages": [{"role": "user", "content": "hang"}]},
            headers={"Authorization": f"Bearer {key}"},
            timeout=0.5,
        )
    # The provider's read timeout is 300 s: only the caller's disconnect can end this early.
    assert upstream.cancelled.wait(10)


def test_upstream_cut_mid_stream_is_an_error_not_a_finish(
    faulty: Stack, client: openai.OpenAI
) -> None:
    httpx.put(f"{faulty.faulty}/_mock/config", json={"disconnect_rate": 1}).raise_for_status()
    stream = client.chat.completions.create(
        model="faulty-chat", messages=USER, stream=True, max_tokens=50
    )
    with pytest.raises(openai.APIError) as raised:
        for _ in stream:
            pass
    assert "broke off the stream" in str(raised.value)
