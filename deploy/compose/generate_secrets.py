#!/usr/bin/env python3
"""Make the secrets docker-compose.yml reads, with fresh random values (docs/deployment.md).

    python3 deploy/compose/generate_secrets.py            # writes deploy/compose/secrets/
    python3 deploy/compose/generate_secrets.py --force    # replaces existing ones (see below)

One env file per service, each holding only what that service needs, plus the metrics token
file Prometheus sends as a bearer token. The values that two files share (the master key, the
gateway token, the database and Redis passwords inside their URLs) are written consistently.
Every file is mode 0600 except ``metrics-token``, which is bind-mounted into the Prometheus
container (user ``nobody``), so it has to be readable: 0644. It only guards ``/metrics``.

Existing files are left alone unless --force: a new master key makes the provider credentials
already stored in the database unreadable, and new database or Redis passwords do not change
the ones their volumes were initialised with. Standard library only.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DIR = HERE / "secrets"

# Must match docker-compose.yml: the MariaDB database and user, the service names.
DATABASE = "aigw"
DATABASE_USER = "aigw"
METRICS_TOKEN_FILE = "metrics-token"


def _token() -> str:
    # Hex: safe inside URLs and env files without quoting.
    return secrets.token_hex(32)


def render(values: dict[str, str] | None = None) -> dict[str, str]:
    """Every file's name and content. ``values`` fixes some of them (tests); the rest are new."""
    v = {
        "master_key": _token(),
        "gateway_token": _token(),
        "admin_token": _token(),
        "metrics_token": _token(),
        "db_password": _token(),
        "db_root_password": _token(),
        "redis_password": _token(),
        "grafana_password": secrets.token_urlsafe(18),
    } | (values or {})
    redis_url = f"redis://:{v['redis_password']}@redis:6379/0"
    database_url = f"mysql://{DATABASE_USER}:{v['db_password']}@mysql:3306/{DATABASE}"
    header = "# Made by deploy/compose/generate_secrets.py. Keep private; never commit.\n"
    return {
        "gateway.env": header
        + f"AIGW_MASTER_KEY={v['master_key']}\n"
        + f"AIGW_GATEWAY_TOKEN={v['gateway_token']}\n"
        + f"AIGW_REDIS_URL={redis_url}\n"
        + f"AIGW_METRICS_TOKEN={v['metrics_token']}\n",
        "config-center.env": header
        + f"AIGW_MASTER_KEY={v['master_key']}\n"
        + f"AIGW_GATEWAY_TOKEN={v['gateway_token']}\n"
        + f"AIGW_ADMIN_TOKEN={v['admin_token']}\n"
        + f"AIGW_DATABASE_URL={database_url}\n"
        + f"AIGW_REDIS_URL={redis_url}\n"
        + f"AIGW_METRICS_TOKEN={v['metrics_token']}\n",
        "token-service.env": header + f"AIGW_METRICS_TOKEN={v['metrics_token']}\n",
        "mysql.env": header
        + f"MARIADB_ROOT_PASSWORD={v['db_root_password']}\n"
        + f"MARIADB_PASSWORD={v['db_password']}\n",
        "redis.env": header + f"REDIS_PASSWORD={v['redis_password']}\n",
        "grafana.env": header + f"GF_SECURITY_ADMIN_PASSWORD={v['grafana_password']}\n",
        METRICS_TOKEN_FILE: v["metrics_token"] + "\n",
    }


def write(directory: Path, force: bool = False) -> list[Path]:
    files = render()
    existing = [directory / name for name in files if (directory / name).exists()]
    if existing and not force:
        names = ", ".join(path.name for path in existing)
        raise SystemExit(
            f"{directory} already has {names}: left alone. Use --force to replace every file "
            "(a new master key makes stored provider credentials unreadable; new database and "
            "Redis passwords need their volumes re-created)."
        )
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in files.items():
        path = directory / name
        mode = 0o644 if name == METRICS_TOKEN_FILE else 0o600
        temporary = path.with_name(f".{name}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(content)
        os.chmod(temporary, mode)  # whatever the umask
        os.replace(temporary, path)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="where to write")
    parser.add_argument("--force", action="store_true", help="replace existing files")
    args = parser.parse_args(argv)
    for path in write(args.dir, args.force):
        print(f"wrote {path}")
    print(
        f"The config center's admin token is AIGW_ADMIN_TOKEN in {args.dir / 'config-center.env'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
