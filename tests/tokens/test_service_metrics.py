"""The token service's Prometheus metrics: GET /metrics (in-process, then a real two-worker
process in prometheus_client's multiprocess mode)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aigw.tokens.service import METRICS_TOKEN_ENV, create_app
from tests.helpers import Process, free_port

COUNT = "/v1/tokens/count"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(text: str) -> Samples:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _requests(samples: Samples) -> dict[tuple[str, str], float]:
    return {
        (dict(labels)["encoding"], dict(labels)["status"]): value
        for (name, labels), value in samples.items()
        if name == "token_service_requests_total"
    }


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(max_body_bytes=4096, preload_encodings=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tokens") as http:
        yield http


async def test_counts_are_counted_by_encoding_and_status(client: httpx.AsyncClient) -> None:
    for body in (
        {"model": "gpt-4o", "prompt": "hello world"},  # 2 tokens
        {"model": "gpt-4o", "input": ["hello", "world"]},  # 2
        {"model": "gpt-4", "prompt": "hello world"},  # 2, cl100k_base
        {"model": "claude-haiku-4-5", "prompt": "hello world"},  # an estimate
        {"model": "gpt-4o", "messages": [{"content": "no role"}]},  # 400, model known
        {"model": "gpt-4o"},  # 422: nothing to count
    ):
        await client.post(COUNT, json=body)
    await client.post(COUNT, content=b"{not json", headers={"content-type": "application/json"})
    await client.post(COUNT, content=b"x" * 5000)  # 413, over this app's limit
    await client.get("/healthz")  # not a count
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = _samples(response.text)
    assert _requests(samples) == {
        ("o200k_base", "200"): 2,
        ("cl100k_base", "200"): 1,
        ("claude-estimate", "200"): 1,
        ("o200k_base", "400"): 1,
        ("none", "422"): 1,
        ("none", "400"): 1,
        ("none", "413"): 1,
    }
    tokens = {
        dict(labels)["encoding"]: value
        for (name, labels), value in samples.items()
        if name == "token_service_tokens_total"
    }
    assert tokens["o200k_base"] == 4 and tokens["cl100k_base"] == 2
    assert tokens["claude-estimate"] >= 2
    durations = {
        labels: value
        for (name, labels), value in samples.items()
        if name == "token_service_request_duration_seconds_count"
    }
    assert sum(durations.values()) == 8
    # prometheus_client's process and platform metrics, for the one process there is.
    assert ("process_resident_memory_bytes", ()) in samples
    assert any(name == "python_info" for name, _ in samples)


async def test_each_application_has_its_own_registry() -> None:
    # granian builds one application per worker; tests build many in one process.
    for _ in range(2):
        app = create_app(preload_encodings=False)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            await http.post(COUNT, json={"model": "gpt-4o", "prompt": "x"})
            text = (await http.get("/metrics")).text
        assert _requests(_samples(text)) == {("o200k_base", "200"): 1}


async def test_metrics_need_the_token_when_one_is_set(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(METRICS_TOKEN_ENV, "scrape-secret")
    assert (await client.get("/metrics")).status_code == 401
    wrong = {"authorization": "Bearer nope"}
    assert (await client.get("/metrics", headers=wrong)).status_code == 401
    right = {"authorization": "Bearer scrape-secret"}
    assert (await client.get("/metrics", headers=right)).status_code == 200


async def test_metrics_are_not_in_the_openapi_description(client: httpx.AsyncClient) -> None:
    assert "/metrics" not in (await client.get("/openapi.json")).json()["paths"]


def test_two_workers_in_multiprocess_mode_are_summed(tmp_path: Path) -> None:
    directory = tmp_path / "prometheus-multiproc"
    directory.mkdir()
    port = free_port()
    args = [sys.executable, "-m", "aigw.tokens.cli", "--host", "127.0.0.1", "--workers", "2"]
    process = Process(
        [*args, "--port", str(port)],
        tmp_path / "token-service.log",
        {"PROMETHEUS_MULTIPROC_DIR": str(directory)},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        process.wait_http(url + "/healthz", timeout=60)
        sent = 24
        for _ in range(sent):  # a new connection each time: both workers take some
            with httpx.Client(timeout=30) as http:
                answer = http.post(url + COUNT, json={"model": "gpt-4o", "prompt": "hello world"})
                assert answer.status_code == 200
        workers_seen = set()
        for _ in range(6):  # whichever worker answers the scrape, it reports both
            with httpx.Client(timeout=30) as http:
                samples = _samples(http.get(url + "/metrics").text)
            assert _requests(samples) == {("o200k_base", "200"): sent}
            assert ("process_resident_memory_bytes", ()) not in samples  # per process only
            workers_seen.add(len(list(directory.glob("counter_*.db"))))
        assert workers_seen == {2}  # both workers wrote their counts
    finally:
        process.stop()
