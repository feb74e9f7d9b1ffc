from __future__ import annotations

from aigw.gateway.routing.usage import Usage, usage_from_body, usage_from_stream_tail


def test_usage_from_a_chat_completion_body() -> None:
    body = (
        b'{"id":"x","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":5,'
        b'"total_tokens":17,"prompt_tokens_details":{"cached_tokens":4}}}'
    )
    assert usage_from_body(body) == Usage(12, 5, 4)


def test_embeddings_usage_and_bodies_without_usage() -> None:
    assert usage_from_body(b'{"data":[],"usage":{"prompt_tokens":3,"total_tokens":3}}') == Usage(3)
    assert usage_from_body(b'{"data":[]}') is None
    assert usage_from_body(b"not json") is None
    assert usage_from_body(b"[1, 2]") is None


def test_usage_from_the_last_usage_event_of_a_stream() -> None:
    tail = (
        b'ons":[{"index":0,"delta":{"content":"hi"}}],"usage":null}\n\n'
        b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}\n\n'
        b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2}}\n\n'
        b"data: [DONE]\n\n"
    )
    assert usage_from_stream_tail(tail) == Usage(7, 2, 0)


def test_stream_without_usage_and_garbage_values() -> None:
    assert usage_from_stream_tail(b'data: {"choices":[]}\n\ndata: [DONE]\n\n') is None
    weird = b'data: {"usage":{"prompt_tokens":-3,"completion_tokens":true}}\n\n'
    assert usage_from_stream_tail(weird) == Usage(0, 0, 0)
