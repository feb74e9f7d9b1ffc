"""A small client of the config center's admin API, for the command line.

Standard library only (urllib): the CLI must work wherever aigw is installed, and these are a
handful of requests, not a hot path.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8001"


class ClientError(Exception):
    """The config center refused the request or could not be reached."""


class ConfigCenterClient:
    def __init__(self, url: str, token: str, timeout: float = 30) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._timeout = timeout

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise ClientError(_describe_error(exc)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ClientError(f"cannot reach the config center at {self.url}: {reason}") from None
        return json.loads(payload) if payload else None


def _describe_error(exc: urllib.error.HTTPError) -> str:
    try:
        error = json.loads(exc.read())["error"]
        message = error["message"]
    except (ValueError, KeyError, TypeError):
        message = exc.reason
    return f"the config center answered {exc.code}: {message}"
