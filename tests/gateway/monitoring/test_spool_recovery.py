"""A gateway worker SIGKILLed with usage and request records it had not delivered: the next
worker on the same spool directory sends them, under the ids the dead one used.

The worker runs in a child process (a real recorder and shipper, a real spool) and posts to a
small HTTP server standing in for the config center, which records what it receives."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from aigw.gateway.monitoring.realtime import HttpSink, UsageRecorder
from aigw.gateway.monitoring.request_log import HttpSink as RequestsSink
from aigw.gateway.monitoring.request_log import RequestLogShipper
from aigw.gateway.monitoring.spool import Spool
from tests.helpers import free_port


@dataclass
class Center:
    url: str
    usage: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def requests_applied_once(self) -> int:
        """Requests counted as the config center counts them: one batch id once."""
        seen: set[str] = set()
        total = 0
        for body in self.usage:
            if body.get("batch_id") in seen:
                continue
            seen.add(body["batch_id"])
            total += sum(item["requests"] for item in body["items"])
        return total


@pytest.fixture
async def center() -> AsyncIterator[Center]:
    port = free_port()
    state = Center(f"http://127.0.0.1:{port}")

    async def usage(request: web.Request) -> web.Response:
        state.usage.append(await request.json())
        return web.json_response({"accepted": 1})

    async def requests(request: web.Request) -> web.Response:
        state.rows.extend((await request.json())["items"])
        return web.json_response({"accepted": 1})

    app = web.Application()
    app.router.add_post("/internal/v1/usage", usage)
    app.router.add_post("/internal/v1/requests", requests)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield state
    finally:
        await runner.cleanup()


WORKER = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from aigw.gateway.monitoring.metrics import RequestRecord
    from aigw.gateway.monitoring.realtime import HttpSink, UsageRecorder
    from aigw.gateway.monitoring.request_log import HttpSink as RequestsSink, RequestLogShipper
    from aigw.gateway.monitoring.spool import Spool

    directory, center = Path(sys.argv[1]), sys.argv[2]
    count, flush_first = int(sys.argv[3]), sys.argv[4]

    async def main():
        usage_sink, rows_sink = HttpSink(center, "t"), RequestsSink(center, "t")
        usage_spool = Spool(directory, "usage", usage_sink.url)
        rows_spool = Spool(directory, "requests", rows_sink.url)
        recorder = UsageRecorder(usage_sink, interval=3600, spool=usage_spool)
        shipper = RequestLogShipper(rows_sink, interval=3600, spool=rows_spool)
        for number in range(count):
            record = RequestRecord(f"req-{number}", "POST", "/v1/chat/completions", status=200)
            record.namespace, record.model, record.timestamp = "team-a", "gpt-4o", time.time()
            record.prompt_tokens, record.completion_tokens = 10, 2
            recorder.record(record)
            shipper.add(record)
        if flush_first == "yes":
            # Killed after the config center took the batch, before the segment was deleted.
            usage_spool.release = rows_spool.release = lambda segment: None
            assert await recorder.flush() and await shipper.flush()
        print("ready", flush=True)
        await asyncio.sleep(60)

    asyncio.run(main())
    """
)


async def run_and_kill(directory: Path, center: Center, count: int, flush_first: bool) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WORKER,
        str(directory),
        center.url,
        str(count),
        "yes" if flush_first else "no",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 20)
        assert line.strip() == b"ready"
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()


def recorders(directory: Path, center: Center) -> tuple[UsageRecorder, RequestLogShipper]:
    usage_sink, rows_sink = HttpSink(center.url, "t"), RequestsSink(center.url, "t")
    return (
        UsageRecorder(usage_sink, interval=3600, spool=Spool(directory, "usage", usage_sink.url)),
        RequestLogShipper(
            rows_sink, interval=3600, spool=Spool(directory, "requests", rows_sink.url)
        ),
    )


async def test_a_killed_workers_records_are_recovered_by_the_next_one(
    tmp_path: Path, center: Center
) -> None:
    await run_and_kill(tmp_path, center, 7, flush_first=False)
    assert center.usage == [] and center.rows == []  # nothing had left the dead worker

    recorder, shipper = recorders(tmp_path, center)
    await recorder.start()
    await shipper.start()
    try:
        assert center.requests_applied_once() == 7
        (body,) = center.usage
        assert body["batch_id"].startswith("usage-") and body["batch_id"].endswith(".0")
        assert sum(i["prompt_tokens"] for i in body["items"]) == 70
        assert sorted(r["request_id"] for r in center.rows) == [f"req-{n}" for n in range(7)]
        assert len({r["uid"] for r in center.rows}) == 7
        assert recorder.recovered_segments == 1 and shipper.recovered == 7
    finally:
        await recorder.close()
        await shipper.close()
    assert os.listdir(tmp_path) == []


async def test_a_batch_delivered_before_the_kill_is_sent_again_under_the_same_id(
    tmp_path: Path, center: Center
) -> None:
    await run_and_kill(tmp_path, center, 3, flush_first=True)
    (delivered,) = center.usage
    uids = {row["uid"] for row in center.rows}
    assert len(uids) == 3

    recorder, shipper = recorders(tmp_path, center)
    await recorder.flush()
    await shipper.flush()
    await recorder.close()
    await shipper.close()
    again = center.usage[1:]
    assert [b["batch_id"] for b in again] == [delivered["batch_id"]]  # the same id: applied once
    assert center.requests_applied_once() == 3
    assert {row["uid"] for row in center.rows} == uids  # the same uids: stored once
    assert os.listdir(tmp_path) == []


async def test_without_a_spool_directory_records_stay_in_memory(tmp_path: Path) -> None:
    from aigw.gateway.monitoring.realtime import recorder_from_env

    blocker = tmp_path / "file"
    blocker.write_text("")
    env = {
        "AIGW_CONFIG_CENTER": "http://127.0.0.1:9",
        "AIGW_GATEWAY_TOKEN": "t",
        "AIGW_SPOOL_DIR": str(blocker / "spool"),
    }
    recorder = recorder_from_env(env)
    assert isinstance(recorder, UsageRecorder) and recorder.spool is None
    env["AIGW_SPOOL_DIR"] = str(tmp_path / "spool")
    recorder = recorder_from_env(env)
    assert isinstance(recorder, UsageRecorder) and recorder.spool is not None


def test_the_spooled_usage_line_is_compact() -> None:
    line = orjson.dumps([(1_800_000_000, "namespace_model", "team-a/gpt-4o", 1, 0, 10, 2, 0, 5)])
    assert len(line) < 80
