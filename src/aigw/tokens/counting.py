"""Token counts for what callers send: plain text, chat messages (with tools and images),
completion prompts and embedding inputs.

Exactness. A result is ``exact`` only when every part of it is the model's real count by a method
OpenAI has published *and verified against its API*:

- text: the model's own tokenizer (tiktoken), for every OpenAI model family we map;
- chat framing: the cookbook "How to count tokens with tiktoken" (openai/openai-cookbook,
  examples/How_to_count_tokens_with_tiktoken.ipynb): 3 tokens per message, 1 per ``name``, 3 for
  the reply primer ``<|start|>assistant<|message|>`` (4 and -1 for gpt-3.5-turbo-0301). The
  cookbook checks it against the API's ``prompt_tokens`` for gpt-3.5-turbo, gpt-4, gpt-4o and
  gpt-4o-mini only; newer families (gpt-4.1, o-series, gpt-5) get the same constants but are
  marked inexact (one public report shows gpt-5 one token below it);
- tools: the cookbook's ``num_tokens_for_tools`` (per function 7 tokens on gpt-4o-family models,
  10 on gpt-4/gpt-3.5, plus ``name:description``; 3 to open the properties, then per property 3
  plus ``name:type:description``; per enum -3 then 3 plus the item per item; 12 to close), which
  matches the API on the cookbook's example. It only covers flat ``properties`` with ``type``,
  ``description`` and ``enum``: anything else in a schema (nested objects, arrays, defaults...)
  is still counted, from its JSON text, but the result is marked inexact;
- images (``image_url`` parts): OpenAI's vision pricing formula. Tile models: ``detail: low`` is
  a fixed base (85 tokens on gpt-4o); ``high`` scales the image into 2048x2048, then its short side
  down to 768 px, and adds a per-512-px-tile cost (170 on gpt-4o). Exact when the detail is
  ``low``, or ``high`` and the size is known (read from the header of a ``data:`` URL). ``auto``
  is counted as ``high``, and an image of unknown size (a remote URL) as a 1024x1024 one, both
  inexact. Patch-priced models (gpt-4.1-mini/nano, o4-mini, gpt-5-mini/nano) use the 32-px patch
  formula with the documented multipliers, always inexact (measured bills differ slightly).

Audio and file parts are not counted (0 tokens, inexact). A content list with several text parts
is counted part by part (inexact: how the API joins them is not published).

Claude (``claude-*``) is always an estimate: Anthropic does not publish its tokenizer. Text is
counted with cl100k_base and multiplied by :data:`CLAUDE_TEXT_FACTOR` (Anthropic's glossary puts a
Claude token at ~3.5 English characters, against ~4 for cl100k_base: 4/3.5 ≈ 1.14, rounded up
so that limits err on the safe side); tools add Anthropic's documented tool-use system prompt
(:data:`CLAUDE_TOOL_PROMPT_TOKENS`) plus the estimated tokens of their JSON; images follow
Anthropic's ``width x height / 750`` after its resizing. Such results carry the encoding
:data:`CLAUDE_ESTIMATE`.

Unknown model names are counted with o200k_base and marked inexact.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from aigw.tokens.encodings import ModelInfo, Tokenizer, get_tokenizer, is_loaded, model_info

CLAUDE_ESTIMATE: Final = "claude-estimate"
CLAUDE_TEXT_FACTOR: Final = 1.15
#: Anthropic's "tool use system prompt" for current models with tool_choice auto/none.
CLAUDE_TOOL_PROMPT_TOKENS: Final = 346
#: Above this many characters of text a count runs in a worker thread (the *_async functions).
ASYNC_THRESHOLD_CHARS: Final = 32 * 1024


@dataclass(frozen=True, slots=True)
class TokenCount:
    """A token count; ``exact`` is False for estimates (see the module docstring)."""

    tokens: int
    exact: bool
    encoding: str


class TokenCountError(ValueError):
    """The input cannot be counted because it is malformed; ``param`` names the offending field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


# --- per-family constants ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChatFraming:
    per_message: int
    per_name: int
    reply_primer: int


@dataclass(frozen=True, slots=True)
class ToolFraming:
    func_init: int
    prop_init: int
    prop_key: int
    enum_init: int
    enum_item: int
    func_end: int


CHAT_FRAMING: Final = ChatFraming(per_message=3, per_name=1, reply_primer=3)
CHAT_FRAMING_0301: Final = ChatFraming(per_message=4, per_name=-1, reply_primer=3)
TOOLS_GPT4O: Final = ToolFraming(7, 3, 3, -3, 3, 12)
TOOLS_GPT4: Final = ToolFraming(10, 3, 3, -3, 3, 12)

# Families whose chat framing (and tool overhead) the cookbook verified against the API.
_VERIFIED_CHAT: Final = frozenset(
    {"gpt-3.5-turbo", "gpt-3.5-turbo-0301", "gpt-4", "gpt-4o", "gpt-4o-mini"}
)

# OpenAI vision pricing: (base tokens, tokens per 512-px tile) for tile-priced models...
_TILE_RATES: Final[dict[str, tuple[int, int]]] = {
    "gpt-4o": (85, 170),
    "gpt-4.1": (85, 170),
    "gpt-4.5": (85, 170),
    "gpt-5": (85, 170),
    "gpt-4": (85, 170),
    "gpt-4o-mini": (2833, 5667),
    "o1": (75, 150),
    "o3": (75, 150),
}
_DEFAULT_TILE_RATE: Final = (85, 170)
# ... and the multiplier of patch-priced ones.
_PATCH_MULTIPLIERS: Final[dict[str, float]] = {
    "gpt-4.1-mini": 1.62,
    "gpt-4.1-nano": 2.46,
    "o4-mini": 1.72,
    "gpt-5-mini": 1.62,
    "gpt-5-nano": 2.46,
}
_PATCH: Final = 32
_PATCH_BUDGET: Final = 1536
#: Size assumed for an image whose size cannot be read (a remote URL): OpenAI's own example size.
UNKNOWN_IMAGE_SIZE: Final = (1024, 1024)


def _framing(info: ModelInfo) -> ChatFraming:
    return CHAT_FRAMING_0301 if info.family == "gpt-3.5-turbo-0301" else CHAT_FRAMING


def _tool_framing(info: ModelInfo) -> ToolFraming:
    return TOOLS_GPT4 if info.encoding == "cl100k_base" else TOOLS_GPT4O


# --- public API ----------------------------------------------------------------------------------


def count_text(model: str, text: str) -> TokenCount:
    """Tokens of ``text`` alone, with no chat framing."""
    if not isinstance(text, str):
        raise TokenCountError("text must be a string", "text")
    return _Tally(model).add_text(text).result()


def count_chat(
    model: str, messages: Sequence[Any], tools: Sequence[Any] | None = None
) -> TokenCount:
    """Prompt tokens of a chat completion request: its messages, and tool definitions if any."""
    tally = _Tally(model)
    _count_messages(tally, messages)
    if tools:
        _count_tools(tally, tools)
    return tally.result()


def count_completion_prompt(model: str, prompt: Any) -> TokenCount:
    """Prompt tokens of a (legacy) completions request: ``prompt`` is a string, a list of strings,
    a list of token ids or a list of such lists (all prompts added up)."""
    return _count_text_or_ids(model, prompt, "prompt")


def count_embedding_input(model: str, input: Any) -> TokenCount:
    """Input tokens of an embeddings request (the same shapes as a completion prompt)."""
    return _count_text_or_ids(model, input, "input")


T = TypeVar("T")


async def count_text_async(model: str, text: str) -> TokenCount:
    return await _maybe_in_thread(model, _text_size(text), count_text, model, text)


async def count_chat_async(
    model: str, messages: Sequence[Any], tools: Sequence[Any] | None = None
) -> TokenCount:
    """:func:`count_chat` without blocking the event loop: above
    :data:`ASYNC_THRESHOLD_CHARS` of text, or while the encoding is not loaded yet, the count
    runs in a worker thread (tiktoken releases the GIL while it encodes)."""
    size = _text_size(messages) + _text_size(tools)
    return await _maybe_in_thread(model, size, count_chat, model, messages, tools)


async def count_completion_prompt_async(model: str, prompt: Any) -> TokenCount:
    return await _maybe_in_thread(model, _text_size(prompt), count_completion_prompt, model, prompt)


async def count_embedding_input_async(model: str, input: Any) -> TokenCount:
    return await _maybe_in_thread(model, _text_size(input), count_embedding_input, model, input)


async def _maybe_in_thread(model: str, size: int, function: Callable[..., T], *args: Any) -> T:
    if not isinstance(model, str):
        return function(*args)  # raises TokenCountError naming the model
    if size > ASYNC_THRESHOLD_CHARS or not is_loaded(model_info(model).encoding):
        return await asyncio.to_thread(function, *args)
    return function(*args)


def _text_size(value: Any, limit: int = ASYNC_THRESHOLD_CHARS) -> int:
    """Characters of text in ``value`` (strings, nested in lists and objects), up to ~``limit``."""
    size = 0
    stack = [value]
    while stack and size <= limit:
        item = stack.pop()
        if isinstance(item, str):
            size += len(item)
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return size


# --- the tally -----------------------------------------------------------------------------------


class _Tally:
    """Accumulates one count: text tokens (scaled for Claude) and other tokens (images)."""

    __slots__ = ("exact", "info", "other_tokens", "text_tokens", "tokenizer")

    def __init__(self, model: str) -> None:
        if not isinstance(model, str) or not model.strip():
            raise TokenCountError("model must be a non-empty string", "model")
        self.info = model_info(model)
        self.tokenizer: Tokenizer = get_tokenizer(self.info.encoding)
        self.text_tokens = 0
        self.other_tokens = 0
        self.exact = self.info.tokenizer_known

    def add_text(self, text: str) -> _Tally:
        if text:
            self.text_tokens += self.tokenizer.count(text)
        return self

    def add_framing(self, tokens: int) -> None:
        self.text_tokens += tokens

    def add_other(self, tokens: int) -> None:
        """Tokens that are not text (images, Anthropic's tool prompt): never scaled."""
        self.other_tokens += tokens

    def inexact(self) -> None:
        self.exact = False

    @property
    def claude(self) -> bool:
        return self.info.provider == "anthropic"

    def result(self) -> TokenCount:
        text = max(self.text_tokens, 0)
        if self.claude:
            text = math.ceil(text * CLAUDE_TEXT_FACTOR)
            return TokenCount(text + self.other_tokens, False, CLAUDE_ESTIMATE)
        return TokenCount(text + self.other_tokens, self.exact, self.info.encoding)


# --- prompts and embedding inputs --------------------------------------------------------------


def _count_text_or_ids(model: str, value: Any, param: str) -> TokenCount:
    if isinstance(value, str):
        return count_text(model, value)
    if not isinstance(value, list | tuple):
        raise TokenCountError(
            f"{param} must be a string, a list of strings, a list of token ids "
            "or a list of lists of token ids",
            param,
        )
    if not value:
        return count_text(model, "")
    if all(isinstance(item, str) for item in value):
        tally = _Tally(model)
        for item in value:
            tally.add_text(item)
        return tally.result()
    if all(_is_token_id(item) for item in value):
        return _id_count(model, len(value))
    if all(isinstance(item, list | tuple) for item in value):
        total = 0
        for index, ids in enumerate(value):
            if not all(_is_token_id(token) for token in ids):
                raise TokenCountError(
                    f"{param}[{index}] must be a list of token ids (non-negative integers)",
                    f"{param}[{index}]",
                )
            total += len(ids)
        return _id_count(model, total)
    raise TokenCountError(
        f"{param} must be a string, a list of strings, a list of token ids "
        "or a list of lists of token ids (not a mix)",
        param,
    )


def _is_token_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _id_count(model: str, tokens: int) -> TokenCount:
    """Token ids count as themselves, whatever the model: the count is exact by definition."""
    if not isinstance(model, str) or not model.strip():
        raise TokenCountError("model must be a non-empty string", "model")
    return TokenCount(tokens, True, model_info(model).encoding)


# --- chat messages -------------------------------------------------------------------------------


def _count_messages(tally: _Tally, messages: Any) -> None:
    if not isinstance(messages, list | tuple):
        raise TokenCountError("messages must be a list of message objects", "messages")
    framing = _framing(tally.info)
    if tally.info.family not in _VERIFIED_CHAT:
        tally.inexact()
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, Mapping):
            raise TokenCountError(f"{where} must be an object", where)
        role = message.get("role")
        if not isinstance(role, str):
            raise TokenCountError(f"{where}.role must be a string", f"{where}.role")
        tally.add_framing(framing.per_message)
        for key, value in message.items():
            _count_message_field(tally, framing, key, value, f"{where}.{key}")
    tally.add_framing(framing.reply_primer)


def _count_message_field(
    tally: _Tally, framing: ChatFraming, key: str, value: Any, where: str
) -> None:
    if key == "role":
        tally.add_text(value)
    elif key == "content":
        _count_content(tally, value, where)
    elif key == "name":
        if not isinstance(value, str):
            raise TokenCountError(f"{where} must be a string", where)
        tally.add_text(value)
        tally.add_framing(framing.per_name)
    elif key == "tool_calls":
        _count_tool_calls(tally, value, where)
    elif key == "function_call":
        _count_function_call(tally, value, where)
    elif isinstance(value, str):
        # The cookbook counts every string field; how the API renders others
        # (tool_call_id, refusal...) is not published.
        tally.add_text(value)
        tally.inexact()
    elif value is not None:
        tally.inexact()


def _count_content(tally: _Tally, content: Any, where: str) -> None:
    if content is None:
        return
    if isinstance(content, str):
        tally.add_text(content)
        return
    if not isinstance(content, list | tuple):
        raise TokenCountError(f"{where} must be a string, a list of parts or null", where)
    if len(content) > 1:
        tally.inexact()
    for index, part in enumerate(content):
        _count_part(tally, part, f"{where}[{index}]")


def _count_part(tally: _Tally, part: Any, where: str) -> None:
    if isinstance(part, str):  # a bare string part: some clients send these
        tally.add_text(part)
        return
    if not isinstance(part, Mapping):
        raise TokenCountError(f"{where} must be an object with a type", where)
    kind = part.get("type")
    if kind == "text":
        text = part.get("text")
        if not isinstance(text, str):
            raise TokenCountError(f"{where}.text must be a string", f"{where}.text")
        tally.add_text(text)
    elif kind == "refusal":
        refusal = part.get("refusal")
        if not isinstance(refusal, str):
            raise TokenCountError(f"{where}.refusal must be a string", f"{where}.refusal")
        tally.add_text(refusal)
    elif kind == "image_url":
        _count_image_url(tally, part.get("image_url"), f"{where}.image_url")
    elif kind == "image":  # Anthropic's image block
        _count_anthropic_image(tally, part.get("source"), f"{where}.source")
    elif isinstance(kind, str):
        tally.inexact()  # input_audio, file, ...: not counted
    else:
        raise TokenCountError(f"{where}.type must be a string", f"{where}.type")


def _count_tool_calls(tally: _Tally, tool_calls: Any, where: str) -> None:
    if tool_calls is None:
        return
    if not isinstance(tool_calls, list | tuple):
        raise TokenCountError(f"{where} must be a list", where)
    for index, call in enumerate(tool_calls):
        if not isinstance(call, Mapping):
            raise TokenCountError(f"{where}[{index}] must be an object", f"{where}[{index}]")
        _count_function_call(tally, call.get("function"), f"{where}[{index}].function")


def _count_function_call(tally: _Tally, call: Any, where: str) -> None:
    """A call the assistant made: its name and arguments (the framing around them is not
    published, so this is an estimate)."""
    tally.inexact()
    if call is None:
        return
    if not isinstance(call, Mapping):
        raise TokenCountError(f"{where} must be an object", where)
    for field in ("name", "arguments"):
        value = call.get(field)
        if value is None:
            continue
        if not isinstance(value, str):
            raise TokenCountError(f"{where}.{field} must be a string", f"{where}.{field}")
        tally.add_text(value)


# --- tools ---------------------------------------------------------------------------------------


_COOKBOOK_PROPERTY_KEYS: Final = frozenset({"type", "description", "enum"})
_COOKBOOK_PARAMETER_KEYS: Final = frozenset({"type", "properties", "required"})


def _count_tools(tally: _Tally, tools: Any) -> None:
    if not isinstance(tools, list | tuple):
        raise TokenCountError("tools must be a list of tool objects", "tools")
    if tally.claude:
        tally.add_other(CLAUDE_TOOL_PROMPT_TOKENS)  # Anthropic's own count: not scaled
        for index, tool in enumerate(tools):
            _function_of(tool, f"tools[{index}]")  # validates
            tally.add_text(_compact_json(tool))
        return
    framing = _tool_framing(tally.info)
    if tally.info.family not in _VERIFIED_CHAT:
        tally.inexact()
    for index, tool in enumerate(tools):
        _count_function_definition(tally, framing, _function_of(tool, f"tools[{index}]"))
    if tools:
        tally.add_framing(framing.func_end)


def _function_of(tool: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(tool, Mapping):
        raise TokenCountError(f"{where} must be an object", where)
    function = tool.get("function")
    if not isinstance(function, Mapping):
        raise TokenCountError(f"{where}.function must be an object", f"{where}.function")
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise TokenCountError(
            f"{where}.function.name must be a non-empty string", f"{where}.function.name"
        )
    description = function.get("description")
    if description is not None and not isinstance(description, str):
        raise TokenCountError(
            f"{where}.function.description must be a string", f"{where}.function.description"
        )
    parameters = function.get("parameters")
    if parameters is not None and not isinstance(parameters, Mapping):
        raise TokenCountError(
            f"{where}.function.parameters must be an object", f"{where}.function.parameters"
        )
    return function


def _count_function_definition(
    tally: _Tally, framing: ToolFraming, function: Mapping[str, Any]
) -> None:
    tally.add_framing(framing.func_init)
    description = function.get("description")
    if description is None:
        description = ""
        tally.inexact()
    tally.add_text(f"{function['name']}:{description.removesuffix('.')}")
    parameters = function.get("parameters") or {}
    if set(parameters) - _COOKBOOK_PARAMETER_KEYS:
        tally.inexact()
        tally.add_text(
            _compact_json(
                {k: v for k, v in parameters.items() if k not in _COOKBOOK_PARAMETER_KEYS}
            )
        )
    properties = parameters.get("properties") or {}
    if not isinstance(properties, Mapping):
        tally.inexact()
        tally.add_text(_compact_json(properties))
        return
    if properties:
        tally.add_framing(framing.prop_init)
        _count_properties(tally, framing, properties)


def _count_properties(tally: _Tally, framing: ToolFraming, properties: Mapping[str, Any]) -> None:
    for name, schema in properties.items():
        tally.add_framing(framing.prop_key)
        if not isinstance(schema, Mapping):
            tally.inexact()
            tally.add_text(f"{name}:{_compact_json(schema)}")
            continue
        enum = schema.get("enum")
        if isinstance(enum, list | tuple):
            tally.add_framing(framing.enum_init)
            for item in enum:
                tally.add_framing(framing.enum_item)
                tally.add_text(item if isinstance(item, str) else _compact_json(item))
                if not isinstance(item, str):
                    tally.inexact()
        kind = schema.get("type")
        if not isinstance(kind, str):
            tally.inexact()
            kind = "" if kind is None else _compact_json(kind)
        description = schema.get("description")
        if not isinstance(description, str):
            description = "" if description is None else _compact_json(description)
        tally.add_text(f"{name}:{kind}:{description.removesuffix('.')}")
        extra = {k: v for k, v in schema.items() if k not in _COOKBOOK_PROPERTY_KEYS}
        if extra:
            # Outside the published method (nested properties, items, defaults...): counted
            # from their JSON, nested properties with the same per-property rule.
            tally.inexact()
            nested = extra.pop("properties", None)
            if isinstance(nested, Mapping) and nested:
                tally.add_framing(framing.prop_init)
                _count_properties(tally, framing, nested)
            if extra:
                tally.add_text(_compact_json(extra))


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


# --- images --------------------------------------------------------------------------------------


def _count_image_url(tally: _Tally, image_url: Any, where: str) -> None:
    if isinstance(image_url, str):  # the older shorthand
        url, detail = image_url, "auto"
    elif isinstance(image_url, Mapping):
        url, detail = image_url.get("url"), image_url.get("detail") or "auto"
        if not isinstance(url, str):
            raise TokenCountError(f"{where}.url must be a string", f"{where}.url")
        if not isinstance(detail, str):
            raise TokenCountError(f"{where}.detail must be a string", f"{where}.detail")
    else:
        raise TokenCountError(f"{where} must be an object with a url", where)
    size = image_size_from_data_url(url)
    if tally.claude:
        tally.add_other(claude_image_tokens(size))
        return
    tokens, exact = openai_image_tokens(tally.info, detail, size)
    tally.add_other(tokens)
    if not exact:
        tally.inexact()


def _count_anthropic_image(tally: _Tally, source: Any, where: str) -> None:
    if not isinstance(source, Mapping):
        raise TokenCountError(f"{where} must be an object", where)
    size = None
    data = source.get("data")
    if source.get("type") == "base64" and isinstance(data, str):
        size = image_size(_decode_prefix(data))
    url = source.get("url")
    if size is None and isinstance(url, str):
        size = image_size_from_data_url(url)
    if tally.claude:
        tally.add_other(claude_image_tokens(size))
        return
    tokens, exact = openai_image_tokens(tally.info, "auto", size)
    tally.add_other(tokens)
    if not exact:
        tally.inexact()


def openai_image_tokens(
    info: ModelInfo, detail: str, size: tuple[int, int] | None
) -> tuple[int, bool]:
    """(tokens, exact) of one image by OpenAI's published vision pricing for ``info``'s family."""
    multiplier = _PATCH_MULTIPLIERS.get(info.family)
    width, height = size or UNKNOWN_IMAGE_SIZE
    if multiplier is not None:
        return math.ceil(_patches(width, height) * multiplier), False
    known_rate = info.family in _TILE_RATES
    base, per_tile = _TILE_RATES.get(info.family, _DEFAULT_TILE_RATE)
    if detail == "low":
        return base, known_rate
    tiles = _tiles(width, height)
    exact = known_rate and detail == "high" and size is not None
    return base + per_tile * tiles, exact


def _tiles(width: int, height: int) -> int:
    """512-px tiles after scaling into 2048x2048 and then the short side down to 768 px."""
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        scale = 2048 / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > 768:
        scale = 768 / min(w, h)
        w, h = w * scale, h * scale
    return math.ceil(w / 512) * math.ceil(h / 512)


def _patches(width: int, height: int) -> int:
    """32-px patches, the image scaled down (as OpenAI documents) to at most 1536 of them.

    OpenAI's worked example (1800x2400 → 1086x1448 → 1056x1408 → 33x44 = 1452 patches) keeps
    whole pixels after each step, and so does this.
    """
    patches = math.ceil(width / _PATCH) * math.ceil(height / _PATCH)
    if patches <= _PATCH_BUDGET:
        return patches
    shrink = math.sqrt(_PATCH_BUDGET * _PATCH * _PATCH / (width * height))
    w, h = int(width * shrink), int(height * shrink)
    # Then shrink a little more so that the width is a whole number of patches.
    w_patches = w / _PATCH
    if w_patches >= 1:
        fit = math.floor(w_patches) / w_patches
        w, h = int(w * fit), int(h * fit)
    return min(math.ceil(w / _PATCH) * math.ceil(h / _PATCH), _PATCH_BUDGET)


#: Anthropic: images whose long edge exceeds 1568 px, or of more than ~1600 tokens, are scaled
#: down first; an image costs about width x height / 750 tokens.
_CLAUDE_MAX_EDGE: Final = 1568
_CLAUDE_MAX_IMAGE_TOKENS: Final = 1600


def claude_image_tokens(size: tuple[int, int] | None) -> int:
    if size is None:
        return _CLAUDE_MAX_IMAGE_TOKENS
    w, h = float(size[0]), float(size[1])
    if max(w, h) > _CLAUDE_MAX_EDGE:
        scale = _CLAUDE_MAX_EDGE / max(w, h)
        w, h = w * scale, h * scale
    return min(math.ceil(w * h / 750), _CLAUDE_MAX_IMAGE_TOKENS)


# Enough of the image to find its size (a JPEG's size comes after its EXIF block).
_HEADER_BASE64_CHARS: Final = 96 * 1024


def image_size_from_data_url(url: str) -> tuple[int, int] | None:
    """The pixel size of a base64 ``data:`` URL's image, from its header; None if unknown."""
    if not url.startswith("data:"):
        return None
    head, sep, data = url.partition(",")
    if not sep or not head.endswith(";base64"):
        return None
    return image_size(_decode_prefix(data))


def _decode_prefix(data: str) -> bytes:
    prefix = data[:_HEADER_BASE64_CHARS].strip()
    prefix = prefix[: len(prefix) - len(prefix) % 4]
    try:
        return base64.b64decode(prefix, validate=False)
    except (binascii.Error, ValueError):
        return b""


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, GIF, WebP or JPEG header; None if it cannot be read."""
    try:
        if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
            return struct.unpack(">II", data[16:24])
        if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
            return struct.unpack("<HH", data[6:10])
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp_size(data)
        if data[:2] == b"\xff\xd8":
            return _jpeg_size(data)
    except struct.error:
        return None
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
        return width, height
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


_JPEG_SOF: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    index = 2
    while index + 9 <= len(data):
        if data[index] != 0xFF:
            return None
        marker = data[index + 1]
        if marker == 0xFF:  # fill byte
            index += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            index += 2
            continue
        (length,) = struct.unpack(">H", data[index + 2 : index + 4])
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[index + 5 : index + 9])
            return width, height
        index += 2 + length
    return None
