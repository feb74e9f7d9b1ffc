#!/usr/bin/env python3
"""The image's HEALTHCHECK: GET a component's health URL; exit 0 on a 2xx answer, else 1.

    aigw-healthcheck [URL]

URL defaults to $AIGW_HEALTH_URL, else the gateway's http://127.0.0.1:8080/healthz. The same
image runs every component, so a container that runs another one sets AIGW_HEALTH_URL (or
passes the URL): the config center's /readyz on 8001 (it answers once its database does), the
token service's /healthz on 8002, the web dashboard's /healthz on 3000. Standard library only.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

DEFAULT_URL = "http://127.0.0.1:8080/healthz"
TIMEOUT_SECONDS = 4.0


def main(argv: list[str]) -> int:
    url = argv[1] if len(argv) > 1 else os.environ.get("AIGW_HEALTH_URL") or DEFAULT_URL
    # No proxy from the environment: the probe is for this container's own port.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=TIMEOUT_SECONDS) as answer:
            status = answer.status
    except urllib.error.HTTPError as error:
        status = error.code
    except (OSError, ValueError) as error:
        print(f"unhealthy: {url}: {error}", file=sys.stderr)
        return 1
    if 200 <= status < 300:
        return 0
    print(f"unhealthy: {url}: HTTP {status}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
