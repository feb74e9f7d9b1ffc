"""The token service (Token服务): exact OpenAI token counts and Claude estimates.

Used in-process by the gateway (:class:`aigw.tokens.client.LocalTokenCounter`) or as its own
service, ``aigw token-service`` on port 8002 (:mod:`aigw.tokens.service`, reached with
:class:`aigw.tokens.client.RemoteTokenCounter`). Importing this package is cheap: the
encodings are built on first use (or by :func:`preload`). See docs/token-service.md.
"""

from aigw.tokens.counting import (
    ASYNC_THRESHOLD_CHARS,
    CLAUDE_ESTIMATE,
    TokenCount,
    TokenCountError,
    count_chat,
    count_chat_async,
    count_completion_prompt,
    count_completion_prompt_async,
    count_embedding_input,
    count_embedding_input_async,
    count_text,
    count_text_async,
)
from aigw.tokens.encodings import (
    CL100K_BASE,
    DEFAULT_ENCODING,
    O200K_BASE,
    EncodingUnavailable,
    encoding_name_for_model,
    model_info,
    preload,
)

__all__ = [
    "ASYNC_THRESHOLD_CHARS",
    "CL100K_BASE",
    "CLAUDE_ESTIMATE",
    "DEFAULT_ENCODING",
    "O200K_BASE",
    "EncodingUnavailable",
    "TokenCount",
    "TokenCountError",
    "count_chat",
    "count_chat_async",
    "count_completion_prompt",
    "count_completion_prompt_async",
    "count_embedding_input",
    "count_embedding_input_async",
    "count_text",
    "count_text_async",
    "encoding_name_for_model",
    "model_info",
    "preload",
]
