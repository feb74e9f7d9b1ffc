"""An OpenAI Chat Completions caller in front of a Claude upstream (Anthropic Messages API).

Requests go one way (:func:`chat_to_messages_request`); answers, streams and errors come back
the other (:func:`messages_response_to_chat`, :class:`MessagesStreamToChat`,
:func:`anthropic_error_to_openai`). Everything here is pure: no I/O, no configuration.

Request decisions
-----------------
* ``system`` and ``developer`` messages, wherever they appear, become the top-level
  ``system`` (a string when there is one text, else a list of text blocks, in order).
* Consecutive turns of one role are merged, since Claude wants user and assistant turns to
  alternate; ``tool`` messages become user-role ``tool_result`` blocks and merge with the
  user content around them. Empty text parts are dropped (Claude rejects empty text blocks)
  and a turn left with no content at all is skipped.
* Images: base64 ``data:`` URLs become base64 sources (JPEG, PNG, GIF or WebP only), http(s)
  URLs become ``url`` sources; ``detail`` has no Claude equivalent and is dropped. PDF
  ``file`` parts carrying ``file_data`` become ``document`` blocks; ``file_id`` parts, audio
  and other part types cannot be represented and are a 400 (``drop_unsupported`` does not
  apply to message content: silently losing part of a prompt is never what a caller wants).
* A ``cache_control`` marker on a text or image part (the convention of OpenAI-compatible
  gateways in front of Claude) is passed on, so callers can use Claude's prompt caching.
* Legacy function calling (``function`` role messages, an assistant ``function_call``) is a
  400. Tool-call ids are kept, with characters Claude does not allow in ids replaced by ``_``.
* ``temperature`` above 1 is a 400 (Claude's range is 0..1; OpenAI's is 0..2), or clamped to
  1 with ``drop_unsupported``. Stop sequences that are empty or whitespace only (such as
  ``"\\n"``) are refused by Claude, so they are a 400 here too, or dropped.
* ``response_format``: ``json_object`` and ``json_schema`` are honoured by an instruction
  appended to ``system`` (the schema is quoted in it). This is best effort, not constrained
  decoding: Claude's own structured outputs exist only on recent models, and an upstream
  model that lacks them would fail every such request.
* Parameters asking for behaviour Claude does not have are a 400 naming the parameter
  (``InvalidRequest(param=...)``), or dropped with ``drop_unsupported``: ``n`` > 1,
  ``logprobs``, ``top_logprobs``, ``logit_bias``, non-zero ``presence_penalty`` and
  ``frequency_penalty``, ``audio``, ``modalities`` other than text, ``reasoning_effort``,
  ``verbosity``, ``web_search_options``, and legacy ``functions`` / ``function_call``.
* Dropped silently, because ignoring them changes nothing the caller can observe in the
  answer's content: ``stream_options`` (read by the caller of :class:`MessagesStreamToChat`),
  ``store``, ``metadata``, ``service_tier``, ``seed`` (OpenAI itself promises no
  determinism), ``prediction``, ``prompt_cache_key``, ``prompt_cache_retention``,
  ``parallel_tool_calls: true``, ``name`` on messages, a tool's ``strict``, and any field
  this module does not know. ``user`` (or else ``safety_identifier``) becomes
  ``metadata.user_id``.

Response decisions
------------------
* Text blocks are joined into ``content``; ``tool_use`` blocks become ``tool_calls`` with
  their ids kept. Thinking blocks and server-tool blocks have no Chat Completions form and are
  dropped.
* ``finish_reason``: end_turn, stop_sequence and pause_turn → stop; max_tokens and
  model_context_window_exceeded → length; tool_use → tool_calls; refusal → content_filter.
* ``prompt_tokens`` counts every input token, cached or not (input + cache reads + cache
  writes); ``prompt_tokens_details.cached_tokens`` is the cache reads.
"""

from aigw.gateway.translate.openai_to_anthropic.request import chat_to_messages_request
from aigw.gateway.translate.openai_to_anthropic.response import (
    anthropic_error_to_openai,
    messages_response_to_chat,
)
from aigw.gateway.translate.openai_to_anthropic.stream import MessagesStreamToChat

__all__ = [
    "MessagesStreamToChat",
    "anthropic_error_to_openai",
    "chat_to_messages_request",
    "messages_response_to_chat",
]
