"""Durable accounting with real processes: nothing is lost when a gateway stops.

A real ``aigw config-center`` (SQLite in the test's directory) and a real ``aigw gateway
--config-center`` (granian, two workers) in front of the mock provider. Callers use the official
``openai`` SDK; the counts are read back from the config center's ledger
(``GET /api/v1/usage/daily``), i.e. from SQL.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.helpers import (
    Process,
    free_port,
    mock_upstream,
    new_key_entry,
    sigkill_process_tree,
    start_config_center,
    start_following_gateway,
    wait_pids_gone,
)

MASTER_KEY = "durable-accounting-master-key"
GATEWAY_TOKEN = "durable-accounting-gateway-token"
ADMIN_TOKEN = "durable-accounting-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
N = 12
# $2 per million prompt tokens and $4 per million completion tokens: 2 and 4 micro-USD a token.
PRICE = {"model": "chat", "input_per_million": 2.0, "output_per_million": 4.0}


@dataclass
class Deployment:
    tmp: Path
    center_port: int
    center_env: dict[str, str]
    center: Process
    gateway: Process
    gateway_url: str
    key: str
    gateway_env: dict[str, str] = field(default_factory=dict)
    bad_key: str = field(default="sk-aigw-not-a-key")

    @property
    def center_url(self) -> str:
        return f"http://127.0.0.1:{self.center_port}"

    def restart_center(self) -> None:
        self.center = start_config_center(self.tmp, self.center_port, self.center_env)

    def restart_gateway(self) -> None:
        """A new gateway on the same port, data and spool directories (the old one is gone)."""
        port = int(self.gateway_url.rsplit(":", 1)[1])
        self.gateway = start_following_gateway(
            self.tmp, port, self.center_url, self.gateway_env, workers=2, wait="/readyz"
        )

    def daily(self, **params: str) -> dict[str, Any]:
        answer = httpx.get(f"{self.center_url}/api/v1/usage/daily", params=params, headers=ADMIN)
        answer.raise_for_status()
        return answer.json()  # type: ignore[no-any-return]


def document(mock: str, entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "providers": [{"name": "mock", "base_url": f"{mock}/v1", "api_key": "sk-upstream"}],
        "models": [{"name": "chat", "targets": [{"provider": "mock", "model": "gpt-4o"}]}],
        "namespaces": [{"name": "billing", "keys": [entry]}],
        "prices": [PRICE],
    }


@contextmanager
def deployment(tmp: Path, gateway_env: dict[str, str] | None = None) -> Iterator[Deployment]:
    key, entry = new_key_entry("caller")
    with mock_upstream(tmp) as mock:
        center_port = free_port()
        center_env = {
            "AIGW_DATABASE_URL": f"sqlite:///{tmp}/center.db",
            "AIGW_MASTER_KEY": MASTER_KEY,
            "AIGW_GATEWAY_TOKEN": GATEWAY_TOKEN,
            "AIGW_ADMIN_TOKEN": ADMIN_TOKEN,
        }
        center = start_config_center(tmp, center_port, center_env)
        gateway: Process | None = None
        deployed: Deployment | None = None
        try:
            center_url = f"http://127.0.0.1:{center_port}"
            put = httpx.put(
                f"{center_url}/api/v1/config", json=document(mock, entry), headers=ADMIN
            )
            assert put.status_code == 200, put.text
            gateway_port = free_port()
            env = {
                "AIGW_GATEWAY_TOKEN": GATEWAY_TOKEN,
                "AIGW_MASTER_KEY": MASTER_KEY,
                "AIGW_SNAPSHOT_CACHE": str(tmp / "gateway-snapshot.json"),
                "AIGW_SPOOL_DIR": str(tmp / "spool"),  # the test's own, not the cwd's .aigw
                "AIGW_ACCESS_LOG": "0",
                **(gateway_env or {}),
            }
            gateway = start_following_gateway(
                tmp, gateway_port, center_url, env, workers=2, wait="/readyz"
            )
            gateway_url = f"http://127.0.0.1:{gateway_port}"
            wait_all_workers_ready(gateway_url)
            deployed = Deployment(
                tmp, center_port, center_env, center, gateway, gateway_url, key, env
            )
            yield deployed
        finally:
            if deployed is not None:
                deployed.gateway.stop()
            elif gateway is not None:
                gateway.stop()
            (deployed.center if deployed else center).stop()


def wait_all_workers_ready(url: str, confirmations: int = 20, timeout: float = 20) -> None:
    """/readyz answers 200 on enough fresh connections that every worker has its snapshot."""
    deadline, ready = time.monotonic() + timeout, 0
    while ready < confirmations:
        assert time.monotonic() < deadline, "the gateway's workers did not all get a snapshot"
        ready = ready + 1 if httpx.get(f"{url}/readyz").status_code == 200 else 0


@dataclass
class Sent:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


def send_requests(deployed: Deployment, count: int) -> Sent:
    """``count`` answered chat requests (every third one streamed), each on a fresh connection
    so that both workers serve some; plus one unknown model (404: counted without a model) and
    one unknown key (401: not counted, no namespace)."""
    sent = Sent()
    messages = [{"role": "user", "content": "count these words please"}]
    for i in range(count):
        with openai.OpenAI(
            base_url=f"{deployed.gateway_url}/v1", api_key=deployed.key, max_retries=0
        ) as client:
            if i % 3 == 2:
                chunks = list(
                    client.chat.completions.create(
                        model="chat",
                        messages=messages,  # type: ignore[arg-type]
                        max_tokens=3 + i,
                        stream=True,
                        stream_options={"include_usage": True},
                    )
                )
                usage = chunks[-1].usage
            else:
                usage = client.chat.completions.create(
                    model="chat",
                    messages=messages,  # type: ignore[arg-type]
                    max_tokens=3 + i,
                ).usage
        assert usage is not None
        sent.requests += 1
        sent.prompt_tokens += usage.prompt_tokens
        sent.completion_tokens += usage.completion_tokens
    with openai.OpenAI(
        base_url=f"{deployed.gateway_url}/v1", api_key=deployed.key, max_retries=0
    ) as client:
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="no-such-model", messages=messages)  # type: ignore[arg-type]
    with openai.OpenAI(
        base_url=f"{deployed.gateway_url}/v1", api_key=deployed.bad_key, max_retries=0
    ) as client:
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="chat", messages=messages)  # type: ignore[arg-type]
    assert sent.completion_tokens > 0
    return sent


def assert_ledger_holds(deployed: Deployment, sent: Sent) -> None:
    chat = deployed.daily(namespace="billing", model="chat")["sum"]
    assert chat["requests"] == sent.requests
    assert chat["errors"] == 0
    assert chat["prompt_tokens"] == sent.prompt_tokens
    assert chat["completion_tokens"] == sent.completion_tokens
    assert chat["cost_micro_usd"] == 2 * sent.prompt_tokens + 4 * sent.completion_tokens
    assert chat["latency_ms_total"] >= 0
    unknown_model = deployed.daily(namespace="billing", model="")["sum"]
    assert (unknown_model["requests"], unknown_model["errors"]) == (1, 1)
    everything = deployed.daily()
    assert everything["sum"]["requests"] == sent.requests + 1  # the 401 is not accounted
    assert {i["namespace"] for i in everything["items"]} == {"billing"}


@pytest.mark.parametrize(
    "flush_seconds",
    [
        pytest.param("3600", id="only-the-shutdown-flush-can-deliver"),
        pytest.param(None, id="default-1s-flush-stopped-at-once"),
    ],
)
def test_a_gateway_that_stops_delivers_its_last_counts(
    tmp_path: Path, flush_seconds: str | None
) -> None:
    env = {"AIGW_USAGE_FLUSH_SECONDS": flush_seconds} if flush_seconds else {}
    with deployment(tmp_path, env) as deployed:
        started = time.monotonic()
        sent = send_requests(deployed, N)
        if flush_seconds:  # no periodic flush has run: the ledger is still empty
            assert deployed.daily()["total"] == 0
        else:
            print(f"{N + 2} requests in {time.monotonic() - started:.2f} s, then SIGTERM")

        assert deployed.gateway.stop() == 0  # SIGTERM; granian stops every worker gracefully
        assert_ledger_holds(deployed, sent)
        # The realtime series (the config center's memory store) got the same batches.
        top = httpx.get(
            f"{deployed.center_url}/api/v1/usage/top",
            params={"dimension": "namespace", "minutes": 10},
            headers=ADMIN,
        ).json()["items"]
        assert [(t["name"], t["requests"]) for t in top] == [("billing", sent.requests + 1)]


def test_counts_made_while_the_config_center_is_down_arrive_when_it_is_back(
    tmp_path: Path,
) -> None:
    with deployment(tmp_path) as deployed:
        deployed.center.stop()
        sent = send_requests(deployed, N)  # served from the gateway's snapshot
        time.sleep(2.5)  # a few flushes fail meanwhile; the counts stay in the workers' memory
        assert "cannot deliver counters" in deployed.gateway.output()

        deployed.restart_center()
        deadline = time.monotonic() + 25  # the retry backoff is capped at 10 s
        while deployed.daily()["sum"]["requests"] < sent.requests + 1:
            assert time.monotonic() < deadline, deployed.gateway.output()
            time.sleep(0.2)
        assert_ledger_holds(deployed, sent)

        assert deployed.gateway.stop() == 0  # its shutdown flush has nothing left to add
        assert_ledger_holds(deployed, sent)


def test_a_killed_gateways_counts_are_delivered_by_its_restart_without_traffic(
    tmp_path: Path,
) -> None:
    """SIGKILL (the OOM killer, a runtime past its grace period): no shutdown flush runs. What
    the workers recorded is in their spool segments; the restarted gateway's workers recover
    them at startup, before any request reaches them."""
    with deployment(tmp_path, {"AIGW_USAGE_FLUSH_SECONDS": "3600"}) as deployed:
        sent = send_requests(deployed, N)
        assert deployed.daily()["total"] == 0  # nothing was flushed: the hour has not passed

        wait_pids_gone(sigkill_process_tree(deployed.gateway))
        assert deployed.gateway.stop() == -9  # reaped; its workers died with it
        deployed.restart_gateway()
        deadline = time.monotonic() + 20
        while deployed.daily()["sum"]["requests"] < sent.requests + 1:
            assert time.monotonic() < deadline, deployed.gateway.output()
            time.sleep(0.2)
        assert_ledger_holds(deployed, sent)
        assert "recovered" in deployed.gateway.output()
        assert not list((tmp_path / "spool").glob("*.jsonl"))  # delivered, then deleted
