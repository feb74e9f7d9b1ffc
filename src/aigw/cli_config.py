"""`aigw config export` and `aigw config import`: configuration as code via the config center."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click
import yaml

from aigw.config.loader import ConfigError, load_config_file
from aigw.config.schema import canonical_document
from aigw.config_center.client import DEFAULT_URL, ClientError, ConfigCenterClient

url_option = click.option(
    "--url",
    envvar="AIGW_CONFIG_CENTER_URL",
    default=DEFAULT_URL,
    show_default=True,
    show_envvar=True,
    help="The config center.",
)
token_option = click.option(
    "--token",
    envvar="AIGW_ADMIN_TOKEN",
    show_envvar=True,
    help="An admin token [default: the one `aigw serve` keeps in the data directory].",
)
data_dir_option = click.option(
    "--data-dir",
    envvar="AIGW_DATA_DIR",
    default=".aigw",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    hidden=True,
)


def _client(url: str, token: str | None, data_dir: Path) -> ConfigCenterClient:
    if not token:
        stored = data_dir / "admin-token"
        if stored.exists():
            token = stored.read_text().strip()
    if not token:
        raise click.UsageError("give an admin token with --token or AIGW_ADMIN_TOKEN")
    return ConfigCenterClient(url, token)


@click.command("export")
@url_option
@token_option
@data_dir_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="File.")
def config_export(url: str, token: str | None, data_dir: Path, output: Path | None) -> None:
    """Write the current configuration as YAML (credentials stay encrypted, enc:v1:...)."""
    try:
        document = _client(url, token, data_dir).request("GET", "/api/v1/config")
    except ClientError as exc:
        raise click.ClickException(str(exc)) from None
    text = "# Exported by `aigw config export`; `aigw config import` takes it back.\n"
    text += yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text)
        click.echo(f"wrote {output}", err=True)


@click.command("import")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Only show what would change.")
@url_option
@token_option
@data_dir_option
def config_import(path: Path, dry_run: bool, url: str, token: str | None, data_dir: Path) -> None:
    """Make a YAML file the current configuration, showing the changes first."""
    try:
        document = canonical_document(load_config_file(path, env=os.environ))
    except ConfigError as exc:
        click.echo(f"invalid configuration ({len(exc.issues)} problem(s)):", err=True)
        for issue in exc.issues:
            click.echo(f"  {issue.format(exc.source)}", err=True)
        sys.exit(2)
    query = "?dry_run=true" if dry_run else ""
    try:
        result = _client(url, token, data_dir).request("PUT", f"/api/v1/config{query}", document)
    except ClientError as exc:
        raise click.ClickException(str(exc)) from None
    for line in format_changes(result["changes"]):
        click.echo(line)
    if not result["changes"]:
        click.echo("no changes: the configuration already matches the file")
    elif dry_run:
        click.echo(f"dry run: {len(result['changes'])} change(s) not applied")
    else:
        click.echo(f"applied as configuration version {result['version']}")


def format_changes(changes: list[dict[str, Any]]) -> list[str]:
    """One line per change: ``+ path: value``, ``- path``, ``~ path: before -> after``."""
    lines = []
    for change in changes:
        if change["op"] == "added":
            lines.append(f"+ {change['path']}: {_short(change['after'])}")
        elif change["op"] == "removed":
            lines.append(f"- {change['path']}")
        else:
            lines.append(
                f"~ {change['path']}: {_short(change['before'])} -> {_short(change['after'])}"
            )
    return lines


def _short(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    text = text.removesuffix("\n...").removesuffix("...").strip()
    return text if len(text) <= 120 else text[:117] + "..."
