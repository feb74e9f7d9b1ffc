"""The request-log shipper: redaction, the bounded buffer, merge back on failure, the HTTP sink.

End to end with real processes: ``tests/e2e/test_request_log.py``; the config center's side:
``tests/config_center/test_request_log.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web

from aigw.config.loader import ConfigError, load_config_text
from aigw.config.schema import Config
from aigw.config.snapshot import RequestLogEntry, build_snapshot
from aigw.gateway.monitoring import metrics, request_log
from aigw.gateway.monitoring.metrics import RequestRecord, record_request
from aigw.gateway.monitoring.request_log import (
    REDACTED,
    DeliveryError,
    HttpSink,
    NullShipper,
    RequestLogShipper,
    body_text,
    chunks,
    prepare_rows,
    redact,
    shipper_from_env,
)
from tests.helpers import free_port

SECRET = "sk-live-abcdef0123456789"


def request(
    namespace: str | None = "team-a", status: int = 200, body: bytes | None = None, **fields: Any
) -> RequestRecord:
    record = RequestRecord(secrets.token_hex(4), "POST", "/v1/chat/completions", status=status)
    record.namespace, record.key, record.model = namespace, "sk-aigw-AbCd", "gpt-4o"
    if body is not None:
        record.request_body = (body, fields.pop("setting", RequestLogEntry(bodies=True)))
    for name, value in fields.items():
        setattr(record, name, value)
    return record


def ids(rows: list[bytes]) -> list[str]:
    return [orjson.loads(row)["request_id"] for row in rows]


class FakeSink:
    """Stores what it is sent; fails while ``down``; ``partial=n`` delivers the first n rows of
    the next send and raises DeliveryError for the rest."""

    def __init__(self) -> None:
        self.rows: list[bytes] = []
        self.down = False
        self.partial: int | None = None
        self.sends = 0
        self.closed = False

    async def send(self, rows: list[bytes]) -> None:
        self.sends += 1
        if self.partial is not None:
            count, self.partial = self.partial, None
            self.rows.extend(rows[:count])
            raise DeliveryError("gone after the first rows", rows[count:])
        if self.down:
            raise ConnectionError("the config center is away")
        self.rows.extend(rows)

    async def close(self) -> None:
        self.closed = True

    def __str__(self) -> str:
        return "the fake sink"


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


# -- redaction -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret",
    [
        SECRET,
        "sk-ant-api03-AbCdEfGhIjKlMnOp_qrStUv-wxYZ",
        "sk-aigw-3q7xYhT0c1Hk9aB2dE5fG8jK1mN4pQ7rS0tU3vW6y",
        "sk-proj-0123456789abcdefABCDEF",
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_" + "a1B2c3D4e5" * 4,
    ],
)
def test_api_keys_in_text_are_redacted(secret: str) -> None:
    text = json.dumps({"messages": [{"role": "user", "content": f"my key is {secret}, ok?"}]})
    redacted = redact(text)
    assert secret not in redacted and secret[6:] not in redacted
    assert json.loads(redacted)["messages"][0]["content"] == f"my key is {REDACTED}, ok?"


def test_secret_fields_and_credentials_are_redacted_and_the_json_stays_valid() -> None:
    nested = json.dumps({"password": "hunter2", "user": "bob"})
    body = {
        "model": "gpt-4o",
        "max_tokens": 5,
        "api_key": "plain-value",
        "x-API-Key": "another",
        "client_secret": 'quoted \\" value',
        "Authorization": "Token abc",
        "access_token": "t0k3n",
        "messages": [
            {"role": "user", "content": "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload"},
            {"role": "user", "content": f"tool args: {nested}"},
        ],
        "metadata": {"passwd": "p", "note": "task-force-alpha-bravo is not a key"},
    }
    redacted = json.loads(redact(json.dumps(body)))
    for field in ("api_key", "x-API-Key", "client_secret", "Authorization", "access_token"):
        assert redacted[field] == REDACTED, field
    assert redacted["metadata"] == {
        "passwd": REDACTED,
        "note": "task-force-alpha-bravo is not a key",
    }
    assert redacted["messages"][0]["content"] == f"Authorization: Bearer {REDACTED}"
    assert json.loads(redacted["messages"][1]["content"].removeprefix("tool args: ")) == {
        "password": REDACTED,
        "user": "bob",
    }
    assert (redacted["model"], redacted["max_tokens"]) == ("gpt-4o", 5)  # the rest untouched


def test_configured_patterns_are_redacted_too() -> None:
    patterns = (re.compile(r"ACME-\d{6}"), re.compile(r"(?i)patient id: \w+"))
    text = "order ACME-123456 for Patient ID: X99 (ACME-12 is too short)"
    assert redact(text, patterns) == f"order {REDACTED} for {REDACTED} (ACME-12 is too short)"


def test_a_body_is_redacted_then_cut_to_its_byte_limit() -> None:
    setting = RequestLogEntry(bodies=True, max_body_bytes=300)
    raw = json.dumps({"messages": [{"content": "é" * 140 + " " + SECRET + " " + "x" * 5000}]})
    text = body_text(raw.encode(), setting)
    assert len(text.encode()) <= 300 and SECRET[:8] not in text
    assert text.startswith('{"messages"') and "\\u00e9" in text
    # A secret straddling the cut is recognised whole, so no part of it is kept.
    raw = ("a" * 290 + " " + SECRET).encode()
    assert body_text(raw, setting) == "a" * 290 + " " + REDACTED[:9]
    # Multi-byte characters are never split; invalid UTF-8 is replaced, not refused.
    assert body_text(("é" * 200).encode(), setting) == "é" * 150
    assert body_text(b"\xff\xfe{}", setting) == "\ufffd\ufffd{}"


def test_the_setting_is_validated_and_compiled_into_the_snapshot() -> None:
    config = load_config_text(
        "gateway:\n  request_log:\n    bodies: true\n    max_body_bytes: 1024\n"
        "    redact: ['ACME-\\d+']\n"
    )
    entry = build_snapshot(config).request_log
    assert entry.bodies and entry.max_body_bytes == 1024
    assert [p.pattern for p in entry.redact] == [r"ACME-\d+"]
    assert build_snapshot(Config()).request_log == RequestLogEntry()  # off by default
    for bad in ("redact: ['(unclosed']", "max_body_bytes: 10", "max_body_bytes: 2000000"):
        with pytest.raises(ConfigError):
            load_config_text(f"gateway:\n  request_log:\n    {bad}\n")


# -- rows ------------------------------------------------------------------------------------------


def test_a_row_has_the_records_fields_and_never_the_key() -> None:
    record = request(
        status=502,
        timestamp=1_800_000_000.123456,
        provider="mock",
        upstream_model="gpt-4o-2024",
        error_type="api_error",
        error_code="upstream_unavailable",
        stream=True,
        attempts=2,
        duration_ms=12.5,
        ttft_ms=3.25,
        prompt_tokens=10,
        completion_tokens=4,
        cached_tokens=2,
        cost_usd=0.0012,
    )
    (row,) = prepare_rows([request_log._fresh(record)], "abc", 26)
    assert orjson.loads(row) == {
        "uid": "abc1a",
        "ts": 1_800_000_000_123_456,
        "request_id": record.request_id,
        "namespace": "team-a",
        "key_prefix": "sk-aigw-AbCd",
        "path": "/v1/chat/completions",
        "model": "gpt-4o",
        "provider": "mock",
        "upstream_model": "gpt-4o-2024",
        "status": 502,
        "error_type": "api_error",
        "error_code": "upstream_unavailable",
        "stream": True,
        "attempts": 2,
        "duration_ms": 12.5,
        "ttft_ms": 3.25,
        "prompt_tokens": 10,
        "completion_tokens": 4,
        "cached_tokens": 2,
        "cost_usd": 0.0012,
    }
    long = request(request_id="r" * 500, model="m" * 300, body=b'{"k": "' + SECRET.encode() + b'"}')
    parsed = orjson.loads(prepare_rows([request_log._fresh(long)], "abc", 0)[0])
    assert len(parsed["request_id"]) == 128 and len(parsed["model"]) == 256
    assert parsed["request_body"] == f'{{"k": "{REDACTED}"}}'
    assert parsed["request_body_bytes"] == len(SECRET) + 9


def test_a_record_that_cannot_be_prepared_is_logged_and_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good, bad = request(), request(cost_usd=object())
    with caplog.at_level(logging.ERROR, "aigw.gateway.request_log"):
        rows = prepare_rows([request_log._fresh(r) for r in (bad, good)], "abc", 0)
    assert ids(rows) == [good.request_id]
    assert any(bad.request_id in r.getMessage() for r in caplog.records)


def test_chunks_bound_rows_and_bytes() -> None:
    rows = [b"x" * 10] * 25
    assert [len(c) for c in chunks(rows, 10, 10_000)] == [10, 10, 5]
    assert [len(c) for c in chunks(rows, 100, 55)] == [5, 5, 5, 5, 5]
    assert chunks([b"x" * 100], 10, 50) == [[b"x" * 100]]  # one oversized row goes alone
    assert chunks([], 10, 10) == []


# -- the shipper -----------------------------------------------------------------------------------


async def test_add_keeps_requests_with_a_namespace_and_flush_delivers_them_in_order() -> None:
    sink = FakeSink()
    shipper = RequestLogShipper(sink, interval=3600)
    records = [request() for _ in range(5)]
    for record in records:
        shipper.add(record)
    shipper.add(request(namespace=None, status=401))  # no key matched: access log only
    assert len(shipper) == 5 and sink.rows == []
    assert await shipper.flush()
    assert ids(sink.rows) == [r.request_id for r in records]
    assert len(shipper) == 0 and shipper.delivered == 5
    assert "request_body" not in orjson.loads(sink.rows[0])
    await shipper.close()
    assert sink.closed


async def test_a_failed_flush_merges_back_ahead_of_newer_records_and_keeps_uids() -> None:
    sink = FakeSink()
    shipper = RequestLogShipper(sink, interval=3600)
    first = [request() for _ in range(3)]
    for record in first:
        shipper.add(record)
    sink.down = True
    assert not await shipper.flush()
    assert len(shipper) == 3 and shipper.failed_flushes == 1
    uids = [orjson.loads(row)["uid"] for row in shipper._pending]
    later = [request() for _ in range(2)]
    for record in later:
        shipper.add(record)

    sink.partial = 2  # the next send delivers two rows and loses the rest
    sink.down = False
    assert not await shipper.flush()
    assert len(shipper) == 3
    assert await shipper.flush()
    assert ids(sink.rows) == [r.request_id for r in first + later]
    assert [orjson.loads(row)["uid"] for row in sink.rows[:3]] == uids  # stored once if re-sent
    assert len({orjson.loads(row)["uid"] for row in sink.rows}) == 5
    await shipper.close()


async def test_beyond_the_cap_the_oldest_records_are_dropped_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = FakeSink()
    sink.down = True
    shipper = RequestLogShipper(sink, interval=3600, max_records=10)
    records = [request() for _ in range(25)]
    for record in records[:8]:
        shipper.add(record)
    assert not await shipper.flush()  # 8 prepared rows wait
    with caplog.at_level(logging.WARNING, "aigw.gateway.request_log"):
        for record in records[8:]:
            shipper.add(record)
    assert len(shipper) == 10 and shipper.dropped == 15
    assert sum("dropping the oldest" in r.getMessage() for r in caplog.records) == 1
    sink.down = False
    with caplog.at_level(logging.WARNING, "aigw.gateway.request_log"):
        assert await shipper.flush()
    assert ids(sink.rows) == [r.request_id for r in records[15:]]  # the newest ten
    assert any("15 records dropped" in r.getMessage() for r in caplog.records)
    await shipper.close()


async def test_prepared_rows_are_bounded_in_bytes_too() -> None:
    sink = FakeSink()
    sink.down = True
    setting = RequestLogEntry(bodies=True, max_body_bytes=1000)
    shipper = RequestLogShipper(sink, interval=3600, max_buffer_bytes=5000)
    records = [request(body=b"y" * 1000, setting=setting) for _ in range(10)]
    for record in records:
        shipper.add(record)
    assert not await shipper.flush()
    assert shipper._pending_bytes <= 5000 and len(shipper) == 3 and shipper.dropped == 7
    sink.down = False
    assert await shipper.flush()
    assert ids(sink.rows) == [r.request_id for r in records[7:]]


async def test_bodies_are_redacted_in_a_thread_at_flush_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threads: list[str] = []
    prepare = request_log.prepare_rows

    def watched(*args: Any) -> list[bytes]:
        threads.append(threading.current_thread().name)
        return prepare(*args)

    monkeypatch.setattr(request_log, "prepare_rows", watched)
    sink = FakeSink()
    shipper = RequestLogShipper(sink, interval=3600)
    body = json.dumps({"messages": [{"content": f"key {SECRET} order ACME-123456"}]}).encode()
    setting = RequestLogEntry(bodies=True, redact=(re.compile(r"ACME-\d{6}"),))
    record = request(body=body, setting=setting)
    shipper.add(record)
    assert shipper._fresh[0][-1][0] is body  # the hot path only keeps a reference
    shipper.add(request())
    assert await shipper.flush()
    assert threads and threads[0] != threading.current_thread().name
    stored = orjson.loads(sink.rows[0])["request_body"]
    assert SECRET not in stored and "ACME-123456" not in stored
    assert json.loads(stored)["messages"][0]["content"] == f"key {REDACTED} order {REDACTED}"

    threads.clear()
    shipper.add(request())  # few rows and no body: prepared on the loop
    assert await shipper.flush() and threads == [threading.current_thread().name]
    await shipper.close()


async def test_the_background_task_flushes_every_interval_and_backs_off() -> None:
    sink = FakeSink()
    shipper = RequestLogShipper(sink, interval=0.05, max_backoff=0.4)
    shipper.add(request())
    await eventually(lambda: len(sink.rows) == 1)
    sink.down = True
    shipper.add(request())
    await asyncio.sleep(0.6)
    assert 2 <= sink.sends - 1 <= 6  # retried, with a growing delay
    sink.down = False
    await eventually(lambda: len(sink.rows) == 2, within=2)
    await shipper.close()
    assert sink.closed


async def test_close_delivers_what_is_left_and_reports_what_it_could_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = FakeSink()
    shipper = RequestLogShipper(sink, interval=3600)
    for _ in range(3):
        shipper.add(request())
    await shipper.close()
    assert len(sink.rows) == 3

    down = FakeSink()
    down.down = True
    stuck = RequestLogShipper(down, interval=3600, close_timeout=0.5)
    stuck.add(request())
    with caplog.at_level(logging.WARNING, "aigw.gateway.request_log"):
        await stuck.close()
    assert down.sends == 3  # three tries within the timeout
    assert any("1 records could not be delivered" in r.getMessage() for r in caplog.records)


def test_only_a_gateway_following_a_config_center_ships() -> None:
    assert isinstance(shipper_from_env({}), NullShipper)
    assert isinstance(shipper_from_env({"AIGW_REDIS_URL": "redis://x"}), NullShipper)
    assert isinstance(shipper_from_env({"AIGW_CONFIG_CENTER": "http://cc"}), NullShipper)
    shipper = shipper_from_env(
        {
            "AIGW_CONFIG_CENTER": "http://cc:8001/",
            "AIGW_GATEWAY_TOKEN": "t",
            "AIGW_USAGE_FLUSH_SECONDS": "2",
        }
    )
    assert isinstance(shipper, RequestLogShipper) and shipper.interval == 2
    assert isinstance(shipper.sink, HttpSink)
    assert shipper.sink.url == "http://cc:8001/internal/v1/requests"


async def test_record_request_hands_the_record_over_and_logs_no_body(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sink = FakeSink()
    monkeypatch.setattr(request_log, "shipper", RequestLogShipper(sink, interval=3600))
    record = request(body=b'{"password": "hunter2"}')
    with caplog.at_level(logging.INFO, "aigw.access"):
        record_request(record)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "aigw.access"]
    assert "hunter2" not in line and "request_body" not in json.loads(line)
    assert await request_log.shipper.flush()  # type: ignore[union-attr]
    assert orjson.loads(sink.rows[0])["request_body"] == f'{{"password": "{REDACTED}"}}'
    assert "request_body" not in metrics._LOGGED_FIELDS


# -- the HTTP sink ---------------------------------------------------------------------------------


class Center:
    """A stand-in for the config center's POST /internal/v1/requests."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.answers: list[int] = []  # statuses to answer next (then 200)
        self.tokens: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.tokens.append(request.headers.get("Authorization", ""))
        status = self.answers.pop(0) if self.answers else 200
        if status != 200:
            return web.json_response({"error": {"message": "no"}}, status=status)
        self.posts.append(await request.json())
        return web.json_response({"accepted": len(self.posts[-1]["items"])})


@pytest.fixture
async def center() -> AsyncIterator[tuple[Center, str]]:
    stub = Center()
    app = web.Application()
    app.router.add_post("/internal/v1/requests", stub.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield stub, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_the_http_sink_posts_chunks_and_retries_from_the_first_undelivered(
    center: tuple[Center, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stub, url = center
    monkeypatch.setattr(request_log, "CHUNK_ROWS", 4)
    sink = HttpSink(url, "gw-token")
    shipper = RequestLogShipper(sink, interval=3600)
    records = [request() for _ in range(10)]
    for record in records:
        shipper.add(record)
    stub.answers = [200, 503]  # the second chunk fails: it and the third come back
    assert not await shipper.flush()
    assert len(shipper) == 6
    assert await shipper.flush()
    sent = [item["request_id"] for post in stub.posts for item in post["items"]]
    assert sent == [r.request_id for r in records]
    assert [len(post["items"]) for post in stub.posts] == [4, 4, 2]
    assert set(stub.tokens) == {"Bearer gw-token"}
    await shipper.close()


async def test_a_chunk_refused_as_invalid_is_dropped_not_retried_forever(
    center: tuple[Center, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    stub, url = center
    monkeypatch.setattr(request_log, "CHUNK_ROWS", 2)
    sink = HttpSink(url, "gw-token")
    shipper = RequestLogShipper(sink, interval=3600)
    records = [request() for _ in range(4)]
    for record in records:
        shipper.add(record)
    stub.answers = [422]
    with caplog.at_level(logging.ERROR, "aigw.gateway.request_log"):
        assert await shipper.flush()
    assert sink.refused == 2 and len(shipper) == 0
    assert [i["request_id"] for i in stub.posts[0]["items"]] == [r.request_id for r in records[2:]]
    assert any("dropping its 2 records" in r.getMessage() for r in caplog.records)
    await shipper.close()
