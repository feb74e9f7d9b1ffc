"""``aigw web``: the dashboard alone (port 3000). Importing this module imports only click."""

from __future__ import annotations

from pathlib import Path

import click

from aigw.cli_options import bind_options

DEFAULT_WEB_PORT = 3000


def _url(value: str, hint: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise click.BadParameter("must be an http:// or https:// URL", param_hint=hint)
    return value.rstrip("/")


@click.command("web")
@bind_options("Web dashboard", "AIGW_WEB", DEFAULT_WEB_PORT)
@click.option(
    "--config-center",
    "config_center",
    envvar="AIGW_CONFIG_CENTER_URL",
    default="http://127.0.0.1:8001",
    show_default=True,
    show_envvar=True,
    help="The config center whose API the dashboard uses (proxied under /api/).",
)
@click.option(
    "--gateway",
    envvar="AIGW_GATEWAY_URL",
    default="http://127.0.0.1:8080",
    show_default=True,
    show_envvar=True,
    help="The gateway the playground chats through (proxied under /gateway/).",
)
@click.option(
    "--static-dir",
    envvar="AIGW_WEB_STATIC_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    show_envvar=True,
    help="The built dashboard [default: the one inside the aigw package, made by `make web`].",
)
def web(host: str, port: int, config_center: str, gateway: str, static_dir: Path | None) -> None:
    """Serve the web dashboard: the single-page application, with /api/* proxied to the config
    center and /gateway/* to a gateway (streams relayed as they arrive)."""
    from aigw.web.server import run

    run(
        host,
        port,
        _url(config_center, "--config-center"),
        _url(gateway, "--gateway"),
        static_dir,
    )
