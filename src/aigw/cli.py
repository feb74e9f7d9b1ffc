"""The ``aigw`` command line."""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import click

from aigw import __version__
from aigw.cli_config import config_export, config_import
from aigw.cli_options import bind_options
from aigw.config.loader import ConfigError, load_config_file
from aigw.config.schema import Config
from aigw.config_center.cli import admin
from aigw.tokens.cli import token_service
from aigw.web.cli import DEFAULT_WEB_PORT, web

if TYPE_CHECKING:
    from aigw.config_center.settings import CenterSettings

DEFAULT_GATEWAY_PORT = 8080
DEFAULT_CENTER_PORT = 8001
DEFAULT_MOCK_PORT = 8090
ADMIN_TOKEN_FILE = "admin-token"
GATEWAY_TOKEN_FILE = "gateway-token"


def _redis_cluster(env: Mapping[str, str]) -> bool:
    from aigw.state.redis_client import cluster_from_env

    try:
        return cluster_from_env(env)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _workers_default() -> int:
    # Without Redis, rate limits and quotas live in the worker's memory: exact only in one process.
    if not os.environ.get("AIGW_REDIS_URL"):
        return 1
    from aigw.server.cpus import available_cpus

    return available_cpus()


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
    show_default="one per usable CPU (affinity and cgroup quota) with AIGW_REDIS_URL, else 1",
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
    """aigw: a self-hosted AI gateway in front of OpenAI and Claude.

    Secrets may come from files: AIGW_MASTER_KEY_FILE, AIGW_ADMIN_TOKEN_FILE,
    AIGW_GATEWAY_TOKEN_FILE, AIGW_METRICS_TOKEN_FILE, AIGW_DATABASE_URL_FILE, AIGW_REDIS_URL_FILE.
    """
    from aigw.server.secret_files import load_secret_files

    try:
        load_secret_files(os.environ)  # before any command reads its options from the environment
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


data_dir_option = click.option(
    "--data-dir",
    envvar="AIGW_DATA_DIR",
    default=".aigw",
    show_default=True,
    show_envvar=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where aigw keeps its state (database, keys, tokens, demo configuration, snapshot cache).",
)


@main.command()
@config_option
@click.option("--demo", is_flag=True, help="Serve the offline demo (mock provider, demo key).")
@host_option
@port_option
@workers_option
@data_dir_option
@click.option(
    "--mock-port",
    envvar="AIGW_MOCK_PORT",
    default=DEFAULT_MOCK_PORT,
    show_default=True,
    show_envvar=True,
    type=click.IntRange(1, 65535),
    help="Port of the demo's mock provider.",
)
@click.option(
    "--config-center-port",
    envvar="AIGW_CONFIG_CENTER_PORT",
    default=DEFAULT_CENTER_PORT,
    show_default=True,
    show_envvar=True,
    type=click.IntRange(1, 65535),
    help="Port of the config center (on 127.0.0.1).",
)
@click.option(
    "--token-service-port",
    envvar="AIGW_TOKEN_SERVICE_PORT",
    default=8002,
    show_default=True,
    show_envvar=True,
    type=click.IntRange(1, 65535),
    help="Port of the token service (on 127.0.0.1).",
)
@click.option(
    "--web-port",
    envvar="AIGW_WEB_PORT",
    default=DEFAULT_WEB_PORT,
    show_default=True,
    show_envvar=True,
    type=click.IntRange(0, 65535),
    help="Port of the web dashboard (on the bind address); 0: no dashboard.",
)
def serve(
    config_path: Path | None,
    demo: bool,
    host: str | None,
    port: int,
    workers: int,
    data_dir: Path,
    mock_port: int,
    config_center_port: int,
    token_service_port: int,
    web_port: int,
) -> None:
    """Run every component in one deployment: the config center, the token service, the web
    dashboard and the gateway following the config center.

    With --config FILE or --demo, that document is imported into the config center first (as a
    new version, only when it differs from the current one). With neither, the gateway serves
    whatever the config center already holds.
    """
    from aigw.server import processes

    if demo and config_path is not None:
        raise click.UsageError("give at most one of --config FILE or --demo")
    data_dir = data_dir.resolve()
    settings = _embedded_center_settings(data_dir)
    center_url = f"http://127.0.0.1:{config_center_port}"
    with contextlib.ExitStack() as children:  # every child stops with the gateway, in reverse
        key = None
        if demo:
            from aigw.config.demo import demo_key, write_demo_config

            host = host or "127.0.0.1"
            key = demo_key(data_dir)
            mock = processes.start_mock_upstream("127.0.0.1", mock_port)
            children.callback(processes.stop, mock)
            config_path = write_demo_config(data_dir, f"http://127.0.0.1:{mock_port}", key)
        if config_path is not None:
            loaded = _check_config(config_path)
            actor = "demo" if demo else f"file:{config_path.resolve()}"
            _import_configuration(settings, loaded, actor[:128], str(config_path))
        try:
            center = processes.start_config_center(
                "127.0.0.1", config_center_port, data_dir, processes.center_env(settings)
            )
            children.callback(processes.stop, center)
            tokens = processes.start_token_service("127.0.0.1", token_service_port)
            children.callback(processes.stop, tokens)
        except RuntimeError as exc:
            raise click.ClickException(f"a component did not start: {exc}") from None
        host = host or "0.0.0.0"
        web_url = _start_dashboard(children, host, web_port, center_url, port)
        if key is not None:
            assert config_path is not None and settings.admin_token is not None
            _print_demo_banner(
                host,
                port,
                key,
                config_path,
                mock_port,
                center_url,
                settings.admin_token,
                token_service_port,
                web_url,
            )
        else:
            where = (
                "AIGW_ADMIN_TOKEN"
                if os.environ.get("AIGW_ADMIN_TOKEN")
                else str(data_dir / ADMIN_TOKEN_FILE)
            )
            click.echo(
                f"aigw {__version__}: gateway on {host}:{port}, config center on {center_url} "
                f"(admin token: {where}), token service on 127.0.0.1:{token_service_port}"
                + (f", dashboard on {web_url}" if web_url else "")
            )
        processes.run_gateway(
            None,
            host,
            port,
            workers,
            config_center=center_url,
            follower_env=_follower_env(settings.gateway_token, settings.master_key, data_dir),
        )


@main.command()
@config_option
@click.option(
    "--config-center",
    "config_center",
    envvar="AIGW_CONFIG_CENTER",
    show_envvar=True,
    help="URL of the config center to follow, instead of --config. Needs AIGW_GATEWAY_TOKEN and "
    "AIGW_MASTER_KEY in the environment.",
)
@click.option(
    "--snapshot-cache",
    envvar="AIGW_SNAPSHOT_CACHE",
    show_envvar=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --config-center: the last good configuration, served while the config center is "
    "down [default: <AIGW_DATA_DIR or .aigw>/gateway-snapshot.json].",
)
@host_option
@port_option
@workers_option
def gateway(
    config_path: Path | None,
    config_center: str | None,
    snapshot_cache: Path | None,
    host: str | None,
    port: int,
    workers: int,
) -> None:
    """Run the gateway (data plane) alone, from a file or following a config center."""
    from aigw.server import processes

    if (config_path is None) == (config_center is None):
        raise click.UsageError(
            "give exactly one of --config FILE (AIGW_CONFIG) or --config-center URL "
            "(AIGW_CONFIG_CENTER)"
        )
    _redis_cluster(os.environ)  # a bad AIGW_REDIS_CLUSTER stops here, not in every worker
    if config_path is not None:
        _check_config(config_path)
        processes.run_gateway(config_path, host or "0.0.0.0", port, workers)
        return
    assert config_center is not None
    if not config_center.startswith(("http://", "https://")):
        raise click.BadParameter("must be an http:// or https:// URL", param_hint="--config-center")
    missing = [n for n in ("AIGW_GATEWAY_TOKEN", "AIGW_MASTER_KEY") if not os.environ.get(n)]
    if missing:
        raise click.UsageError(f"--config-center needs {' and '.join(missing)} in the environment")
    env = _follower_env(
        os.environ["AIGW_GATEWAY_TOKEN"],
        os.environ["AIGW_MASTER_KEY"],
        Path(os.environ.get("AIGW_DATA_DIR") or ".aigw"),
        snapshot_cache,
    )
    processes.run_gateway(
        None, host or "0.0.0.0", port, workers, config_center=config_center, follower_env=env
    )


@main.command("config-center")
@bind_options("Config center", "AIGW_CONFIG_CENTER", DEFAULT_CENTER_PORT)
@click.option(
    "--database-url",
    envvar="AIGW_DATABASE_URL",
    show_envvar=True,
    default=None,
    help="sqlite:///path, mysql://user:pass@host/db (MariaDB too) or postgresql://user@host/db "
    "[default: SQLite file aigw.db in the data dir].",
)
@data_dir_option
@click.option(
    "--workers",
    envvar="AIGW_CONFIG_CENTER_WORKERS",
    default=1,
    show_default=True,
    show_envvar=True,
    type=click.IntRange(1, 64),
    help="Config center worker processes.",
)
def config_center(
    host: str, port: int, database_url: str | None, data_dir: Path, workers: int
) -> None:
    """Run the config center (control plane): versioned configuration, admin API, gateway feed.

    Secrets come from the environment: AIGW_MASTER_KEY encrypts provider credentials (else one
    is kept in the data dir), AIGW_ADMIN_TOKEN is the bootstrap admin's bearer token,
    AIGW_GATEWAY_TOKEN the one gateways follow with. AIGW_REDIS_URL, when set, tells other
    config center instances of each change at once.
    """
    from aigw.config.secrets import master_key_from
    from aigw.config_center.db.engine import async_url
    from aigw.config_center.settings import CenterSettings, default_database_url
    from aigw.server import processes

    url = database_url or default_database_url(data_dir)
    try:
        async_url(url)
    except Exception as exc:
        raise click.BadParameter(str(exc), param_hint="--database-url") from None
    settings = CenterSettings(
        database_url=url,
        master_key=master_key_from(os.environ, data_dir),
        data_dir=data_dir,
        admin_token=os.environ.get("AIGW_ADMIN_TOKEN") or None,
        gateway_token=os.environ.get("AIGW_GATEWAY_TOKEN") or None,
        redis_url=os.environ.get("AIGW_REDIS_URL") or None,
        redis_cluster=_redis_cluster(os.environ),
    )
    if settings.gateway_token is None:
        click.echo("warning: AIGW_GATEWAY_TOKEN is not set, so no gateway can follow", err=True)
    try:
        processes.run_config_center(settings, host, port, workers)
    except processes.DatabaseUnavailable as exc:
        raise click.ClickException(str(exc)) from None


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
@click.option(
    "--stream-error-rate",
    default=0.0,
    show_default=True,
    help="Share of streams that end with an error event mid-way.",
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


config.add_command(config_export)
config.add_command(config_import)
main.add_command(admin)
main.add_command(token_service)
main.add_command(web)


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


def _kept_secret(data_dir: Path, name: str) -> str:
    """A random token made once per data directory and kept there (mode 0600)."""
    path = data_dir / name
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    path.touch(mode=0o600)
    path.write_text(token + "\n")
    return token


def _embedded_center_settings(data_dir: Path) -> CenterSettings:
    """The all-in-one config center's settings: the environment's, else kept in ``data_dir``."""
    from aigw.config.secrets import master_key_from
    from aigw.config_center.settings import CenterSettings, default_database_url

    env = os.environ
    return CenterSettings(
        database_url=env.get("AIGW_DATABASE_URL") or default_database_url(data_dir),
        master_key=master_key_from(env, data_dir),
        data_dir=data_dir,
        admin_token=env.get("AIGW_ADMIN_TOKEN") or _kept_secret(data_dir, ADMIN_TOKEN_FILE),
        gateway_token=env.get("AIGW_GATEWAY_TOKEN") or _kept_secret(data_dir, GATEWAY_TOKEN_FILE),
        redis_url=env.get("AIGW_REDIS_URL") or None,
        redis_cluster=_redis_cluster(env),
    )


def _start_dashboard(
    children: contextlib.ExitStack, host: str, web_port: int, center_url: str, gateway_port: int
) -> str | None:
    """``aigw web`` as a child, in front of this deployment's config center and gateway; its URL.

    The dashboard is a convenience of the all-in-one deployment: when it cannot start (its port
    is taken), the rest runs without it, with a warning."""
    from aigw.server import processes

    if web_port == 0:
        return None
    gateway_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    try:
        dashboard = processes.start_web(
            host, web_port, center_url, f"http://{gateway_host}:{gateway_port}"
        )
    except RuntimeError as exc:
        click.echo(f"warning: the web dashboard did not start ({exc}); going on without", err=True)
        return None
    children.callback(processes.stop, dashboard)
    return f"http://{gateway_host}:{web_port}"


def _follower_env(
    token: str | None, master_key: str, data_dir: Path, cache: Path | None = None
) -> dict[str, str]:
    from aigw.gateway.core.config_sync import CACHE_FILE

    assert token
    return {
        "AIGW_GATEWAY_TOKEN": token,
        "AIGW_MASTER_KEY": master_key,
        "AIGW_SNAPSHOT_CACHE": str((cache or data_dir / CACHE_FILE).resolve()),
    }


def _import_configuration(
    settings: CenterSettings, config: Config, actor: str, source: str
) -> None:
    """Store ``config`` as the config center's next version unless the head already equals it."""
    import asyncio

    from aigw.config.schema import canonical_document
    from aigw.config.secrets import SecretBox, SecretError
    from aigw.config_center.db.engine import make_engine, migrate, sessions
    from aigw.config_center.store import ConfigStore

    async def run() -> tuple[int, bool]:
        engine = make_engine(settings.database_url)
        try:
            await migrate(engine)
            store = ConfigStore(sessions(engine), SecretBox(settings.master_key))
            head = await store.head()
            document = canonical_document(config)
            if head.version and store.box.decrypt_document(head.document) == document:
                return head.version, False
            stored = await store.replace(document, actor=actor, action=f"import {source}")
            return stored.version, True
        finally:
            await engine.dispose()

    try:
        version, changed = asyncio.run(run())
    except SecretError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # the database cannot be reached or written
        message = f"cannot import {source} into the config center: {exc}"
        raise click.ClickException(message) from None
    if changed:
        click.echo(f"imported {source} into the config center as version {version}")


def _print_demo_banner(
    host: str,
    port: int,
    key: str,
    config_path: Path,
    mock_port: int,
    center_url: str,
    admin_token: str,
    token_service_port: int,
    web_url: str | None = None,
) -> None:
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    base = f"http://{shown_host}:{port}/v1"
    dashboard = f"\n  dashboard      {web_url}  (sign in with the admin token)" if web_url else ""
    click.echo(
        f"""
aigw {__version__} demo: gateway on {base}, mock provider on 127.0.0.1:{mock_port}
  configuration  {config_path} (imported into the config center)
  config center  {center_url}  (admin API under /api/v1)
  admin token    {admin_token}{dashboard}
  token service  http://127.0.0.1:{token_service_port}/v1/tokens/count
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
