"""The ``aigw`` command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from aigw import __version__
from aigw.config.loader import ConfigError, load_config_file
from aigw.config.schema import Config

DEFAULT_GATEWAY_PORT = 8080
DEFAULT_MOCK_PORT = 8090


def _workers_default() -> int:
    return os.cpu_count() or 1


host_option = click.option(
    "--host",
    envvar="AIGW_HOST",
    default=None,
    show_envvar=True,
    help="Bind address [default: 0.0.0.0, or 127.0.0.1 with --demo].",
)
port_option = click.option(
    "--port",
    envvar="AIGW_GATEWAY_PORT",
    default=DEFAULT_GATEWAY_PORT,
    show_default=True,
    show_envvar=True,
    type=click.IntRange(1, 65535),
    help="Gateway port.",
)
workers_option = click.option(
    "--workers",
    envvar="AIGW_WORKERS",
    default=_workers_default,
    show_default="one per CPU core",
    show_envvar=True,
    type=click.IntRange(1, 256),
    help="Gateway worker processes.",
)
config_option = click.option(
    "--config",
    "config_path",
    envvar="AIGW_CONFIG",
    show_envvar=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML configuration file (see docs/configuration.md).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="aigw")
def main() -> None:
    """aigw: a self-hosted AI gateway in front of OpenAI and Claude."""


@main.command()
@config_option
@click.option("--demo", is_flag=True, help="Serve the offline demo (mock provider, demo key).")
@host_option
@port_option
@workers_option
@click.option(
    "--data-dir",
    envvar="AIGW_DATA_DIR",
    default=".aigw",
    show_default=True,
    show_envvar=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where aigw keeps its state (the demo key and configuration).",
)
@click.option(
    "--mock-port",
    envvar="AIGW_MOCK_PORT",
    default=DEFAULT_MOCK_PORT,
    show_default=True,
    show_envvar=True,
    type=click.IntRange(1, 65535),
    help="Port of the demo's mock provider.",
)
def serve(
    config_path: Path | None,
    demo: bool,
    host: str | None,
    port: int,
    workers: int,
    data_dir: Path,
    mock_port: int,
) -> None:
    """Run every component in one deployment (today: the gateway on port 8080)."""
    from aigw.server import processes

    if demo == (config_path is not None):
        raise click.UsageError("give exactly one of --config FILE or --demo")
    if not demo:
        assert config_path is not None
        _check_config(config_path)
        processes.run_gateway(config_path, host or "0.0.0.0", port, workers)
        return

    from aigw.config.demo import demo_key, write_demo_config

    host = host or "127.0.0.1"
    key = demo_key(data_dir)
    mock = processes.start_mock_upstream("127.0.0.1", mock_port)
    try:
        config_path = write_demo_config(data_dir, f"http://127.0.0.1:{mock_port}", key)
        _check_config(config_path)
        _print_demo_banner(host, port, key, config_path, mock_port)
        processes.run_gateway(config_path, host, port, workers)
    finally:
        processes.stop(mock)


@main.command()
@config_option
@host_option
@port_option
@workers_option
def gateway(config_path: Path | None, host: str | None, port: int, workers: int) -> None:
    """Run the gateway (data plane) alone."""
    from aigw.server import processes

    if config_path is None:
        raise click.UsageError("--config FILE (or AIGW_CONFIG) is required")
    _check_config(config_path)
    processes.run_gateway(config_path, host or "0.0.0.0", port, workers)


@main.command("mock-upstream")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=DEFAULT_MOCK_PORT, show_default=True, type=click.IntRange(1, 65535))
@click.option("--latency-ms", default=0.0, show_default=True, help="Delay before answering.")
@click.option(
    "--tokens-per-second", default=0.0, show_default=True, help="Stream pacing (0: unpaced)."
)
@click.option("--completion-tokens", default=16, show_default=True, help="Default answer length.")
@click.option("--error-rate", default=0.0, show_default=True, help="Share of requests that fail.")
@click.option("--error-status", default=500, show_default=True, help="Status of those failures.")
@click.option(
    "--hang-rate", default=0.0, show_default=True, help="Share of requests never answered."
)
@click.option(
    "--disconnect-rate", default=0.0, show_default=True, help="Share of streams cut mid-way."
)
@click.option("--seed", type=int, default=None, help="Seed for the fault draws.")
def mock_upstream(host: str, port: int, **options: float | int | None) -> None:
    """A mock OpenAI and Anthropic provider for demos, tests and benchmarks."""
    from aigw.mock.options import MockOptions
    from aigw.mock.server import run_mock

    try:
        mock_options = MockOptions(**options)  # type: ignore[arg-type]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    run_mock(host, port, mock_options)


@main.group()
def config() -> None:
    """Work with configuration files."""


@config.command("validate")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def config_validate(path: Path) -> None:
    """Check a configuration file; errors name the field and the line."""
    loaded = _check_config(path)
    keys = sum(len(n.keys) for n in loaded.namespaces)
    click.echo(
        f"{path}: OK ({len(loaded.providers)} providers, {len(loaded.models)} models, "
        f"{len(loaded.namespaces)} namespaces, {keys} keys)"
    )


@main.group()
def keys() -> None:
    """Make caller API keys."""


@keys.command("generate")
@click.option("--name", default="my-key", show_default=True, help="Name of the key entry.")
def keys_generate(name: str) -> None:
    """Print a new key (once: only its hash is stored) and its configuration entry."""
    from aigw.config.keys import display_prefix, generate_key, hash_key

    key = generate_key()
    click.echo(f"key: {key}    (shown once; give it to the caller)\n")
    click.echo("Add this under a namespace's `keys:` in the configuration:\n")
    click.echo(f"- name: {name}\n  key_hash: {hash_key(key)}\n  prefix: {display_prefix(key)}")


@keys.command("hash")
@click.argument("key", envvar="AIGW_KEY")
def keys_hash(key: str) -> None:
    """Print the key_hash of an existing key."""
    from aigw.config.keys import hash_key

    click.echo(hash_key(key))


def _check_config(path: Path) -> Config:
    try:
        return load_config_file(path)
    except ConfigError as exc:
        click.echo(f"invalid configuration ({len(exc.issues)} problem(s)):", err=True)
        for issue in exc.issues:
            click.echo(f"  {issue.format(exc.source)}", err=True)
        sys.exit(2)


def _print_demo_banner(host: str, port: int, key: str, config_path: Path, mock_port: int) -> None:
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    base = f"http://{shown_host}:{port}/v1"
    click.echo(
        f"""
aigw {__version__} demo: gateway on {base}, mock provider on 127.0.0.1:{mock_port}
  configuration  {config_path}
  demo API key   {key}
  models         mock-gpt-4o-mini (alias demo-chat), gpt-4o-mini, mock-embedding, ...

Try it:
  curl {base}/chat/completions \\
    -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\
    -d '{{"model": "demo-chat", "messages": [{{"role": "user", "content": "Hello"}}]}}'

Or with the openai SDK:
  from openai import OpenAI
  client = OpenAI(base_url="{base}", api_key="{key}")
  print(client.chat.completions.create(
      model="demo-chat", messages=[{{"role": "user", "content": "Hello"}}]
  ).choices[0].message.content)

Press Ctrl+C to stop.
""",
        err=False,
    )
