"""How a config center process is set up (from flags and the environment)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 8001


@dataclass(frozen=True)
class CenterSettings:
    database_url: str
    """sqlite:///path, mysql://user:pass@host/db (MariaDB too) or postgresql://user@host/db."""
    master_key: str
    """Encrypts provider credentials at rest (AIGW_MASTER_KEY)."""
    data_dir: Path
    admin_token: str | None = None
    """Bootstrap admin bearer token (AIGW_ADMIN_TOKEN); create real users with it."""
    gateway_token: str | None = None
    """Bearer token gateways present to fetch configuration (AIGW_GATEWAY_TOKEN)."""
    redis_url: str | None = None
    """Optional: change notifications between several config center instances."""
    redis_cluster: bool = False
    """``redis_url`` names a node of a Redis Cluster (AIGW_REDIS_CLUSTER)."""
    session_ttl_seconds: int = 12 * 3600
    request_log_retention_days: float | None = None
    """Days request-log rows are kept (0: forever); None: AIGW_REQUEST_LOG_RETENTION_DAYS or 7."""
    request_log_purge_seconds: float | None = None
    """How often old rows are deleted; None: AIGW_REQUEST_LOG_PURGE_SECONDS, else 300."""


def default_database_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'aigw.db').resolve()}"
