"""The request log with real processes: every request a gateway serves is stored, once.

A real ``aigw config-center`` (SQLite in the test's directory) and a real ``aigw gateway
--config-center`` (granian, two workers) in front of the mock provider. Records are read back
through the admin API (``GET /api/v1/requests``), i.e. from SQL.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from aigw.config.keys import display_prefix
from tests.helpers import (
    Process,
    free_port,
    mock_upstream,
    new_key_entry,
    start_config_center,
    start_following_gateway,
)

MASTER_KEY = "request-log-master-key"
GATEWAY_TOKEN = "request-log-gateway-token"
ADMIN_TOKEN = "request-log-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SECRET = "sk-live-abcdef0123456789abcdef"
PRICE = {"model": "chat", "input_per_million": 2.0, "output_per_million": 4.0}


@dataclass
class Deployment:
    center_url: str
    gateway: Process
    gateway_url: str
    key: str  # namespace billing
    other_key: str  # namespace other

    def chat(
        self, request_id: str, *, key: str | None = None, model: str = "chat", **body: Any
    ) -> httpx.Response:
        """One chat completion on a fresh connection (so both workers serve some)."""
        payload = {
            "model": model,
            "messages": [{"role": "user", "content": "count these words please"}],
            "max_tokens": 5,
            **body,
        }
        headers = {"Authorization": f"Bearer {key or self.key}", "x-request-id": request_id}
        return httpx.post(
            f"{self.gateway_url}/v1/chat/completions", json=payload, headers=headers, timeout=30
        )

    def requests(self, token: str = ADMIN_TOKEN, **params: Any) -> httpx.Response:
        return httpx.get(
            f"{self.center_url}/api/v1/requests",
            params={"limit": 1000, **params},
            headers={"Authorization": f"Bearer {token}"},
        )

    def records(self, **params: Any) -> list[dict[str, Any]]:
        answer = self.requests(**params)
        answer.raise_for_status()
        return answer.json()["items"]  # type: ignore[no-any-return]

    def record(self, request_id: str, token: str = ADMIN_TOKEN) -> httpx.Response:
        return httpx.get(
            f"{self.center_url}/api/v1/requests/{request_id}",
            headers={"Authorization": f"Bearer {token}"},
        )


def document(mock: str, entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "providers": [{"name": "mock", "base_url": f"{mock}/v1", "api_key": "sk-upstream"}],
        "models": [{"name": "chat", "targets": [{"provider": "mock", "model": "gpt-4o"}]}],
        "namespaces": [{"name": ns, "keys": [entry]} for ns, entry in entries.items()],
        "prices": [PRICE],
    }


@contextmanager
def deployment(tmp: Path, gateway_env: dict[str, str] | None = None) -> Iterator[Deployment]:
    key, entry = new_key_entry("caller")
    other_key, other_entry = new_key_entry("caller")
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
        try:
            center_url = f"http://127.0.0.1:{center_port}"
            entries = {"billing": entry, "other": other_entry}
            put = httpx.put(
                f"{center_url}/api/v1/config", json=document(mock, entries), headers=ADMIN
            )
            assert put.status_code == 200, put.text
            gateway_port = free_port()
            env = {
                "AIGW_GATEWAY_TOKEN": GATEWAY_TOKEN,
                "AIGW_MASTER_KEY": MASTER_KEY,
                "AIGW_SNAPSHOT_CACHE": str(tmp / "gateway-snapshot.json"),
                "AIGW_ACCESS_LOG": "0",
                **(gateway_env or {}),
            }
            gateway = start_following_gateway(
                tmp, gateway_port, center_url, env, workers=2, wait="/readyz"
            )
            gateway_url = f"http://127.0.0.1:{gateway_port}"
            wait_all_workers(gateway_url, lambda ready: True)
            yield Deployment(center_url, gateway, gateway_url, key, other_key)
        finally:
            if gateway is not None:
                gateway.stop()
            center.stop()


def wait_all_workers(
    url: str, check: Callable[[dict[str, Any]], bool], confirmations: int = 20, timeout: float = 20
) -> None:
    """/readyz passes ``check`` on enough fresh connections in a row that every worker does."""
    deadline, passed = time.monotonic() + timeout, 0
    while passed < confirmations:
        assert time.monotonic() < deadline, "the gateway's workers did not all get there"
        answer = httpx.get(f"{url}/readyz")
        passed = passed + 1 if answer.status_code == 200 and check(answer.json()) else 0


def wait_for_records(deployed: Deployment, count: int, within: float = 10) -> list[dict[str, Any]]:
    deadline = time.monotonic() + within
    while len(records := deployed.records()) < count:
        assert time.monotonic() < deadline, f"{len(records)} records of {count}"
        time.sleep(0.1)
    return records


def test_requests_are_stored_with_their_fields_and_bodies_only_when_asked(tmp_path: Path) -> None:
    with deployment(tmp_path) as deployed:
        answers = {f"plain-{i}": deployed.chat(f"plain-{i}") for i in range(4)}
        streamed = deployed.chat("streamed", stream=True, stream_options={"include_usage": True})
        unknown = deployed.chat("unknown-model", model="no-such-model")
        other = deployed.chat("other-namespace", key=deployed.other_key)
        refused = deployed.chat("bad-key", key="sk-aigw-not-a-key")
        assert all(a.status_code == 200 for a in answers.values())
        assert (streamed.status_code, unknown.status_code, other.status_code) == (200, 404, 200)
        assert refused.status_code == 401  # no key matched: access log only
        sent = 4 + 3

        records = wait_for_records(deployed, sent)
        time.sleep(1.5)  # a few more flushes: nothing arrives twice
        records = deployed.records()
        assert len(records) == sent
        by_id = {r["request_id"]: r for r in records}
        assert set(by_id) == {*answers, "streamed", "unknown-model", "other-namespace"}
        assert [r["timestamp"] for r in records] == sorted(
            (r["timestamp"] for r in records), reverse=True
        )

        plain = by_id["plain-0"]
        usage = answers["plain-0"].json()["usage"]
        assert plain["namespace"] == "billing"
        assert plain["key_prefix"] == display_prefix(deployed.key)
        assert deployed.key not in json.dumps(records)
        assert (plain["model"], plain["provider"], plain["upstream_model"]) == (
            "chat",
            "mock",
            "gpt-4o",
        )
        assert (plain["status"], plain["stream"], plain["attempts"]) == (200, False, 1)
        assert plain["error_type"] is None and plain["path"] == "/v1/chat/completions"
        assert plain["prompt_tokens"] == usage["prompt_tokens"] > 0
        assert plain["completion_tokens"] == usage["completion_tokens"] > 0
        expected_cost = (2 * usage["prompt_tokens"] + 4 * usage["completion_tokens"]) / 1e6
        assert plain["cost_usd"] == pytest.approx(expected_cost)
        assert plain["duration_ms"] > 0 and plain["request_body_bytes"] is None

        stream = by_id["streamed"]
        assert stream["stream"] is True and stream["ttft_ms"] is not None
        assert stream["completion_tokens"] > 0
        error = by_id["unknown-model"]
        assert (error["status"], error["error_code"], error["model"]) == (
            404,
            "model_not_found",
            None,
        )
        assert by_id["other-namespace"]["namespace"] == "other"
        detail = deployed.record("plain-0").json()
        assert detail["request_body"] is None  # bodies are off by default

        # Filters over the real data.
        assert len(deployed.records(status="4xx")) == 1
        assert len(deployed.records(namespace="other")) == 1
        assert len(deployed.records(key_prefix=display_prefix(deployed.key))) == 6

        # Bodies on, live, with a pattern of our own.
        config = httpx.get(f"{deployed.center_url}/api/v1/config", headers=ADMIN).json()
        config["gateway"] = {
            "request_log": {"bodies": True, "max_body_bytes": 4096, "redact": [r"ACME-\d{6}"]}
        }
        put = httpx.put(f"{deployed.center_url}/api/v1/config", json=config, headers=ADMIN)
        assert put.status_code == 200, put.text
        version = put.json()["version"]
        wait_all_workers(
            deployed.gateway_url, lambda ready: ready.get("config_center_version") == version
        )
        content = f"my key is {SECRET}, order ACME-123456, Bearer abcdefgh12345678"
        messages = [{"role": "user", "content": content}]
        secret_answer = deployed.chat("with-secrets", messages=messages, user="alice")
        assert secret_answer.status_code == 200
        wait_for_records(deployed, sent + 1)
        stored = deployed.record("with-secrets").json()
        body = stored["request_body"]
        assert SECRET not in body and "abcdef0123456789" not in body
        assert "ACME-123456" not in body and "abcdefgh12345678" not in body
        assert json.loads(body)["messages"][0]["content"] == (
            "my key is [REDACTED], order [REDACTED], Bearer [REDACTED]"
        )
        assert json.loads(body)["user"] == "alice"  # the rest as sent
        assert stored["request_body_bytes"] > len(content)
        listed = deployed.records(request_id="with-secrets")
        assert listed[0]["request_body_bytes"] == stored["request_body_bytes"]
        assert "request_body" not in listed[0]

        # A namespace admin sees its namespace only.
        created = httpx.post(
            f"{deployed.center_url}/api/v1/users",
            json={
                "username": "tenant",
                "password": "a long enough password",
                "role": "namespace_admin",
                "namespace": "other",
            },
            headers=ADMIN,
        )
        assert created.status_code == 201, created.text
        login = httpx.post(
            f"{deployed.center_url}/api/v1/auth/login",
            json={"username": "tenant", "password": "a long enough password"},
        )
        token = login.json()["token"]
        own = deployed.requests(token)
        assert own.status_code == 200
        assert [r["request_id"] for r in own.json()["items"]] == ["other-namespace"]
        assert deployed.requests(token, namespace="billing").status_code == 403
        assert deployed.record("plain-0", token).status_code == 404
        assert deployed.record("other-namespace", token).status_code == 200


def test_sigterm_right_after_a_burst_delivers_every_record(tmp_path: Path) -> None:
    """No periodic flush runs (an hour apart): only the shutdown flush can deliver."""
    burst = 60
    with deployment(tmp_path, {"AIGW_USAGE_FLUSH_SECONDS": "3600"}) as deployed:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: deployed.chat(f"burst-{i}"), range(burst)))
        assert all(a.status_code == 200 for a in answers)
        assert deployed.records() == []  # still in the workers' memory

        assert deployed.gateway.stop() == 0  # SIGTERM; every worker flushes on its way out
        records = deployed.records()
        assert sorted(r["request_id"] for r in records) == sorted(
            f"burst-{i}" for i in range(burst)
        )
        assert {r["namespace"] for r in records} == {"billing"}
        assert "could not be delivered" not in deployed.gateway.output()
