"""The token service's HTTP API (``aigw token-service``, port 8002).

One endpoint, ``POST /v1/tokens/count``, counts what a caller is about to send: chat messages
(with tools), a completion prompt or an embedding input. The counting itself is
:mod:`aigw.tokens.counting`, run in a worker thread for large inputs so one long prompt does not
stall the other requests. Errors are OpenAI's error JSON, like the gateway's: 400 for a body
that is not JSON or content that cannot be counted, 413 over the size limit, 422 for a body of
the wrong shape, naming the field. The service keeps no state besides the tokenizer tables
and its Prometheus metrics.

``GET /metrics`` (Prometheus text format; with ``AIGW_METRICS_TOKEN`` set, only for a bearer of
that token): ``token_service_requests_total`` and ``token_service_request_duration_seconds``
for ``POST /v1/tokens/count`` by encoding and HTTP status, ``token_service_tokens_total`` by
encoding, and prometheus_client's process, platform and GC metrics. Each worker keeps its own
registry (one pure-ASGI middleware, a counter and a histogram update per count: about 3 µs). With
``--workers`` above 1, set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory for the service, so
that every scrape sums the workers (prometheus_client's multiprocess mode; the per-process
metrics are then left out), else each scrape sees the one worker that answers it.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any, Literal

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from aigw import __version__
from aigw.tokens.counting import (
    CLAUDE_ESTIMATE,
    TokenCount,
    TokenCountError,
    count_chat_async,
    count_completion_prompt_async,
    count_embedding_input_async,
)
from aigw.tokens.encodings import (
    ENCODING_NAMES,
    EncodingUnavailable,
    is_loaded,
    model_info,
    preload,
)

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

MAX_BODY_BYTES = 10 * 1024 * 1024

TokenId = Annotated[StrictInt, Field(ge=0)]
TextOrIds = StrictStr | list[StrictStr] | list[TokenId] | list[list[TokenId]]


class CountRequest(BaseModel):
    """Exactly one of ``messages`` (optionally with ``tools``), ``prompt`` or ``input``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}]},
                {"model": "gpt-3.5-turbo-instruct", "prompt": "Say this is a test"},
                {"model": "text-embedding-3-small", "input": ["first text", "second text"]},
            ]
        },
    )

    model: StrictStr = Field(
        min_length=1,
        max_length=256,
        description="Model name, as in the OpenAI or Anthropic request; it selects the tokenizer.",
    )
    messages: list[dict[str, Any]] | None = Field(
        default=None, description="Chat Completions messages (content strings or parts)."
    )
    tools: list[dict[str, Any]] | None = Field(
        default=None, description="Chat Completions tool definitions (with messages only)."
    )
    prompt: TextOrIds | None = Field(
        default=None, description="Completions prompt: text, texts, token ids or lists of them."
    )
    input: TextOrIds | None = Field(
        default=None, description="Embeddings input: text, texts, token ids or lists of them."
    )

    @field_validator("prompt", "input", mode="before")
    @classmethod
    def _text_or_ids(cls, value: Any) -> Any:
        # One clear message instead of one error per member of the union.
        if value is None or _is_text_or_ids(value):
            return value
        raise ValueError(
            "must be a string, a list of strings, a list of token ids (non-negative integers) "
            "or a list of lists of token ids"
        )

    @model_validator(mode="after")
    def _exactly_one(self) -> CountRequest:
        given = [
            name for name in ("messages", "prompt", "input") if getattr(self, name) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of messages, prompt or input"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.tools is not None and self.messages is None:
            raise ValueError("tools can only be counted with messages")
        return self


def _is_token_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_text_or_ids(value: Any) -> bool:
    if isinstance(value, str):
        return True
    if not isinstance(value, list):
        return False
    return (
        all(isinstance(item, str) for item in value)
        or all(_is_token_id(item) for item in value)
        or all(isinstance(item, list) and all(map(_is_token_id, item)) for item in value)
    )


class CountResponse(BaseModel):
    model: str = Field(description="The model name as given.")
    tokens: int = Field(ge=0, description="Prompt tokens (the input, with its framing).")
    exact: bool = Field(
        description="True when this is the model's real count by OpenAI's published method; "
        "False for estimates (Claude, unknown models, parts outside the published method)."
    )
    encoding: str = Field(
        description="o200k_base or cl100k_base; claude-estimate for Claude's estimates."
    )


class ErrorDetail(BaseModel):
    message: str
    type: Literal["invalid_request_error", "server_error"]
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class HealthResponse(BaseModel):
    status: Literal["ok"]
    version: str
    encodings_loaded: list[str]


def create_app(*, max_body_bytes: int = MAX_BODY_BYTES, preload_encodings: bool = True) -> FastAPI:
    """The token service's ASGI application (granian calls it once per worker).

    With ``preload_encodings`` the encodings are built at startup (in a thread) rather than by
    the first requests.
    """

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if preload_encodings:
            await asyncio.to_thread(preload)
        yield

    app = FastAPI(
        title="aigw token service",
        version=__version__,
        description="Exact OpenAI token counts and Claude estimates for chat messages, "
        "completion prompts and embedding inputs. See docs/token-service.md.",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    metrics = CountMetrics.create()
    app.add_middleware(CountMetricsMiddleware, metrics=metrics)  # outermost: sees the 413s
    _add_error_handlers(app)
    _add_routes(app, metrics)
    return app


_ERRORS = {
    400: {"model": ErrorResponse, "description": "Not JSON, or content that cannot be counted."},
    413: {"model": ErrorResponse, "description": "Body larger than the limit (10 MiB)."},
    422: {"model": ErrorResponse, "description": "Body of the wrong shape; param names the field."},
}


def _add_routes(app: FastAPI, metrics: CountMetrics) -> None:
    @app.post(
        "/v1/tokens/count",
        response_model=CountResponse,
        responses=_ERRORS,  # type: ignore[arg-type]
        tags=["tokens"],
        summary="Count the prompt tokens of a chat, completion or embeddings request",
    )
    async def count_tokens(body: CountRequest, request: Request) -> CountResponse:
        request.scope[ENCODING_SCOPE_KEY] = _expected_encoding(body.model)  # if counting fails
        result = await _count(body)
        request.scope[ENCODING_SCOPE_KEY] = result.encoding
        request.scope[TOKENS_SCOPE_KEY] = result.tokens
        return CountResponse(
            model=body.model, tokens=result.tokens, exact=result.exact, encoding=result.encoding
        )

    @app.get("/healthz", response_model=HealthResponse, tags=["health"])
    async def healthz() -> HealthResponse:
        loaded = [name for name in ENCODING_NAMES if is_loaded(name)]
        return HealthResponse(status="ok", version=__version__, encodings_loaded=loaded)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        token = os.environ.get(METRICS_TOKEN_ENV)
        if token:
            sent = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(sent, b"Bearer " + token.encode()):
                return error_response(
                    401, "/metrics needs the metrics bearer token", code="invalid_api_key"
                )
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)


async def _count(body: CountRequest) -> TokenCount:
    try:
        if body.messages is not None:
            return await count_chat_async(body.model, body.messages, body.tools)
        if body.prompt is not None:
            return await count_completion_prompt_async(body.model, body.prompt)
        return await count_embedding_input_async(body.model, body.input)
    except RecursionError:
        raise TokenCountError("the request is nested too deeply to count") from None


# --- errors --------------------------------------------------------------------------------------


def error_response(
    status: int, message: str, *, param: str | None = None, code: str | None = None
) -> JSONResponse:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(error.get("type") == "json_invalid" for error in errors):
            return error_response(400, "the request body is not valid JSON", code="invalid_json")
        if any(
            tuple(e.get("loc", ())) == ("body",) and e.get("type") in _NOT_AN_OBJECT for e in errors
        ):
            return error_response(
                400,
                "the request body must be a JSON object (Content-Type: application/json)",
                code="invalid_json",
            )
        first = errors[0] if errors else {}
        message = "; ".join(
            f"{_param(error.get('loc', ())) or 'body'}: {_message(error)}" for error in errors[:10]
        )
        return error_response(
            422, message, param=_param(first.get("loc", ())), code="invalid_value"
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI's own refusals (a body it cannot parse, 404, 405) in the same error format.
        response = error_response(
            exc.status_code,
            str(exc.detail),
            code=_HTTP_CODES.get(exc.status_code, "invalid_request"),
        )
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(TokenCountError)
    async def cannot_count(_: Request, exc: TokenCountError) -> JSONResponse:
        return error_response(400, exc.message, param=exc.param, code="invalid_value")

    @app.exception_handler(EncodingUnavailable)
    async def unavailable(_: Request, exc: EncodingUnavailable) -> JSONResponse:
        return error_response(503, f"tokenizer unavailable: {exc}", code="encoding_unavailable")


_NOT_AN_OBJECT = frozenset({"missing", "model_attributes_type", "dict_type", "model_type"})
_HTTP_CODES = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}


def _message(error: Any) -> str:
    message = str(error.get("msg", "invalid"))
    return message.removeprefix("Value error, ")


def _param(loc: Any) -> str | None:
    """``('body', 'messages', 0, 'role')`` → ``messages[0].role``."""
    path = ""
    for part in loc:
        if part == "body" and not path:
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or None


# --- body size limit -----------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyLimit:
    """Reads the whole request body first, refusing more than ``limit`` bytes with a 413 (from
    Content-Length before reading anything, else as soon as the count passes the limit), then
    hands the body to the application. FastAPI would read it whole anyway; doing it here makes
    the limit hold for every route and never turns into a 500 from inside a handler."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await _send_too_large(send, self.limit)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _send_too_large(send, self.limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_too_large(send: Send, limit: int) -> None:
    body = orjson.dumps(
        {
            "error": {
                "message": f"request body is larger than the limit of {limit} bytes",
                "type": "invalid_request_error",
                "param": None,
                "code": "request_too_large",
            }
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# --- metrics -------------------------------------------------------------------------------------

METRICS_TOKEN_ENV = "AIGW_METRICS_TOKEN"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
COUNT_PATH = "/v1/tokens/count"
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # as the gateway's
ENCODING_SCOPE_KEY = "aigw.tokens.encoding"
TOKENS_SCOPE_KEY = "aigw.tokens.count"
NO_ENCODING = "none"
"""The encoding label of a count refused before its model was known (413, 422, bad JSON)."""
COUNT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def _expected_encoding(model: str) -> str:
    info = model_info(model)
    return CLAUDE_ESTIMATE if info.provider == "anthropic" else info.encoding


class CountMetrics:
    """The token service's metrics, in a registry of its own (one per application)."""

    def __init__(self, registry: CollectorRegistry, *, multiprocess: bool) -> None:
        from prometheus_client import Counter, Histogram

        self.registry = registry
        self.multiprocess = multiprocess
        self._children: dict[tuple[str, int], tuple[Any, Any, Any]] = {}
        self.requests = Counter(
            "token_service_requests",
            "POST /v1/tokens/count requests answered, by encoding and HTTP status.",
            ("encoding", "status"),
            registry=registry,
        )
        self.duration = Histogram(
            "token_service_request_duration_seconds",
            "Time to answer POST /v1/tokens/count, by encoding and HTTP status.",
            ("encoding", "status"),
            buckets=COUNT_BUCKETS,
            registry=registry,
        )
        self.tokens = Counter(
            "token_service_tokens",
            "Tokens counted (the sum of the answers' tokens), by encoding.",
            ("encoding",),
            registry=registry,
        )

    @classmethod
    def create(cls) -> CountMetrics:
        from prometheus_client import (
            GC_COLLECTOR,
            PLATFORM_COLLECTOR,
            PROCESS_COLLECTOR,
            CollectorRegistry,
        )

        registry = CollectorRegistry(auto_describe=True)
        multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        if not multiprocess:  # one process: its own figures describe the service
            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                registry.register(collector)
        return cls(registry, multiprocess=multiprocess)

    def observe(self, encoding: str, status: int, seconds: float, tokens: int | None) -> None:
        children = self._children.get((encoding, status))
        if children is None:  # labels() costs more than the update itself: look it up once
            code = str(status)
            children = self._children[(encoding, status)] = (
                self.requests.labels(encoding, code),
                self.duration.labels(encoding, code),
                self.tokens.labels(encoding) if status == 200 else None,
            )
        requests, duration, counted = children
        requests.inc()
        duration.observe(seconds)
        if tokens and counted is not None:
            counted.inc(tokens)

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CollectorRegistry, generate_latest

        registry = self.registry
        if self.multiprocess:  # every worker's files, summed
            from prometheus_client.multiprocess import MultiProcessCollector

            registry = CollectorRegistry()
            MultiProcessCollector(registry)
        return generate_latest(registry), PROMETHEUS_CONTENT_TYPE


class CountMetricsMiddleware:
    """Times and counts ``POST /v1/tokens/count``; every other path passes straight through."""

    def __init__(self, app: Any, metrics: CountMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != COUNT_PATH:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception:
            status = status or 500  # answered by Starlette's outermost error handler
            raise
        finally:
            status = status or 499  # the caller went away before an answer
            self.metrics.observe(
                scope.get(ENCODING_SCOPE_KEY, NO_ENCODING),
                status,
                time.perf_counter() - started,
                scope.get(TOKENS_SCOPE_KEY) if status == 200 else None,
            )
