"""Secrets from files: ``AIGW_<NAME>_FILE`` sets ``AIGW_<NAME>``, also through the CLI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from aigw.cli import main
from aigw.server.secret_files import SECRET_VARIABLES, load_secret_files


def test_each_secret_is_read_from_its_file_without_the_trailing_newline(tmp_path: Path) -> None:
    env: dict[str, str] = {}
    for name in SECRET_VARIABLES:
        path = tmp_path / name
        path.write_text(f"value of {name}\n")
        env[f"{name}_FILE"] = str(path)
    load_secret_files(env)
    assert all(env[name] == f"value of {name}" for name in SECRET_VARIABLES)


def test_no_file_variant_changes_nothing() -> None:
    env = {"AIGW_MASTER_KEY": "k"}
    load_secret_files(env)
    assert env == {"AIGW_MASTER_KEY": "k"}


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("both", "set AIGW_GATEWAY_TOKEN or AIGW_GATEWAY_TOKEN_FILE, not both"),
        ("missing", "AIGW_GATEWAY_TOKEN_FILE: cannot read"),
        ("empty", "is empty"),
    ],
)
def test_mistakes_are_errors_naming_the_variable(tmp_path: Path, setup: str, message: str) -> None:
    path = tmp_path / "token"
    path.write_text("\n" if setup == "empty" else "t0ken\n")
    env = {"AIGW_GATEWAY_TOKEN_FILE": str(path if setup != "missing" else tmp_path / "nope")}
    if setup == "both":
        env["AIGW_GATEWAY_TOKEN"] = "other"
    with pytest.raises(ValueError, match=message):
        load_secret_files(env)


def test_the_cli_reads_them_before_the_command_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aigw.server import processes

    token_file = tmp_path / "metrics-token"
    token_file.write_text("from-a-file\n")
    config = tmp_path / "aigw.yaml"
    config.write_text("providers: []\nmodels: []\nnamespaces: []\n")
    seen: dict[str, str | None] = {}

    def run_gateway(*args: object, **kwargs: object) -> None:  # what the gateway would inherit
        seen["token"] = os.environ.get("AIGW_METRICS_TOKEN")

    monkeypatch.setattr(processes, "run_gateway", run_gateway)
    result = CliRunner().invoke(
        main,
        ["gateway", "--config", str(config)],
        env={"AIGW_METRICS_TOKEN_FILE": str(token_file), "AIGW_METRICS_TOKEN": None},
    )
    assert result.exit_code == 0, result.output
    assert seen == {"token": "from-a-file"}


def test_the_cli_refuses_an_unreadable_secret_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["config", "validate", str(tmp_path / "x.yaml")],
        env={"AIGW_ADMIN_TOKEN_FILE": str(tmp_path / "missing")},
    )
    assert result.exit_code == 2
    assert "AIGW_ADMIN_TOKEN_FILE: cannot read" in result.output
