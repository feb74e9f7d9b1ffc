"""No secret reaches the logs: the processes' whole output after a full run, failures included.

The access log (one JSON line per request, ``gateway/monitoring/metrics.py``) names a caller by
its key's display prefix; everything else the processes print must not carry a caller key (good
or bad), a provider's API key, an admin password or token, a session token, the gateway token,
the master key or the metrics token. The all-in-one ``aigw serve --demo`` prints the demo key and
the admin token in its banner on purpose: the banner is left out, nothing else.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai

from aigw.config.keys import display_prefix, generate_key
from tests.helpers import (
    Process,
    free_port,
    gateway,
    mock_upstream,
    new_key_entry,
    serve_demo_command,
)

BANNER = re.compile(r"\naigw \S+ demo: .*?Press Ctrl\+C to stop\.\n", re.DOTALL)


def _secret(prefix: str) -> str:
    return f"{prefix}{secrets.token_urlsafe(24)}"


def _leaks(output: str, secrets_by_name: dict[str, str]) -> list[str]:
    """Each secret found in ``output``, whole or as any 12 characters past its display prefix
    (a truncated or partly masked key is still a leak)."""
    found = []
    for name, secret in secrets_by_name.items():
        if secret in output:
            found.append(f"{name} ({secret[:12]}...) in full")
            continue
        start = len(display_prefix(secret)) if secret.startswith("sk-aigw-") else 6
        tail = secret[start:]
        for i in range(len(tail) - 11):
            if tail[i : i + 12] in output:
                found.append(f"{name}: its characters {tail[i : i + 12]!r}")
                break
    return found


def test_the_leak_finder_finds_whole_and_partial_secrets() -> None:
    key = generate_key()
    assert _leaks(f"x {key} y", {"k": key}) == [f"k ({key[:12]}...) in full"]
    assert _leaks(f"Incorrect API key provided: {key[:-4]}****", {"k": key})
    assert _leaks(f"key={key[20:34]}", {"k": key})
    assert _leaks(f'"key": "{display_prefix(key)}"', {"k": key}) == []  # the prefix is public
    password = _secret("pw-")
    assert _leaks(f"login failed for {password[:-1]}", {"p": password})


def _access_lines(output: str) -> list[dict[str, Any]]:
    lines = []
    for line in output.splitlines():
        if line.startswith('{"request_id"'):
            lines.append(json.loads(line))
    return lines


def _wait_for_version(gateway_url: str, version: int, timeout: float = 15) -> None:
    """Until every worker serves ``version`` (8 answers in a row on new connections)."""
    deadline = time.monotonic() + timeout
    in_a_row = 0
    while in_a_row < 8:
        ready = httpx.get(f"{gateway_url}/readyz", headers={"connection": "close"}).json()
        in_a_row = in_a_row + 1 if ready.get("config_center_version", 0) >= version else 0
        assert time.monotonic() < deadline, f"the gateway did not reach version {version}"
        time.sleep(0.02)


def test_serve_demo_full_run_logs_no_secret(tmp_path: Path) -> None:
    port, mock_port, center_port, tokens_port = free_port(), free_port(), free_port(), free_port()
    data = tmp_path / "data"
    provider_key = _secret("sk-proj-")
    refused_provider_key = _secret("sk-refused-")
    metrics_token = _secret("metrics-")
    password = _secret("pw-")
    wrong_password = password[:-1] + ("x" if password[-1] != "x" else "y")
    unknown_key = generate_key()
    with (
        mock_upstream(tmp_path) as upstream,  # "OpenAI", reached with the provider key
        mock_upstream(tmp_path, "--error-rate", "1", "--error-status", "401") as refusing,
    ):
        process = Process(
            serve_demo_command(
                data,
                port=port,
                mock_port=mock_port,
                center_port=center_port,
                tokens_port=tokens_port,
                workers=2,
            ),
            tmp_path / "serve.log",
            env={
                "OPENAI_API_KEY": provider_key,
                "OPENAI_BASE_URL": f"{upstream}/v1",
                "ANTHROPIC_API_KEY": "",
                "AIGW_METRICS_TOKEN": metrics_token,
            },
        )
        try:
            process.wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60)
            base = f"http://127.0.0.1:{port}"
            center = f"http://127.0.0.1:{center_port}"
            demo_key = (data / "demo-key").read_text().strip()
            admin_token = (data / "admin-token").read_text().strip()
            caller_secrets = _exercise_gateway(base, demo_key, unknown_key, metrics_token)
            session, created_key = _exercise_config_center(
                center, base, admin_token, password, wrong_password, refused_provider_key,
                f"{refusing}/v1", demo_key,
            )  # fmt: skip
            counted = httpx.post(
                f"http://127.0.0.1:{tokens_port}/v1/tokens/count",
                json={"model": "gpt-4o", "prompt": "hello world"},
            )
            assert counted.status_code == 200
        finally:
            assert process.stop() is not None
    output = process.output()
    assert BANNER.search(output), output[:3000]
    logged = BANNER.sub("\n", output, count=1)
    kept = {
        path.name: path.read_text().strip()
        for path in sorted(data.iterdir())
        if path.is_file() and path.name in ("admin-token", "master-key", "gateway-token")
    }
    assert {"admin-token", "master-key"} <= kept.keys(), sorted(p.name for p in data.iterdir())
    every_secret = {
        "demo key": demo_key,
        "key made by the config center": created_key,
        "unknown caller key": unknown_key,
        "provider api_key (OPENAI_API_KEY)": provider_key,
        "provider api_key given to the config center": refused_provider_key,
        "metrics token": metrics_token,
        "admin password": password,
        "mistyped admin password": wrong_password,
        "admin session token": session,
        **caller_secrets,
        **kept,
    }
    assert _leaks(logged, every_secret) == []
    # Nor the config center's database (request log, audit log, sessions...) or the gateway's
    # snapshot cache: hashes and ciphertext only. (The files of kept settings are not data.)
    at_rest_files = [*data.glob("*.db*"), data / "gateway-snapshot.json"]
    stored = b"".join(path.read_bytes() for path in at_rest_files)
    at_rest = {k: v for k, v in every_secret.items() if k not in kept}
    assert _leaks(stored.decode("latin-1"), at_rest) == []
    # The run was logged: one access line per gateway request, the key by its display prefix.
    access = _access_lines(logged)
    assert len(access) >= 15, logged[-3000:]
    assert {line["status"] for line in access} >= {200, 401, 403}
    assert display_prefix(demo_key) in {line["key"] for line in access}


def _exercise_gateway(
    base: str, demo_key: str, unknown_key: str, metrics_token: str
) -> dict[str, str]:
    """Good and bad calls on the gateway; returns the made-up secrets it sent."""
    malformed = _secret("sk-aigw-")
    not_ours = _secret("sk-")
    wrong_metrics_token = _secret("metrics-")
    with openai.OpenAI(base_url=f"{base}/v1", api_key=demo_key, max_retries=0) as client:
        for model in ("gpt-4o-mini", "demo-chat"):  # the real provider's route, then the mock's
            reply = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Hello"}]
            )
            assert reply.choices[0].message.content
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
        assert [chunk for chunk in stream]
        assert client.embeddings.create(model="text-embedding-3-small", input="x").data
    with anthropic.Anthropic(base_url=base, api_key=demo_key, max_retries=0) as claude:
        message = claude.messages.create(
            model="gpt-4o-mini", max_tokens=16, messages=[{"role": "user", "content": "Hi"}]
        )
        assert message.content
    body = {"model": "demo-chat", "messages": [{"role": "user", "content": "Hi"}]}
    chat = f"{base}/v1/chat/completions"
    for headers, expected in (
        ({"authorization": f"Bearer {unknown_key}"}, 401),
        ({"authorization": f"Bearer {malformed}"}, 401),
        ({"authorization": f"Bearer {not_ours}"}, 401),
        ({"api-key": unknown_key}, 401),
        ({"x-api-key": unknown_key, "anthropic-version": "2023-06-01"}, 401),
        ({"authorization": f"Basic {unknown_key}"}, 401),
        ({}, 401),
        ({"authorization": f"Bearer {demo_key}", "x-aigw-namespace": "someone-else"}, 403),
    ):
        answer = httpx.post(chat, json=body, headers=headers)
        assert answer.status_code == expected, (headers.keys(), answer.text)
    messages = httpx.post(f"{base}/v1/messages", json=body, headers={"x-api-key": malformed})
    assert messages.status_code == 401
    assert httpx.get(f"{base}/metrics").status_code == 401
    bad = {"authorization": f"Bearer {wrong_metrics_token}"}
    assert httpx.get(f"{base}/metrics", headers=bad).status_code == 401
    good = {"authorization": f"Bearer {metrics_token}"}
    assert httpx.get(f"{base}/metrics", headers=good).status_code == 200
    return {
        "malformed caller key": malformed,
        "foreign key": not_ours,
        "wrong metrics token": wrong_metrics_token,
    }


def _exercise_config_center(
    center: str,
    gateway_url: str,
    admin_token: str,
    password: str,
    wrong_password: str,
    provider_key: str,
    refusing_url: str,
    demo_key: str,
) -> tuple[str, str]:
    """Admin logins (failed ones too), a provider and a key made through the API, a revocation;
    returns the session token and the key made."""
    api = f"{center}/api/v1"
    wrong = {"authorization": f"Bearer {_secret('not-the-admin-token-')}"}
    assert httpx.get(f"{api}/namespaces", headers=wrong).status_code == 401
    admin = {"authorization": f"Bearer {admin_token}"}
    user = {"username": "ops", "password": password, "role": "admin"}
    assert httpx.post(f"{api}/users", json=user, headers=admin).status_code == 201
    refused = httpx.post(f"{api}/auth/login", json={"username": "ops", "password": wrong_password})
    assert refused.status_code == 401
    login = httpx.post(f"{api}/auth/login", json={"username": "ops", "password": password})
    assert login.status_code == 200, login.text
    session = login.json()["token"]
    ops = {"authorization": f"Bearer {session}"}
    assert httpx.get(f"{api}/auth/me", headers=ops).json()["username"] == "ops"

    provider = {"name": "refuser", "base_url": refusing_url, "api_key": provider_key}
    assert httpx.post(f"{api}/providers", json=provider, headers=ops).status_code == 201
    model = {"name": "refused-chat", "targets": [{"provider": "refuser", "model": "gpt-4o-mini"}]}
    assert httpx.post(f"{api}/models", json=model, headers=ops).status_code == 201
    made = httpx.post(f"{api}/namespaces/demo/keys", json={"name": "ci"}, headers=ops)
    assert made.status_code == 201, made.text
    created_key = made.json()["key"]
    version = int(made.headers["etag"].strip('"'))
    _wait_for_version(gateway_url, version)
    # The upstream refuses the provider's key: the caller sees the refusal, the logs no key.
    with openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=created_key, max_retries=0) as sdk:
        try:
            sdk.chat.completions.create(
                model="refused-chat", messages=[{"role": "user", "content": "Hi"}]
            )
            raise AssertionError("the refusing upstream answered")
        except openai.APIStatusError as error:
            assert error.status_code >= 400
    revoked = httpx.post(f"{api}/namespaces/demo/keys/demo/revoke", headers=ops)
    assert revoked.status_code == 200, revoked.text
    _wait_for_version(gateway_url, int(revoked.headers["etag"].strip('"')))
    chat = {"model": "demo-chat", "messages": [{"role": "user", "content": "Hi"}]}
    headers = {"authorization": f"Bearer {demo_key}"}
    answer = httpx.post(f"{gateway_url}/v1/chat/completions", json=chat, headers=headers)
    assert answer.status_code == 401
    assert httpx.post(f"{api}/auth/logout", headers=ops).status_code == 204
    assert httpx.get(f"{api}/auth/me", headers=ops).status_code == 401
    return session, created_key


def test_file_gateway_with_two_workers_logs_no_secret(tmp_path: Path) -> None:
    """A gateway serving a file, at DEBUG level: its logs hold no caller or provider key."""
    key, entry = new_key_entry("a")
    provider_key = _secret("sk-file-provider-")
    refused_key = _secret("sk-file-refused-")
    unknown_key = generate_key()
    with (
        mock_upstream(tmp_path) as upstream,
        mock_upstream(tmp_path, "--error-rate", "1", "--error-status", "401") as refusing,
    ):
        document = {
            "version": 1,
            "providers": [
                {"name": "up", "base_url": f"{upstream}/v1", "api_key": provider_key},
                {"name": "refuser", "base_url": f"{refusing}/v1", "api_key": refused_key},
                {
                    "name": "gone",
                    "base_url": f"http://127.0.0.1:{free_port()}/v1",
                    "api_key": refused_key,
                },
            ],
            "models": [
                {"name": "chat", "targets": [{"provider": "up", "model": "gpt-4o-mini"}]},
                {"name": "refused", "targets": [{"provider": "refuser", "model": "m"}]},
                {"name": "gone", "targets": [{"provider": "gone", "model": "m"}]},
            ],
            "namespaces": [{"name": "a", "keys": [entry]}],
        }
        env = {"AIGW_LOG_LEVEL": "DEBUG"}
        with gateway(tmp_path, document, workers=2, env=env) as base:
            body = {"messages": [{"role": "user", "content": "Hi"}]}
            chat = f"{base}/v1/chat/completions"
            statuses = []
            for model, sent_key in (
                ("chat", key),
                ("refused", key),
                ("gone", key),
                ("chat", unknown_key),
                ("chat", key[:-2]),
            ):
                headers = {"authorization": f"Bearer {sent_key}", "connection": "close"}
                answer = httpx.post(chat, json={**body, "model": model}, headers=headers)
                statuses.append(answer.status_code)
            assert statuses[0] == 200 and statuses[3] == statuses[4] == 401
            assert statuses[1] >= 400 and statuses[2] >= 500
        [log] = tmp_path.glob("gateway-*.log")
    output = log.read_text(errors="replace")
    every_secret = {
        "caller key": key,
        "truncated caller key": key[:-2],
        "unknown caller key": unknown_key,
        "provider api_key": provider_key,
        "refused provider api_key": refused_key,
    }
    assert _leaks(output, every_secret) == []
    chats = [line for line in _access_lines(output) if line["path"] == "/v1/chat/completions"]
    assert [line["status"] for line in chats] == statuses
    assert [line["key"] for line in chats][:3] == [entry["prefix"]] * 3
