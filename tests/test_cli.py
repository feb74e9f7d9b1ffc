"""The aigw command line, run as users run it."""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.helpers import Process, aigw, free_port, serve_demo_command


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(aigw(*args), capture_output=True, text=True, timeout=60)


def test_every_command_has_help() -> None:
    for command in (
        [],
        ["serve"],
        ["gateway"],
        ["config-center"],
        ["mock-upstream"],
        ["config", "validate"],
        ["keys", "generate"],
        ["keys", "hash"],
    ):
        result = _run(*command, "--help")
        assert result.returncode == 0, result.stderr
        assert "Usage: " in result.stdout


def test_config_validate_reports_field_and_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "providers:\n"
        "  - name: up\n"
        "    base_url: not-a-url\n"
        "models:\n"
        "  - name: m\n"
        "    targets: [{provider: nope, model: x}]\n"
    )
    result = _run("config", "validate", str(config))
    assert result.returncode == 2
    assert f"{config}:3: providers[0].base_url: must be an http:// or https:// URL" in result.stderr


def test_config_validate_accepts_the_shipped_example() -> None:
    example = Path(__file__).parents[1] / "examples" / "aigw.yaml"
    result = subprocess.run(
        aigw("config", "validate", str(example)),
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "OPENAI_API_KEY": "sk-test"},
    )
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_keys_generate_prints_a_key_and_its_entry() -> None:
    result = _run("keys", "generate", "--name", "ci")
    key = re.search(r"key: (sk-aigw-\S+)", result.stdout)
    assert key is not None
    digest = _run("keys", "hash", key.group(1)).stdout.strip()
    assert f"key_hash: {digest}" in result.stdout


def test_serve_demo_works_offline_with_the_printed_key(tmp_path: Path) -> None:
    port, mock_port, center_port, tokens_port = free_port(), free_port(), free_port(), free_port()
    web_port = free_port()
    process = Process(
        serve_demo_command(
            tmp_path / "data",
            port=port,
            mock_port=mock_port,
            center_port=center_port,
            tokens_port=tokens_port,
            web_port=web_port,
        ),
        tmp_path / "serve.log",
        env={"OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": ""},
    )
    try:
        process.wait_http(f"http://127.0.0.1:{port}/readyz")
        banner = process.output()
        key = re.search(r"demo API key\s+(sk-aigw-\S+)", banner)
        assert key is not None, banner
        assert "curl " in banner and "from openai import OpenAI" in banner
        # The gateway follows the config center that `serve` started, into which the demo
        # configuration was imported; the banner says where it is and how to administer it.
        assert f"config center  http://127.0.0.1:{center_port}" in banner
        admin_token = re.search(r"admin token\s+(\S+)", banner)
        assert admin_token is not None, banner
        assert (tmp_path / "data" / "admin-token").read_text().strip() == admin_token.group(1)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz").json()
        assert ready["config_center_version"] == 1
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key.group(1)) as client:
            reply = client.chat.completions.create(
                model="demo-chat", messages=[{"role": "user", "content": "Hello"}]
            )
            assert reply.choices[0].message.content
            # OpenAI's own names work too, served by the mock until OPENAI_API_KEY is set.
            assert client.embeddings.create(model="text-embedding-3-small", input="x").data
            # A Claude model, served by the mock's Anthropic side, answers the OpenAI SDK too.
            claude = client.chat.completions.create(
                model="mock-claude-haiku", messages=[{"role": "user", "content": "Hello"}]
            )
            assert claude.choices[0].message.content and claude.usage.completion_tokens > 0
        # And the Anthropic SDK reaches every model, Claude's and OpenAI's.
        base = f"http://127.0.0.1:{port}"
        with anthropic.Anthropic(base_url=base, api_key=key.group(1)) as claude_client:
            for model in ("claude-haiku-4-5", "demo-chat"):
                message = claude_client.messages.create(
                    model=model, max_tokens=64, messages=[{"role": "user", "content": "Hello"}]
                )
                assert message.content[0].type == "text" and message.content[0].text
                assert message.usage.output_tokens > 0
        # Every seed port answers: the token service counts too.
        counted = httpx.post(
            f"http://127.0.0.1:{tokens_port}/v1/tokens/count",
            json={"model": "gpt-4o", "prompt": "hello world"},
        ).json()
        assert counted["tokens"] == 2 and counted["exact"] is True
        assert (tmp_path / "data" / "demo-key").read_text().strip() == key.group(1)
        assert oct((tmp_path / "data" / "demo-key").stat().st_mode & 0o777) == "0o600"
        # The web dashboard, in front of this config center and gateway.
        assert f"dashboard      http://127.0.0.1:{web_port}" in banner
        web = f"http://127.0.0.1:{web_port}"
        me = httpx.get(
            f"{web}/api/v1/auth/me", headers={"Authorization": f"Bearer {admin_token.group(1)}"}
        )
        assert me.json()["role"] == "admin"
        assert httpx.get(f"{web}/gateway/readyz").json()["config_center_version"] == 1
    finally:
        assert process.stop() is not None
    # The mock, config center, token service and dashboard child processes went away with the
    # gateway.
    for child_port in (mock_port, center_port, tokens_port, web_port):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", child_port), timeout=2).close()


def test_gateway_takes_a_file_or_a_config_center_and_the_secrets_to_follow_it(
    tmp_path: Path,
) -> None:
    env = {"PATH": "/usr/bin:/bin"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(aigw(*args), capture_output=True, text=True, timeout=60, env=env)

    neither = run("gateway")
    assert neither.returncode == 2 and "exactly one of --config FILE" in neither.stderr
    config = tmp_path / "c.yaml"
    config.write_text("{}\n")
    both = run("gateway", "--config", str(config), "--config-center", "http://127.0.0.1:1")
    assert both.returncode == 2 and "exactly one of" in both.stderr
    no_secrets = run("gateway", "--config-center", "http://127.0.0.1:1")
    assert no_secrets.returncode == 2
    assert "AIGW_GATEWAY_TOKEN and AIGW_MASTER_KEY" in no_secrets.stderr
