"""OpenAI ``POST /v1/embeddings`` with deterministic vectors."""

from __future__ import annotations

import base64
import hashlib
import math
import struct
import sys
from array import array
from typing import Any

import orjson

from aigw.mock import validation
from aigw.mock.conversation import input_tokens
from aigw.mock.lifecycle import Call
from aigw.mock.responses import Reply

DEFAULT_DIMENSIONS = 8
"""Vector size when the request sets no ``dimensions``: small, because the mock serves speed."""


def embeddings(call: Call) -> Reply:
    """One ``embedding`` object per input, as floats or as base64 of little-endian float32."""
    body = validation.request_object(call.body)
    model = validation.required_string(body, "model")
    inputs = validation.text_or_tokens(body, "input")
    dimensions = validation.optional_int(body, "dimensions", minimum=1) or DEFAULT_DIMENSIONS
    as_base64 = validation.one_of(body, "encoding_format", ("float", "base64"), "float") == "base64"

    # A flat token array is one input; any other array is a batch.
    batch = [inputs] if isinstance(inputs, str) or isinstance(inputs[0], int) else inputs
    data = []
    for index, item in enumerate(batch):
        vector = embedding_vector(item, dimensions)
        data.append(
            {
                "object": "embedding",
                "index": index,
                "embedding": _base64(vector) if as_base64 else vector.tolist(),
            }
        )
    tokens = input_tokens(inputs)
    return Reply(
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


def embedding_vector(item: str | list[Any], dimensions: int) -> array[float]:
    """A unit-length float32 vector derived from a hash of the input, so equal inputs always
    embed equally, on any machine, whatever the model."""
    key = item.encode() if isinstance(item, str) else orjson.dumps(item)
    ints = struct.unpack(f"<{dimensions}i", hashlib.shake_128(key).digest(4 * dimensions))
    norm = math.sqrt(sum(value * value for value in ints)) or 1.0
    # Rounded to float32 up front, so the float and base64 encodings carry the same numbers.
    return array("f", (value / norm for value in ints))


def _base64(vector: array[float]) -> str:
    if sys.byteorder == "big":
        vector = array("f", vector)
        vector.byteswap()
    return base64.b64encode(vector.tobytes()).decode("ascii")
