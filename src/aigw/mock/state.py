"""Mutable state of one running mock: live options, fault RNG, request log and counters."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from aigw.mock.options import MockOptions

REQUEST_LOG_SIZE = 100
"""API requests kept for ``GET /_mock/requests``; older ones are dropped."""


class MockState:
    """Everything the handlers of one app share. Only touched from the event loop thread."""

    def __init__(self, options: MockOptions) -> None:
        self.options = options
        self.rng = random.Random(options.seed)
        self.requests: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self.received = 0
        self.completed = 0
        self.client_disconnects = 0

    def configure(self, changes: Mapping[str, Any]) -> MockOptions:
        """Apply validated option changes (ValueError otherwise). Setting ``seed``, even to
        its current value, restarts the fault draws so a test can replay them."""
        self.options = self.options.updated(changes)
        if "seed" in changes:
            self.rng = random.Random(self.options.seed)
        return self.options

    def record(self, request: web.BaseRequest, body: object) -> None:
        """Count an API request and log it, header names lowercased for easy lookup."""
        self.received += 1
        headers = {name.lower(): value for name, value in request.headers.items()}
        self.requests.append(
            {"method": request.method, "path": request.path, "headers": headers, "body": body}
        )

    def stats(self) -> dict[str, int]:
        """Counters of API requests. Streams cut on purpose count as neither completed nor
        client disconnects, so ``requests - completed - client_disconnects`` is the number
        of such cuts plus the requests still in flight."""
        return {
            "requests": self.received,
            "completed": self.completed,
            "client_disconnects": self.client_disconnects,
        }


STATE = web.AppKey("state", MockState)
