"""The offline demo configuration that ``make run`` starts with.

The ``mock-*`` models are always served by the bundled mock provider, so the gateway works with no
network and no API keys: ``mock-claude-haiku`` by its Anthropic side (Messages API), the others by
its OpenAI side. OpenAI's model names (``gpt-4o-mini``, ...) and Anthropic's (``claude-*``) are
served by the mock too, so existing code works unchanged, until ``OPENAI_API_KEY`` or
``ANTHROPIC_API_KEY`` is set: then they route to OpenAI or Anthropic. The keys themselves stay in
the environment (the file holds ``${OPENAI_API_KEY}``). Every model answers both SDKs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from aigw.config.keys import display_prefix, generate_key, hash_key

DEMO_NAMESPACE = "demo"
MOCK_MODELS = {
    # public name: (aliases, upstream model)
    "mock-gpt-4o-mini": (["demo-chat"], "gpt-4o-mini"),
    "mock-gpt-4o": ([], "gpt-4o"),
    "mock-embedding": (["demo-embedding"], "text-embedding-3-small"),
    "mock-instruct": ([], "gpt-3.5-turbo-instruct"),
}
MOCK_CLAUDE_MODELS = {"mock-claude-haiku": (["demo-claude"], "claude-haiku-4-5")}
DEMO_PRICES = [
    ("mock-gpt-4o-mini", 0.15, 0.60),
    ("gpt-4o-mini", 0.15, 0.60),
    ("mock-gpt-4o", 2.50, 10.00),
    ("gpt-4o", 2.50, 10.00),
    ("gpt-4.1-mini", 0.40, 1.60),
    ("mock-claude-haiku", 1.00, 5.00),
    ("claude-haiku-4-5", 1.00, 5.00),
    ("claude-sonnet-4-5", 3.00, 15.00),
]


@dataclass(frozen=True)
class RealProvider:
    """A provider whose models the demo serves from the mock until its key is in the
    environment."""

    name: str  # also its type
    key_variable: str
    base_url_variable: str
    base_url: str
    models: tuple[str, ...]
    mock_provider: str


REAL_PROVIDERS = (
    RealProvider(
        "openai",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "https://api.openai.com/v1",
        ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "text-embedding-3-small"),
        mock_provider="mock",
    ),
    RealProvider(
        "anthropic",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "https://api.anthropic.com/v1",
        ("claude-haiku-4-5", "claude-sonnet-4-5"),
        mock_provider="mock-anthropic",
    ),
)


def demo_key(data_dir: Path) -> str:
    """The demo caller key: made once per data directory and kept there (mode 0600)."""
    path = data_dir / "demo-key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = generate_key()
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    return key


def demo_document(mock_url: str, key: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The demo configuration as a document of the ``Config`` schema."""
    env = os.environ if env is None else env
    providers: list[dict[str, Any]] = [
        {"name": "mock", "type": "openai-compatible", "base_url": f"{mock_url}/v1"},
        {"name": "mock-anthropic", "type": "anthropic", "base_url": f"{mock_url}/v1"},
    ]
    models: list[dict[str, Any]] = [
        {
            "name": name,
            "aliases": aliases,
            "description": f"served by the bundled mock provider ({provider})",
            "targets": [{"provider": provider, "model": upstream}],
        }
        for provider, table in (("mock", MOCK_MODELS), ("mock-anthropic", MOCK_CLAUDE_MODELS))
        for name, (aliases, upstream) in table.items()
    ]
    for real in REAL_PROVIDERS:
        served_by = real.mock_provider
        if env.get(real.key_variable):
            served_by = real.name
            providers.append(
                {
                    "name": real.name,
                    "type": real.name,
                    "base_url": env.get(real.base_url_variable, real.base_url),
                    "api_key": f"${{{real.key_variable}}}",
                }
            )
        models += [
            {
                "name": m,
                "owned_by": real.name if served_by == real.name else "aigw-mock",
                "targets": [{"provider": served_by, "model": m}],
            }
            for m in real.models
        ]
    return {
        "version": 1,
        "providers": providers,
        "models": models,
        # OpenAI's list prices (USD per million tokens), so the demo shows spend as well.
        "prices": [
            {"model": name, "input_per_million": price_in, "output_per_million": price_out}
            for name, price_in, price_out in DEMO_PRICES
        ],
        "namespaces": [
            {
                "name": DEMO_NAMESPACE,
                "description": "made by `aigw serve --demo`",
                # Example limits a newcomer can watch work (x-ratelimit-* headers, then 429s).
                "policy": {
                    "models": {"allow": ["*"], "deny": []},
                    "limits": {
                        "requests_per_minute": 60,
                        "tokens_per_minute": 100_000,
                        "concurrent_requests": 20,
                        "tokens_per_day": 5_000_000,
                        "spend_per_day_usd": 10.0,
                    },
                    "max_tokens": 4096,
                },
                "keys": [
                    {"name": "demo", "key_hash": hash_key(key), "prefix": display_prefix(key)}
                ],
            }
        ],
    }


def write_demo_config(data_dir: Path, mock_url: str, key: str) -> Path:
    path = data_dir / "demo.yaml"
    header = "# Written by `aigw serve --demo` on every start; copy it to make your own.\n"
    path.write_text(header + yaml.safe_dump(demo_document(mock_url, key), sort_keys=False))
    return path
