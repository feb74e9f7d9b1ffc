"""Translation between OpenAI Chat Completions and Anthropic Messages, both directions.

Pure functions and incremental stream translators, no I/O: the pipeline decides when to
translate, these modules only say how. ``openai_to_anthropic`` serves OpenAI-format callers
of Claude upstreams, ``anthropic_to_openai`` Anthropic-format callers of OpenAI upstreams.
"""

from aigw.gateway.translate.anthropic_to_openai import (
    ChatStreamToMessages,
    chat_response_to_messages,
    messages_to_chat_request,
    openai_error_to_anthropic,
)
from aigw.gateway.translate.openai_to_anthropic import (
    MessagesStreamToChat,
    anthropic_error_to_openai,
    chat_to_messages_request,
    messages_response_to_chat,
)

__all__ = [
    "ChatStreamToMessages",
    "MessagesStreamToChat",
    "anthropic_error_to_openai",
    "chat_response_to_messages",
    "chat_to_messages_request",
    "messages_response_to_chat",
    "messages_to_chat_request",
    "openai_error_to_anthropic",
]
