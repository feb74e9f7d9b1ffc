"""An Anthropic Messages API caller in front of an OpenAI (Chat Completions) upstream.

Requests go one way (:func:`messages_to_chat_request`); answers, streams and errors come back
the other (:func:`chat_response_to_messages`, :class:`ChatStreamToMessages`,
:func:`openai_error_to_anthropic`). Everything here is pure: no I/O, no configuration.

Request decisions
-----------------
* ``system`` (a string or text blocks, joined by blank lines) becomes one system message.
* User content: text blocks become text parts (a lone text as a plain string); images become
  ``image_url`` parts (base64 sources as ``data:`` URLs, ``url`` sources as they are);
  documents with a ``text`` or ``content`` source become text parts (titled when they have a
  title) and base64 PDFs become ``file`` parts. URL and uploaded-file (``file``) sources mean
  nothing to OpenAI and are a 400.
* ``tool_result`` blocks become ``tool`` messages placed before the rest of their turn, as
  OpenAI wants them right after the assistant's ``tool_calls``. Their text is joined; an
  ``is_error`` result is prefixed with ``"Error: "``, since OpenAI has no such flag. Images in
  a tool result cannot go into a ``tool`` message, so they open the user message that follows.
* Assistant ``tool_use`` blocks become ``tool_calls`` (arguments = the input as JSON text);
  ``thinking`` and ``redacted_thinking`` blocks are dropped. Server-tool blocks and server
  tools (web search, code execution, ...) run inside Anthropic's API and are a 400, as are
  ``mcp_servers``.
* ``tool_choice`` auto/any/tool/none → auto/required/named function/none;
  ``disable_parallel_tool_use`` → ``parallel_tool_calls: false``.
* ``output_config.format`` (a JSON schema) becomes ``response_format`` ``json_schema``.
* ``stream`` also asks for ``stream_options.include_usage``, so ``message_delta`` can report
  the real output token count.
* Dropped silently: ``top_k`` (OpenAI has no such sampling control; it only narrows
  sampling), ``thinking`` (OpenAI's reasoning is not exposed as blocks, and an answer without
  thinking blocks is still a valid answer), ``cache_control`` markers (OpenAI caches prompts
  automatically), ``output_config.effort``, ``service_tier``, ``container``,
  ``context_management`` and any field this module does not know.

Response decisions
------------------
* ``stop_reason``: stop → end_turn (OpenAI does not say whether a stop sequence fired, so
  ``stop_sequence`` is never reported), length → max_tokens, tool_calls → tool_use,
  content_filter → refusal. A refusal text becomes a text block with stop_reason refusal.
* Tool-call arguments that are not a JSON object (a truncated call, say) become ``{}``.
* ``usage.input_tokens`` excludes cached tokens, which are ``cache_read_input_tokens``, as
  Anthropic counts them; ``cache_creation_input_tokens`` is always 0 (OpenAI caches for free).
"""

from aigw.gateway.translate.anthropic_to_openai.request import messages_to_chat_request
from aigw.gateway.translate.anthropic_to_openai.response import (
    chat_response_to_messages,
    openai_error_to_anthropic,
)
from aigw.gateway.translate.anthropic_to_openai.stream import ChatStreamToMessages

__all__ = [
    "ChatStreamToMessages",
    "chat_response_to_messages",
    "messages_to_chat_request",
    "openai_error_to_anthropic",
]
