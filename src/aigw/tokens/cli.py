"""``aigw token-service``: the token service alone, under granian.

Registered in the ``aigw`` group by ``main.add_command(token_service)``; also runnable as
``python -m aigw.tokens.cli``. Importing this module imports only click, so the ``aigw`` command
stays quick to start.
"""

from __future__ import annotations

import click

from aigw.cli_options import bind_options

DEFAULT_TOKEN_SERVICE_PORT = 8002
APP_FACTORY = "aigw.tokens.service:create_app"


@click.command("token-service")
@bind_options("Token service", "AIGW_TOKEN_SERVICE", DEFAULT_TOKEN_SERVICE_PORT)
@click.option(
    "--workers",
    envvar="AIGW_TOKEN_SERVICE_WORKERS",
    default=1,
    show_default=True,
    show_envvar=True,
    type=click.IntRange(1, 256),
    help="Worker processes (each holds its own tokenizer tables, ~100 MB).",
)
def token_service(host: str, port: int, workers: int) -> None:
    """Run the token service: POST /v1/tokens/count, GET /healthz (docs at /docs)."""
    serve(host, port, workers)


def serve(host: str, port: int, workers: int) -> None:
    """Serve the token service with granian until SIGINT/SIGTERM (blocking)."""
    from granian import Granian
    from granian.constants import Interfaces, Loops

    Granian(
        APP_FACTORY,
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        loop=Loops.uvloop if _has_uvloop() else Loops.asyncio,
        log_access=False,
        respawn_failed_workers=True,
    ).serve()


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    token_service()
