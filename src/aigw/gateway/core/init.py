"""Build a worker's gateway application: the seed's ``core/init`` step.

Each server worker process imports :func:`create_app` (a factory, so no state is shared across
processes by accident) and either follows the config center named by ``AIGW_CONFIG_CENTER``
(see ``config_sync``) or loads the static file named by ``AIGW_CONFIG``. The CLI validates that
file before starting workers, so a worker only fails here if the file changed in between.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

from aigw.config.loader import load_config_file
from aigw.config.snapshot import build_snapshot
from aigw.gateway.core.app import GatewayApp
from aigw.gateway.core.config_sync import CENTER_ENV, ConfigFollower, FollowerSettings

CONFIG_ENV = "AIGW_CONFIG"


def create_app() -> GatewayApp:
    """The ASGI application for one worker process."""
    _configure_logging()
    _stop_with_parent()
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


PR_SET_PDEATHSIG = 1


def _stop_with_parent() -> None:
    """Have Linux send this worker SIGTERM when granian's main process dies.

    A SIGKILL to the main process (an operator's ``kill -9``, a supervisor that signals only
    it, the OOM killer) would otherwise leave the workers serving on the port forever, with
    nothing to respawn or stop them; SIGTERM makes each drain and flush its last usage instead.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import multiprocessing

    parent = multiprocessing.parent_process()  # granian's main process (None when run alone)
    if parent is None:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    except (OSError, AttributeError) as exc:
        logging.getLogger("aigw.gateway").warning("cannot tie the worker to its parent: %s", exc)
        return
    if os.getppid() != parent.pid:  # it died before the call: the signal will never come
        os.kill(os.getpid(), signal.SIGTERM)
