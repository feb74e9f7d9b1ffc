"""Command-line options shared by the components' commands (imports only click)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

F = TypeVar("F", bound=Callable[..., object])


def bind_options(component: str, env_prefix: str, default_port: int) -> Callable[[F], F]:
    """``--host`` and ``--port`` for a component served on its own port (env ``{prefix}_HOST``,
    ``{prefix}_PORT``)."""

    def decorate(command: F) -> F:
        command = click.option(
            "--port",
            envvar=f"{env_prefix}_PORT",
            default=default_port,
            show_default=True,
            show_envvar=True,
            type=click.IntRange(1, 65535),
            help=f"{component} port.",
        )(command)
        return click.option(
            "--host",
            envvar=f"{env_prefix}_HOST",
            default="0.0.0.0",
            show_default=True,
            show_envvar=True,
            help="Bind address.",
        )(command)

    return decorate
