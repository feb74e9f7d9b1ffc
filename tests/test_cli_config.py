"""`aigw config export` / `aigw config import` against a real config center process."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.helpers import aigw, free_port, new_key_entry, start_config_center

ADMIN = "cli-admin-token-0123456789"


@pytest.fixture
def center(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {
        "AIGW_DATABASE_URL": f"sqlite:///{tmp_path}/cc.db",
        "AIGW_MASTER_KEY": "cli-master-key",
        "AIGW_ADMIN_TOKEN": ADMIN,
    }
    process = start_config_center(tmp_path, port, env)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        aigw("config", *args),
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "AIGW_ADMIN_TOKEN": ADMIN, **(env or {})},
    )


def _document(tmp: Path) -> Path:
    _, key = new_key_entry("ci")
    path = tmp / "aigw.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "providers": [
                    {
                        "name": "openai",
                        "base_url": "https://api.openai.com/v1",
                        "api_key": "${CLI_TEST_SECRET}",
                    }
                ],
                "models": [
                    {"name": "gpt-4o", "targets": [{"provider": "openai", "model": "gpt-4o"}]}
                ],
                "namespaces": [{"name": "team", "keys": [key]}],
            }
        )
    )
    return path


def test_import_dry_run_apply_export_round_trip(center: str, tmp_path: Path) -> None:
    source = _document(tmp_path)
    secret = {"CLI_TEST_SECRET": "sk-cli-secret-value"}

    dry = _cli("import", str(source), "--dry-run", "--url", center, env=secret)
    assert dry.returncode == 0, dry.stderr
    assert "+ providers: " in dry.stdout and "dry run: 3 change(s) not applied" in dry.stdout
    assert "sk-cli-secret-value" not in dry.stdout

    applied = _cli("import", str(source), "--url", center, env=secret)
    assert applied.returncode == 0, applied.stderr
    assert "applied as configuration version 1" in applied.stdout

    exported = tmp_path / "exported.yaml"
    result = _cli("export", "--url", center, "-o", str(exported))
    assert result.returncode == 0, result.stderr
    text = exported.read_text()
    assert "sk-cli-secret-value" not in text and "enc:v1:" in text

    # The export goes back in unchanged: no new version.
    again = _cli("import", str(exported), "--url", center)
    assert again.returncode == 0, again.stderr
    assert "no changes" in again.stdout


def test_import_reports_invalid_files_and_refused_tokens(center: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - name: m\n    targets: []\n")
    result = _cli("import", str(bad), "--url", center)
    assert result.returncode == 2
    assert f"{bad}:3: models[0].targets" in result.stderr

    source = _document(tmp_path)
    refused = _cli(
        "import", str(source), "--url", center, "--token", "wrong", env={"CLI_TEST_SECRET": "x"}
    )
    assert refused.returncode == 1
    assert "answered 401" in refused.stderr

    unreachable = _cli("export", "--url", f"http://127.0.0.1:{free_port()}")
    assert unreachable.returncode == 1 and "cannot reach the config center" in unreachable.stderr
