"""Build a worker's gateway application: the seed's ``core/init`` step.

Each server worker process imports :func:`create_app` (a factory, so no state is shared across
processes by accident) and either follows the config center named by ``AIGW_CONFIG_CENTER``
(see ``config_sync``) or loads the static file named by ``AIGW_CONFIG``. The CLI validates that
file before starting workers, so a worker only fails here if the file changed in between.
"""

from __future__ import annotations

import logging
import os

from aigw.config.loader import load_config_file
from aigw.config.snapshot import build_snapshot
from aigw.gateway.core.app import GatewayApp
from aigw.gateway.core.config_sync import CENTER_ENV, ConfigFollower, FollowerSettings

CONFIG_ENV = "AIGW_CONFIG"


def create_app() -> GatewayApp:
    """The ASGI application for one worker process."""
    _configure_logging()
    following = FollowerSettings.from_env(os.environ)
    if following is not None:
        # No snapshot yet: the follower loads one (disk cache, then the config center) on startup.
        app = GatewayApp(None)
        app.follower = ConfigFollower(app, following)
        return app
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise RuntimeError(
            f"set {CONFIG_ENV} to the configuration file the gateway serves, or {CENTER_ENV} to "
            "the config center it follows"
        )
    return GatewayApp(build_snapshot(load_config_file(path)))


def _configure_logging() -> None:
    level = os.environ.get("AIGW_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format="%(message)s")
    if os.environ.get("AIGW_ACCESS_LOG", "1") in ("0", "false", "no", "off"):
        logging.getLogger("aigw.access").setLevel(logging.WARNING)
