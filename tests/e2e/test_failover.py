"""Failover, load balancing and circuit breakers, end to end: mock upstream processes with
injected faults behind a real gateway process, the official SDKs as callers.

Every test starts its own gateway (breakers, cooling periods and health are per worker process,
so a fresh gateway starts from a clean slate; ``workers=1`` makes them deterministic) in front
of up to three shared mock upstreams, reset between tests. Assertions count requests (the
mocks' counters, ``x-aigw-upstream``, the gateway's access log) rather than time them; the only
clocks are the configured cooldowns, ``Retry-After`` and generous upper bounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import yaml

from tests.helpers import Process, aigw, free_port, mock_upstream, new_key_entry

CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "hi"}]
UPSTREAM_MODEL = "gpt-4o-mini"
SEED = 20240611
NO_BREAKER = {"consecutive_failures": 1000, "min_requests": 1000}
"""Circuit breaker settings that never open: for tests about failover alone."""
SLACK = 2.0
"""Seconds allowed on top of a configured bound (a deadline, a timeout) before it is a hang."""

MOCK_DEFAULTS: dict[str, Any] = {
    "latency_ms": 0,
    "tokens_per_second": 0,
    "error_rate": 0,
    "error_status": 500,
    "hang_rate": 0,
    "disconnect_rate": 0,
    "stream_error_rate": 0,
    "completion_tokens": 16,
    "seed": SEED,
}


def upstream(name: str, model: str = UPSTREAM_MODEL) -> str:
    """What ``x-aigw-upstream`` says for a target: ``provider/upstream model``."""
    return f"{name}/{model}"


class Mock:
    """One mock upstream process, steered and observed through ``/_mock/*``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._baseline = 0

    def configure(self, **options: Any) -> None:
        httpx.put(f"{self.url}/_mock/config", json=options).raise_for_status()

    def reset(self) -> None:
        self.configure(**MOCK_DEFAULTS)
        httpx.delete(f"{self.url}/_mock/requests").raise_for_status()
        self._baseline = self._stats()["requests"]

    def _stats(self) -> dict[str, int]:
        return httpx.get(f"{self.url}/_mock/stats").json()

    @property
    def requests(self) -> int:
        """API requests received since the last reset (health checks included)."""
        return self._stats()["requests"] - self._baseline

    def log(self) -> list[dict[str, Any]]:
        """The last (up to 100) API requests since the reset, oldest first."""
        return httpx.get(f"{self.url}/_mock/requests").json()

    def chats(self) -> int:
        """Chat completions among the logged requests (health checks are GETs)."""
        return sum(1 for r in self.log() if r["method"] == "POST" and r["path"] == CHAT)

    def health_checks(self) -> int:
        return sum(1 for r in self.log() if r["method"] == "GET")


@pytest.fixture(scope="module")
def mock_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Mock]]:
    tmp: Path = tmp_path_factory.mktemp("failover-mocks")
    with contextlib.ExitStack() as stack:
        yield [Mock(stack.enter_context(mock_upstream(tmp))) for _ in range(3)]


@pytest.fixture
def mocks(mock_processes: list[Mock]) -> list[Mock]:
    """Three mock upstreams, healthy and with their counters at zero."""
    for mock in mock_processes:
        mock.reset()
    return mock_processes


def provider(name: str, url: str, **extra: Any) -> dict[str, Any]:
    """An OpenAI provider; ``url`` is a mock's base URL (or any URL, e.g. a dead port)."""
    return {"name": name, "type": "openai", "base_url": f"{url}/v1", "api_key": f"sk-{name}"} | (
        extra
    )


def dead_url() -> str:
    """A loopback URL nothing listens on: connections are refused at once."""
    return f"http://127.0.0.1:{free_port()}"


def target(name: str, model: str = UPSTREAM_MODEL, **extra: Any) -> dict[str, Any]:
    return {"provider": name, "model": model, **extra}


def model(name: str, *targets: dict[str, Any], **routing: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "targets": list(targets)}
    if routing:
        entry["routing"] = routing
    return entry


@dataclass
class Gateway:
    url: str
    key: str
    process: Process

    def openai(self, timeout: float = 30) -> openai.OpenAI:
        """The sync openai SDK, without retries of its own."""
        return openai.OpenAI(
            base_url=f"{self.url}/v1", api_key=self.key, max_retries=0, timeout=timeout
        )

    def anthropic(self, timeout: float = 30) -> anthropic.Anthropic:
        return anthropic.Anthropic(
            base_url=self.url, api_key=self.key, max_retries=0, timeout=timeout
        )

    def access_log(
        self, count: int = 0, timeout: float = 5.0, path: str | None = CHAT
    ) -> list[dict[str, Any]]:
        """The access log lines (JSON from ``aigw.access``) of ``path`` (None: every path),
        waiting up to ``timeout`` for at least ``count`` of them: a line follows its response."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [
                json.loads(line)
                for line in self.process.output().splitlines()
                if line.startswith("{") and '"request_id"' in line
            ]
            lines = [line for line in lines if path is None or line["path"] == path]
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    def access_line(self, request_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + 5
        while True:
            lines = self.access_log(path=None)
            found = [line for line in lines if line["request_id"] == request_id]
            if found or time.monotonic() > deadline:
                assert len(found) == 1, self.process.output()[-3000:]
                return found[0]
            time.sleep(0.05)


@contextlib.contextmanager
def running_gateway(
    tmp: Path,
    providers: list[dict[str, Any]],
    models: list[dict[str, Any]],
    breaker: dict[str, Any] | None = None,
    workers: int = 1,
) -> Iterator[Gateway]:
    """``aigw gateway`` as a real process (like ``tests.helpers.gateway``, but handing out the
    process too: its log and its signals)."""
    key, entry = new_key_entry("caller")
    document = {
        "version": 1,
        "gateway": {"circuit_breaker": NO_BREAKER if breaker is None else breaker},
        "providers": providers,
        "models": models,
        "namespaces": [{"name": "ns", "keys": [entry]}],
    }
    port = free_port()
    config = tmp / f"gateway-{port}.yaml"
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    args = aigw("gateway", "--config", str(config), "--host", "127.0.0.1", "--port", str(port))
    process = Process([*args, "--workers", str(workers)], tmp / f"gateway-{port}.log")
    try:
        process.wait_http(f"http://127.0.0.1:{port}/healthz")
        yield Gateway(f"http://127.0.0.1:{port}", key, process)
    finally:
        process.stop()


def chat(client: openai.OpenAI, name: str = "chat", **extra: Any) -> str:
    """One chat completion that must succeed; returns the target that served it."""
    raw = client.chat.completions.with_raw_response.create(model=name, messages=USER, **extra)
    assert raw.status_code == 200
    assert raw.parse().choices[0].message.content
    return raw.headers["x-aigw-upstream"]


def chat_error(client: openai.OpenAI, name: str = "chat") -> openai.APIStatusError:
    """One chat completion that must fail with an HTTP error."""
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model=name, messages=USER)
    return raised.value


# -- 1. a target failing half its requests ------------------------------------------------------


def test_a_target_failing_half_its_requests_is_failed_over_and_every_caller_gets_200(
    tmp_path: Path, mocks: list[Mock]
) -> None:
    a, b, _ = mocks
    a.configure(error_rate=0.5, seed=SEED)
    with (
        running_gateway(
            tmp_path,
            [provider("a", a.url), provider("b", b.url)],
            [model("chat", target("a"), target("b"))],
        ) as gw,
        gw.openai() as client,
    ):
        served = Counter(chat(client) for _ in range(100))
        log = gw.access_log(count=100)

    assert set(served) == {upstream("a"), upstream("b")}
    assert sum(served.values()) == 100
    failed_on_a = a.requests - served[upstream("a")]
    assert failed_on_a > 0  # a really failed, and the callers never saw it
    assert b.requests == served[upstream("b")]  # b never failed: each of its tries served
    # Each failure on a cost exactly one more try, on b.
    assert a.requests + b.requests == 100 + failed_on_a
    assert len(log) == 100
    assert {line["status"] for line in log} == {200}
    assert sum(line["attempts"] - 1 for line in log) == failed_on_a
    assert all(line["provider"] == "b" for line in log if line["attempts"] == 2)


# -- 2. a hanging target --------------------------------------------------------------------------


def test_a_hanging_target_times_out_to_the_other_and_its_breaker_then_keeps_requests_away(
    tmp_path: Path, mocks: list[Mock]
) -> None:
    a, b, _ = mocks
    a.configure(hang_rate=1)
    first_byte, deadline = 0.5, 5
    routing = {"deadline": deadline, "timeouts": {"first_byte": first_byte}}
    breaker = {"consecutive_failures": 3, "cooldown": 60, "min_requests": 1000}
    with (
        running_gateway(
            tmp_path,
            [provider("a", a.url), provider("b", b.url)],
            [model("chat", target("a"), target("b"), **routing)],
            breaker,
        ) as gw,
        gw.openai() as client,
    ):
        # Until a's breaker opens: requests a gets first wait first_byte, then go to b.
        sent = 0
        while a.requests < 3:
            sent += 1
            assert sent <= 40  # a comes first half the time: 3 of 40 is all but certain
            started = time.monotonic()
            assert chat(client) == upstream("b")
            assert time.monotonic() - started < deadline + SLACK
        warm_up = gw.access_log(count=sent)
        assert len(warm_up) == sent
        timed_out = [line for line in warm_up if line["attempts"] == 2]
        assert len(timed_out) == 3
        assert all(line["duration_ms"] >= first_byte * 1000 for line in timed_out)

        # Open: a gets nothing more, and no request waits for it.
        assert all(chat(client) == upstream("b") for _ in range(20))
        after = gw.access_log(count=sent + 20)[sent:]
        assert "target a/gpt-4o-mini: circuit open" in gw.process.output()

    assert a.requests == 3
    assert [line["attempts"] for line in after] == [1] * 20
    assert b.requests == sent + 20


# -- 3. a target dying mid-stream -----------------------------------------------------------------


def test_a_stream_the_target_breaks_off_ends_in_a_clean_sdk_error(
    tmp_path: Path, mocks: list[Mock]
) -> None:
    a, b, _ = mocks
    a.configure(disconnect_rate=1)  # cut after 5 events: the role chunk and 4 tokens
    b.configure(stream_error_rate=1)  # an error chunk after 5 events, then a clean end
    with (
        running_gateway(
            tmp_path,
            [provider("a", a.url), provider("b", b.url)],
            [model("cut", target("a")), model("erroring", target("b"))],
        ) as gw,
        gw.openai(timeout=10) as client,
        gw.anthropic(timeout=10) as claude,
    ):
        # The upstream cut the connection: the gateway ends the stream with an error chunk.
        started = time.monotonic()
        received: list[str] = []
        with pytest.raises(openai.APIError) as raised:
            stream = client.chat.completions.create(
                model="cut", messages=USER, stream=True, extra_headers={"x-request-id": "cut"}
            )
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    received.append(chunk.choices[0].delta.content)
        assert time.monotonic() - started < 5
        assert type(raised.value) is openai.APIError  # an error event, not a broken connection
        assert raised.value.code == "upstream_unavailable"
        assert "broke off the stream" in raised.value.message
        assert len(received) == 4

        # The same cut, to an Anthropic caller (translated stream): an `error` event.
        started = time.monotonic()
        with pytest.raises(anthropic.APIStatusError) as cut_for_claude:
            events = claude.messages.create(
                model="cut",
                max_tokens=50,
                messages=USER,
                stream=True,
                extra_headers={"x-request-id": "cut-anthropic"},
            )
            for _ in events:
                pass
        assert time.monotonic() - started < 5
        assert isinstance(cut_for_claude.value.body, dict)
        assert cut_for_claude.value.body["type"] == "error"
        assert cut_for_claude.value.body["error"]["type"] == "api_error"

        # The upstream reported an error mid-stream itself: passed on, and the SDK raises it.
        started = time.monotonic()
        with pytest.raises(openai.APIError) as upstream_error:
            stream = client.chat.completions.create(
                model="erroring",
                messages=USER,
                stream=True,
                extra_headers={"x-request-id": "erroring"},
            )
            for _ in stream:
                pass
        assert time.monotonic() - started < 5
        assert "injected by the aigw mock upstream" in upstream_error.value.message

        cut_line = gw.access_line("cut")
        claude_line = gw.access_line("cut-anthropic")
        erroring_line = gw.access_line("erroring")

    # Every one was logged with the target that broke it off, and the completion tokens it
    # relayed before that (its content deltas: the upstream never reported usage).
    for line, name in ((cut_line, "a"), (claude_line, "a"), (erroring_line, "b")):
        assert line["stream"] is True
        assert line["provider"] == name
        assert line["attempts"] == 1
        assert line["status"] == 200  # what the caller got: the answer had started
    assert cut_line["completion_tokens"] == len(received)
    assert erroring_line["completion_tokens"] == 4


# -- 4. a target rate-limited with Retry-After ---------------------------------------------------


def test_a_429_fails_over_and_keeps_its_target_cooling_for_its_retry_after(
    tmp_path: Path, mocks: list[Mock]
) -> None:
    a, b, _ = mocks
    a.configure(error_rate=1, error_status=429)  # the mock sends Retry-After: 1
    with (
        running_gateway(
            tmp_path,
            [provider("a", a.url), provider("b", b.url)],
            # a first, always (priority), so which target a request tries first is known
            [model("chat", target("a"), target("b", priority=1))],
        ) as gw,
        gw.openai() as client,
    ):
        started = time.monotonic()
        assert chat(client) == upstream("b")
        assert a.requests == 1
        # Within the second a's 429 asked for, requests go straight to b.
        assert [chat(client) for _ in range(3)] == [upstream("b")] * 3
        assert time.monotonic() - started < 0.9  # all planned while a was cooling
        assert a.requests == 1

        # Past it, a is asked again (and is still rate limited)...
        time.sleep(max(0.0, started + 1.2 - time.monotonic()))
        assert chat(client) == upstream("b")
        assert a.requests == 2
        # ...and once it no longer refuses, it serves again after its next Retry-After.
        a.configure(error_rate=0)
        time.sleep(1.2)
        assert chat(client) == upstream("a")
        log = gw.access_log(count=6)

    assert (a.requests, b.requests) == (3, 5)
    assert [line["attempts"] for line in log] == [2, 1, 1, 1, 2, 1]


def test_when_every_target_is_rate_limited_callers_get_429_until_the_retry_after(
    tmp_path: Path, mocks: list[Mock]
) -> None:
    a, b, _ = mocks
    for mock in (a, b):
        mock.configure(error_rate=1, error_status=429)
    with (
        running_gateway(
            tmp_path,
            [provider("a", a.url), provider("b", b.url)],
            [model("chat", target("a"), target("b"))],
        ) as gw,
        gw.openai() as client,
    ):
        started = time.monotonic()
        first = chat_error(client)
        # The last upstream's own 429, in OpenAI's format, with its Retry-After.
        assert isinstance(first, openai.RateLimitError)
        assert first.response.headers["retry-after"] == "1"
        assert "injected by the aigw mock upstream" in first.message
        assert (a.requests, b.requests) == (1, 1)

        second = chat_error(client)
        assert time.monotonic() - started < 0.9  # both still cooling when it was planned
        assert isinstance(second, openai.RateLimitError)
        assert second.code == "upstream_rate_limited"
        assert second.response.headers["retry-after"] == "1"
        assert (a.requests, b.requests) == (1, 1)  # answered without asking either


def test_a_429_on_the_last_try_still_cools_its_target(tmp_path: Path, mocks: list[Mock]) -> None:
    """The last try relays a 429 as it is; its Retry-After must hold for later requests all
    the same (failover.py: "A 429's Retry-After puts its target in a cooling period that every
    later request respects too")."""
    a, _, _ = mocks
    a.configure(error_rate=1, error_status=429)
    with (
        running_gateway(
            tmp_path, [provider("a", a.url)], [model("chat", target("a"), max_attempts=1)]
        ) as gw,
        gw.openai() as client,
    ):
        started = time.monotonic()
        first = chat_error(client)
        assert first.status_code == 429
        assert first.response.headers["retry-after"] == "1"
        second = chat_error(client)
        assert time.monotonic() - started < 0.9

    assert second.status_code == 429
    assert a.requests == 1, "the second request was sent to a target still in its Retry-After"
    assert second.code == "upstream_rate_limited"


# -- 5. every target down -------------------------------------------------------------------------


def test_unreachable_targets_answer_502_then_503_once_their_circuits_open(
    tmp_path: Path,
) -> None:
    breaker = {"consecutive_failures": 2, "cooldown": 30, "min_requests": 1000}
    with (
        running_gateway(
            tmp_path,
            [provider("x", dead_url()), provider("y", dead_url())],
            [model("chat", target("x"), target("y"))],
            breaker,
        ) as gw,
        gw.openai() as client,
        gw.anthropic() as claude,
    ):
        # Anthropic's SDK first: its error in Anthropic's format.
        started = time.monotonic()
        with pytest.raises(anthropic.APIStatusError) as refused:
            claude.messages.create(model="chat", max_tokens=20, messages=USER)
        assert time.monotonic() - started < SLACK
        assert refused.value.status_code == 502
        assert refused.value.body["type"] == "error"
        assert refused.value.body["error"]["type"] == "api_error"
        assert "could not reach upstream provider" in refused.value.body["error"]["message"]

        # Three tries (x, y, x or y, x, y) opened one breaker; one more try opens the other.
        started = time.monotonic()
        unavailable = chat_error(client)
        assert time.monotonic() - started < SLACK
        assert unavailable.status_code == 502
        assert unavailable.code == "upstream_unavailable"
        assert unavailable.type == "upstream_error"

        # Both open: refused by the gateway at once, with a Retry-After near the cooldown.
        for _ in range(3):
            started = time.monotonic()
            refusal = chat_error(client)
            assert time.monotonic() - started < SLACK
            assert refusal.status_code == 503
            assert refusal.code == "no_upstream_available"
            assert 25 <= int(refusal.response.headers["retry-after"]) <= 30
        with pytest.raises(anthropic.APIStatusError) as refused:
            claude.messages.create(model="chat", max_tokens=20, messages=USER)
        assert refused.value.status_code == 503
        assert refused.value.body["error"]["type"] == "overloaded_error"
        assert int(refused.value.response.headers["retry-after"]) >= 25

        log = gw.access_log(count=4)  # the OpenAI calls
    assert [line["attempts"] for line in log] == [1, 0, 0, 0]
    assert [line["status"] for line in log] == [502, 503, 503, 503]


def test_open_circuits_spare_the_upstreams_until_a_half_open_probe_finds_them_healthy(
    tmp_path: Path, mocks: list[Mock]
) -> None:
    a, b, _ = mocks
    for mock in (a, b):
        mock.configure(error_rate=1, error_status=500)
    cooldown = 2
    breaker = {"consecutive_failures": 2, "cooldown": cooldown, "min_requests": 1000}
    with (
        running_gateway(
            tmp_path,
            [provider("a", a.url), provider("b", b.url)],
            [model("chat", target("a"), target("b"))],
            breaker,
        ) as gw,
        gw.openai() as client,
    ):
        # Failing: the callers get the last upstream's own 500, until both breakers are open.
        statuses = [chat_error(client).status_code for _ in range(2)]
        assert statuses == [500, 500]
        assert a.requests + b.requests == 4  # 3 tries, then the one target left
        refusal = chat_error(client)
        assert refusal.status_code == 503
        assert refusal.code == "no_upstream_available"
        assert 1 <= int(refusal.response.headers["retry-after"]) <= cooldown
        opened = time.monotonic()

        # Open: nothing reaches the upstreams.
        for _ in range(5):
            assert chat_error(client).status_code == 503
        assert a.requests + b.requests == 4

        # Past the cooldown, each target gets its probe (within one request: the first fails
        # over to the second); both fail, and both circuits are open again.
        time.sleep(max(0.0, opened + cooldown + 0.3 - time.monotonic()))
        assert chat_error(client).status_code == 500
        assert a.requests + b.requests == 6
        assert chat_error(client).status_code == 503
        reopened = time.monotonic()

        # Healthy again: the next probe succeeds and traffic resumes on both targets.
        for mock in (a, b):
            mock.configure(error_rate=0)
        time.sleep(max(0.0, reopened + cooldown + 0.3 - time.monotonic()))
        served = [chat(client) for _ in range(20)]
        log = gw.access_log(count=30)

    # The probe closed its target's breaker, and every request after it was served.
    assert len(served) == 20
    assert a.requests + b.requests == 6 + 20
    assert [line["status"] for line in log] == [500] * 2 + [503] * 6 + [500, 503] + [200] * 20


# -- 6. priority groups and strategies ------------------------------------------------------------


def test_a_priority_1_fallback_serves_only_while_the_priority_0_target_fails(
    tmp_path: Path, mocks: list[Mock]
) -> None:
    a, b, _ = mocks
    with (
        running_gateway(
            tmp_path,
            [provider("a", a.url), provider("b", b.url)],
            [model("chat", target("a"), target("b", priority=1, weight=100))],
        ) as gw,
        gw.openai() as client,
    ):
        assert [chat(client) for _ in range(10)] == [upstream("a")] * 10
        assert b.requests == 0
        a.configure(error_rate=1)
        assert [chat(client) for _ in range(10)] == [upstream("b")] * 10
        a.configure(error_rate=0)
        assert [chat(client) for _ in range(10)] == [upstream("a")] * 10
        log = gw.access_log(count=30)

    assert (a.requests, b.requests) == (30, 10)
    assert [line["attempts"] for line in log] == [1] * 10 + [2] * 10 + [1] * 10


def test_a_fallback_whose_breaker_opened_once_still_stands_in_after_its_cooldown(
    tmp_path: Path, mocks: list[Mock]
) -> None:
    """A target whose breaker has cooled down is planned as a half-open probe; failover must
    then try it when the target before it fails."""
    a, b, _ = mocks
    cooldown = 1
    breaker = {"consecutive_failures": 2, "cooldown": cooldown, "min_requests": 1000}
    with (
        running_gateway(
            tmp_path,
            [provider("a", a.url), provider("b", b.url)],
            [model("chat", target("a"), target("b", priority=1))],
            breaker,
        ) as gw,
        gw.openai() as client,
    ):
        # An outage of both opens both breakers.
        for mock in (a, b):
            mock.configure(error_rate=1)
        while chat_error(client).status_code != 503:
            assert a.requests < 10
        # Both recover; past the cooldown the primary's probe succeeds and closes its breaker.
        for mock in (a, b):
            mock.configure(error_rate=0)
        time.sleep(cooldown + 0.3)
        assert chat(client) == upstream("a")
        # The primary fails again. The fallback is healthy and its cooldown is long over.
        a.configure(error_rate=1)
        time.sleep(cooldown + 0.3)
        b_before = b.requests
        try:
            served: str | int = chat(client)
        except openai.APIStatusError as error:
            served = error.status_code
        b_asked = b.requests - b_before

    assert served == upstream("b"), f"the request got {served}; b was asked {b_asked} time(s)"


async def test_least_inflight_spreads_concurrent_requests_evenly(
    tmp_path: Path, mocks: list[Mock]
) -> None:
    a, b, _ = mocks
    for mock in (a, b):
        mock.configure(latency_ms=800)  # every request of the burst is in flight at once
    with running_gateway(
        tmp_path,
        [provider("a", a.url), provider("b", b.url)],
        [model("chat", target("a"), target("b"), strategy="least_inflight")],
    ) as gw:
        async with openai.AsyncOpenAI(
            base_url=f"{gw.url}/v1", api_key=gw.key, max_retries=0, timeout=30
        ) as client:

            async def one() -> str:
                raw = await client.chat.completions.with_raw_response.create(
                    model="chat", messages=USER
                )
                return raw.headers["x-aigw-upstream"]

            served = Counter(await asyncio.gather(*(one() for _ in range(10))))

    assert served == {upstream("a"): 5, upstream("b"): 5}


def test_lowest_latency_sends_nearly_everything_to_the_fastest_target(
    tmp_path: Path, mocks: list[Mock]
) -> None:
    a, b, _ = mocks
    a.configure(latency_ms=200)
    with (
        running_gateway(
            tmp_path,
            [provider("a", a.url), provider("b", b.url)],
            [model("chat", target("a"), target("b"), strategy="lowest_latency")],
        ) as gw,
        gw.openai() as client,
    ):
        # Warm-up: each target unmeasured goes first once, to be measured.
        assert {chat(client), chat(client)} == {upstream("a"), upstream("b")}
        served = Counter(chat(client) for _ in range(20))

    assert served[upstream("b")] >= 18
    assert a.requests == 1 + served[upstream("a")]


# -- 7. active health checks ----------------------------------------------------------------------


def _wait_for_health_checks(mock: Mock, more: int, timeout: float = 10) -> None:
    """Wait for ``more`` health checks of ``mock`` beyond those seen so far."""
    target_count = mock.health_checks() + more
    deadline = time.monotonic() + timeout
    while mock.health_checks() < target_count:
        assert time.monotonic() < deadline, "no health checks arrive"
        time.sleep(0.1)


def test_failing_health_checks_take_a_provider_out_of_rotation_until_they_pass(
    tmp_path: Path, mocks: list[Mock]
) -> None:
    a, b, _ = mocks
    check = {"path": "/models", "interval": 1, "timeout": 1, "unhealthy_after": 1}
    with (
        running_gateway(
            tmp_path,
            [provider("a", a.url, health_check=check), provider("b", b.url)],
            [model("chat", target("a"), target("b"))],
        ) as gw,
        gw.openai() as client,
    ):
        _wait_for_health_checks(a, 1)
        assert set(chat(client) for _ in range(30)) == {upstream("a"), upstream("b")}

        # GET /v1/models fails too (the mock's faults apply to every API request). Two checks
        # later, the first failed one has surely been counted: no request is needed to notice.
        a.configure(error_rate=1)
        _wait_for_health_checks(a, 2)
        assert "provider a: unhealthy after 1 failed checks" in gw.process.output()
        chats_before = a.chats()
        assert [chat(client) for _ in range(20)] == [upstream("b")] * 20
        assert a.chats() == chats_before  # skipped, not tried and failed over

        a.configure(error_rate=0)
        _wait_for_health_checks(a, 2)
        assert "provider a: health check passes again" in gw.process.output()
        assert upstream("a") in {chat(client) for _ in range(30)}


# -- 8. SIGTERM with streams open -----------------------------------------------------------------


async def test_sigterm_lets_every_open_stream_finish_and_the_gateway_exits_0(
    tmp_path: Path, mocks: list[Mock]
) -> None:
    a, _, _ = mocks
    tokens = 30
    a.configure(tokens_per_second=10, completion_tokens=tokens)  # each stream lasts ~3 s
    streams = 50
    with running_gateway(
        tmp_path, [provider("a", a.url)], [model("chat", target("a"))], workers=2
    ) as gw:
        started = 0
        all_started = asyncio.Event()

        async def stream(client: httpx.AsyncClient) -> bytes:
            nonlocal started
            body = b""
            async with client.stream(
                "POST",
                f"{gw.url}{CHAT}",
                json={"model": "chat", "messages": USER, "stream": True},
                headers={"Authorization": f"Bearer {gw.key}"},
            ) as response:
                assert response.status_code == 200
                async for chunk in response.aiter_bytes():
                    if not body:
                        started += 1
                        if started == streams:
                            all_started.set()
                    body += chunk
            return body

        limits = httpx.Limits(max_connections=streams)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            tasks = [asyncio.ensure_future(stream(client)) for _ in range(streams)]
            try:
                await asyncio.wait_for(all_started.wait(), 15)
                assert a.requests == streams
                gw.process.popen.send_signal(signal.SIGTERM)
                bodies = await asyncio.wait_for(asyncio.gather(*tasks), 30)
            finally:
                for task in tasks:
                    task.cancel()
        exit_code = await asyncio.to_thread(gw.process.popen.wait, 30)
        log = gw.access_log(count=streams, timeout=0)

    assert exit_code == 0
    for body in bodies:
        assert body.endswith(b"data: [DONE]\n\n")
        assert body.count(b'"content":"') - body.count(b'"content":""') == tokens
    assert len(log) == streams
    assert {line["status"] for line in log} == {200}
