"""``*_FILE`` variants of the secret environment variables (Docker and Kubernetes secrets).

``AIGW_MASTER_KEY_FILE=/run/secrets/master-key`` sets ``AIGW_MASTER_KEY`` to that file's
content (a trailing newline dropped), so secrets can be mounted as files instead of sitting in
the process environment of a compose file or a manifest. Read once when ``aigw`` starts, before
any command parses its options; the child processes it starts inherit the value.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path

SECRET_VARIABLES = (
    "AIGW_MASTER_KEY",
    "AIGW_ADMIN_TOKEN",
    "AIGW_GATEWAY_TOKEN",
    "AIGW_METRICS_TOKEN",
    "AIGW_DATABASE_URL",
    "AIGW_REDIS_URL",
)


def load_secret_files(env: MutableMapping[str, str]) -> None:
    """Set each secret variable from its ``_FILE`` variant; ``ValueError`` naming the variable
    when both are set, or the file cannot be read or is empty."""
    for name in SECRET_VARIABLES:
        path = env.get(f"{name}_FILE")
        if not path:
            continue
        if env.get(name):
            raise ValueError(f"set {name} or {name}_FILE, not both")
        try:
            value = Path(path).read_text().rstrip("\r\n")
        except OSError as exc:
            raise ValueError(f"{name}_FILE: cannot read {path}: {exc.strerror or exc}") from None
        if not value.strip():
            raise ValueError(f"{name}_FILE: {path} is empty")
        env[name] = value
