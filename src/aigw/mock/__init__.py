"""A mock upstream speaking the OpenAI HTTP API and the Anthropic Messages API.

Answers are deterministic, latency and faults are configurable (``MockOptions``, changed
live through ``/_mock/config`` or per request through ``x-mock-*`` headers), and every API
request is logged and counted for inspection under ``/_mock/``.
"""

from aigw.mock.options import MockOptions
from aigw.mock.server import create_app, run_mock

__all__ = ["MockOptions", "create_app", "run_mock"]
