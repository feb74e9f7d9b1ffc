"""``GET /v1/models`` and ``GET /v1/models/{model_id}`` in both providers' formats.

The mock answers chat for any model name, so every id "exists": unknown ids are described
rather than refused. The listings show a few well-known models for clients that browse.
"""

from __future__ import annotations

from aigw.mock.lifecycle import Call
from aigw.mock.responses import Reply

OPENAI_MODELS = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-3.5-turbo-instruct",
    "text-embedding-3-small",
    "text-embedding-3-large",
)
ANTHROPIC_MODELS = (
    "claude-sonnet-4-20250514",
    "claude-3-5-haiku-20241022",
)

# Fixed creation dates keep listings byte-identical between runs.
_CREATED = 1_700_000_000
_CREATED_AT = "2025-01-01T00:00:00Z"


def list_openai(call: Call) -> Reply:
    return Reply({"object": "list", "data": [_openai_model(name) for name in OPENAI_MODELS]})


def get_openai(call: Call) -> Reply:
    return Reply(_openai_model(call.path_params["model_id"]))


def list_anthropic(call: Call) -> Reply:
    return Reply(
        {
            "data": [_anthropic_model(name) for name in ANTHROPIC_MODELS],
            "has_more": False,
            "first_id": ANTHROPIC_MODELS[0],
            "last_id": ANTHROPIC_MODELS[-1],
        }
    )


def get_anthropic(call: Call) -> Reply:
    return Reply(_anthropic_model(call.path_params["model_id"]))


def _openai_model(model_id: str) -> dict[str, object]:
    return {"id": model_id, "object": "model", "created": _CREATED, "owned_by": "openai"}


def _anthropic_model(model_id: str) -> dict[str, object]:
    return {"type": "model", "id": model_id, "display_name": model_id, "created_at": _CREATED_AT}
