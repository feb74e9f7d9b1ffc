"""``aigw admin``: manage the config center's admin users from a shell.

This is how the first real admin is made (alongside the bootstrap token): it writes straight to
the config center's database, applying migrations first, so it works before the service has ever
run. The password is read from a hidden prompt (asked twice) or, for scripts, from stdin; it is
never accepted as an argument, where it would end up in shell history and process listings.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from aigw.config_center.auth import ROLES
from aigw.config_center.db.engine import make_engine, migrate, sessions
from aigw.config_center.errors import ApiError
from aigw.config_center.settings import default_database_url
from aigw.config_center.users import MIN_PASSWORD_LENGTH, UserInfo, UserService

# Whoever runs this command has the database itself; the audit log records the channel.
CLI_ACTOR = "cli"


@click.group()
def admin() -> None:
    """Admin users of the config center."""


@admin.command("create")
@click.argument("username")
@click.option(
    "--role",
    required=True,
    type=click.Choice(ROLES),
    help="admin: everything; viewer: read-only; namespace_admin: one namespace.",
)
@click.option("--namespace", default=None, help="The namespace of a namespace_admin.")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of stdin instead of prompting.",
)
@click.option(
    "--database-url",
    envvar="AIGW_DATABASE_URL",
    show_envvar=True,
    default=None,
    help="sqlite:///path, mysql://… or postgresql://… [default: <data-dir>/aigw.db].",
)
@click.option(
    "--data-dir",
    envvar="AIGW_DATA_DIR",
    default=".aigw",
    show_default=True,
    show_envvar=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where aigw keeps its state (used for the default database).",
)
def create(
    username: str,
    role: str,
    namespace: str | None,
    password_stdin: bool,
    database_url: str | None,
    data_dir: Path,
) -> None:
    """Create the admin user USERNAME."""
    password = _read_password(password_stdin)
    url = database_url or default_database_url(data_dir)
    try:
        user = asyncio.run(_create(url, username, password, role, namespace))
    except ApiError as exc:
        raise click.ClickException(exc.message) from None
    scope = f" of namespace '{user.namespace}'" if user.namespace else ""
    click.echo(f"created user '{user.username}' ({user.role}{scope})")


def _read_password(from_stdin: bool) -> str:
    if not from_stdin:
        return click.prompt(
            f"Password (at least {MIN_PASSWORD_LENGTH} characters)",
            hide_input=True,
            confirmation_prompt=True,
        )
    line = sys.stdin.readline()
    password = line.removesuffix("\n").removesuffix("\r")
    if not password:
        raise click.UsageError("--password-stdin: stdin held no password")
    return password


async def _create(
    url: str, username: str, password: str, role: str, namespace: str | None
) -> UserInfo:
    engine = make_engine(url)
    try:
        await migrate(engine)
        service = UserService(sessions(engine), session_ttl_seconds=0)
        return await service.create_user(username, password, role, namespace, actor=CLI_ACTOR)
    finally:
        await engine.dispose()
