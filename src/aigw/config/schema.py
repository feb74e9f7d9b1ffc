"""The declarative configuration: providers, models (routes), namespaces, keys and policies.

This is the one schema of aigw's configuration. The YAML file given to ``aigw serve --config``
is parsed into it, and the config center stores, versions and pushes exactly this document, so
every field here is documented in ``docs/configuration.md``. Cross-references (a target naming a
provider, a name used twice) are checked here too, so an invalid document never reaches a gateway.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    field_validator,
    model_validator,
)

from aigw.config.keys import KEY_HASH_PATTERN

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,255}$")


def _check_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(
            "must be 1-128 characters of letters, digits, '.', '_', ':' or '-', "
            "starting with a letter or digit"
        )
    return value


def _check_model_name(value: str) -> str:
    if not _MODEL_NAME_RE.match(value):
        raise ValueError(
            "must be 1-256 characters of letters, digits and . _ : / @ + -, "
            "starting with a letter or digit"
        )
    return value


Name = Annotated[str, AfterValidator(_check_name)]
ModelName = Annotated[str, AfterValidator(_check_model_name)]
ModelPattern = Annotated[str, Field(min_length=1, max_length=256)]


class _Strict(BaseModel):
    """Unknown fields are errors: a typo in a policy must never silently disable it."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Timeouts(_Strict):
    """Upstream timeouts in seconds."""

    connect: float = Field(10.0, gt=0, description="TCP/TLS connect timeout.")
    first_byte: float | None = Field(
        None,
        gt=0,
        description="Longest wait for the answer to start (its headers, and a stream's first "
        "chunk); `read` when unset. Past it the request fails over to the next target.",
    )
    read: float = Field(
        300.0,
        gt=0,
        description="Longest wait for the next bytes from the upstream: the idle time between "
        "stream chunks (and the first byte, unless `first_byte` is set).",
    )
    total: float | None = Field(
        None, gt=0, description="Overall limit for one upstream request; none by default."
    )


class RouteTimeouts(_Strict):
    """A route's own timeouts, in seconds; each unset one is the provider's."""

    connect: float | None = Field(None, gt=0)
    first_byte: float | None = Field(None, gt=0)
    read: float | None = Field(None, gt=0, description="Idle time between stream chunks.")
    total: float | None = Field(None, gt=0)


class HealthCheck(_Strict):
    """Active health checks of a provider: `GET base_url + path` every `interval` seconds."""

    path: str = Field("/models", description="Appended to base_url; any 2xx is healthy.")
    interval: float = Field(10.0, ge=1)
    timeout: float = Field(2.0, gt=0)
    unhealthy_after: int = Field(2, ge=1, description="Consecutive failed checks.")


class Provider(_Strict):
    """An upstream AI service the gateway forwards to."""

    name: Name
    type: Literal["openai", "openai-compatible", "anthropic"] = Field(
        "openai",
        description="Wire protocol of the upstream: 'openai' and 'openai-compatible' (vLLM, "
        "Ollama, Azure-style proxies) speak OpenAI's HTTP API; 'anthropic' speaks Anthropic's "
        "Messages API.",
    )
    base_url: str = Field(
        description="API root including the version, e.g. https://api.openai.com/v1"
    )
    api_key: SecretStr | None = Field(
        None, description="Credential sent upstream; use ${ENV_VAR} to keep it out of the file."
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra headers sent upstream (e.g. OpenAI-Organization)."
    )
    timeouts: Timeouts = Field(default_factory=Timeouts)
    health_check: HealthCheck | None = Field(
        None, description="Probe the provider; its targets are skipped while it is unhealthy."
    )
    count_tokens: Literal["estimate", "upstream"] = Field(
        "estimate",
        description="How the gateway answers POST /v1/messages/count_tokens for this provider's "
        "models: 'estimate' counts locally (no upstream call); 'upstream' (anthropic providers "
        "only) asks the provider's own count-tokens endpoint. Limits always use the local "
        "count, so admission never waits for an extra upstream call.",
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("headers")
    @classmethod
    def _no_auth_header(cls, value: dict[str, str]) -> dict[str, str]:
        for header in value:
            if header.lower() in {"authorization", "x-api-key", "host", "content-length"}:
                raise ValueError(
                    f"header {header!r} is set by the gateway and cannot be overridden"
                )
        return value

    @model_validator(mode="after")
    def _count_tokens_upstream_needs_anthropic(self) -> Provider:
        if self.count_tokens == "upstream" and self.type != "anthropic":
            raise ValueError(
                "count_tokens: 'upstream' needs an anthropic provider (only Anthropic's API has "
                "a count-tokens endpoint)"
            )
        return self


class Target(_Strict):
    """One place a public model is served from."""

    provider: Name = Field(description="Name of a provider in `providers`.")
    model: str = Field(min_length=1, description="The model name the upstream knows.")
    weight: int = Field(1, ge=0, description="Relative share of traffic within its priority group.")
    priority: int = Field(
        0, ge=0, description="Lower groups are tried first; higher ones are fallbacks."
    )


class Routing(_Strict):
    """How a model's targets share its traffic and stand in for one another."""

    strategy: Literal["weighted", "least_inflight", "lowest_latency"] = Field(
        "weighted",
        description="Order of the targets within a priority group: weighted random, fewest "
        "requests in flight (this gateway worker's), or lowest moving average of time to first "
        "byte. Priority groups always come in order: the next group serves only when every "
        "target of the current one is unavailable or has failed this request.",
    )
    max_attempts: int = Field(
        3, ge=1, le=10, description="Tries per request across targets (1: no failover)."
    )
    backoff_ms: float = Field(
        25.0, ge=0, description="Base of the jittered exponential wait between tries."
    )
    deadline: float = Field(
        30.0,
        gt=0,
        description="Seconds after which no new try starts (the try under way may continue).",
    )
    timeouts: RouteTimeouts = Field(default_factory=RouteTimeouts)


class Model(_Strict):
    """A public model name callers use, routed to one or more targets."""

    name: ModelName
    aliases: list[ModelName] = Field(default_factory=list)
    description: str = ""
    targets: list[Target] = Field(min_length=1)
    owned_by: str = Field("aigw", description="Shown in /v1/models.")
    routing: Routing = Field(default_factory=Routing)
    default_max_tokens: int | None = Field(
        None,
        ge=1,
        description="max_tokens sent to a Claude (anthropic) target when an OpenAI-format "
        "request sets none (Claude requires it); 4096 when unset.",
    )
    drop_unsupported_params: bool = Field(
        False,
        description="When translating OpenAI requests for a Claude target, drop parameters "
        "Claude cannot honour (n > 1, logprobs, penalties, ...) instead of answering 400.",
    )


class ModelAccess(_Strict):
    """Model allow and deny lists; `*` matches any run of characters."""

    allow: list[ModelPattern] = Field(default_factory=lambda: ["*"])
    deny: list[ModelPattern] = Field(default_factory=list)


class Limits(_Strict):
    """Rate limits, quotas and budgets; unset means unlimited. Enforced across all gateways."""

    requests_per_minute: int | None = Field(None, ge=1)
    requests_per_day: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(
        None, ge=1, description="Prompt tokens plus max_tokens are reserved, then corrected."
    )
    concurrent_requests: int | None = Field(None, ge=1, description="Requests in flight.")
    tokens_per_day: int | None = Field(None, ge=1, description="Quota, UTC days.")
    tokens_per_month: int | None = Field(None, ge=1, description="Quota, UTC calendar months.")
    spend_per_day_usd: float | None = Field(None, gt=0, description="Budget from the price table.")
    spend_per_month_usd: float | None = Field(None, gt=0)


class Policy(_Strict):
    """What a namespace (or one of its keys, more strictly) may do.

    A key's policy narrows its namespace's: both are enforced, so the stricter one wins.
    """

    models: ModelAccess = Field(default_factory=ModelAccess)
    limits: Limits = Field(default_factory=Limits)
    max_tokens: int | None = Field(
        None, ge=1, description="Largest max_tokens a request may ask for (400 above it)."
    )
    max_prompt_tokens: int | None = Field(
        None, ge=1, description="Longest prompt, in tokens (400 above it)."
    )
    default_max_tokens: int | None = Field(
        None,
        ge=1,
        description="Completion tokens reserved for rate limits when a request sets no max_tokens.",
    )
    ip_allow: list[IPvAnyNetwork] = Field(
        default_factory=list, description="CIDRs callers must come from; empty allows any."
    )


class ApiKey(_Strict):
    """A caller credential. Only its SHA-256 is stored; see `aigw keys generate`."""

    name: Name
    key_hash: str = Field(description="'sha256:' followed by 64 hex digits.")
    prefix: str | None = Field(
        None, max_length=16, description="Non-secret start of the key, for display only."
    )
    expires_at: datetime | None = None
    disabled: bool = False
    policy: Policy | None = Field(
        None, description="Narrows the namespace policy; a key can never widen it."
    )

    @field_validator("key_hash")
    @classmethod
    def _hash_format(cls, value: str) -> str:
        if not KEY_HASH_PATTERN.match(value):
            raise ValueError("must be 'sha256:' followed by 64 lowercase hex digits")
        return value


class Namespace(_Strict):
    """A tenant: its keys and the policy they share."""

    name: Name
    description: str = ""
    policy: Policy = Field(default_factory=Policy)
    keys: list[ApiKey] = Field(default_factory=list)


class Price(_Strict):
    """What a model costs, in USD per million tokens; budgets (#4) are computed from it."""

    model: ModelName = Field(description="A public model name (or alias).")
    input_per_million: float = Field(ge=0)
    output_per_million: float = Field(ge=0)
    cached_input_per_million: float | None = Field(
        None, ge=0, description="Price of cached prompt tokens; the input price when unset."
    )


class CircuitBreakerSettings(_Strict):
    """Per target and gateway worker: when to stop sending a target traffic for a while."""

    consecutive_failures: int = Field(5, ge=1, description="Opens after this many in a row.")
    error_rate: float = Field(
        0.5, gt=0, le=1, description="...or when this share of the window's requests failed,"
    )
    window: float = Field(30.0, gt=0, description="over this many seconds,")
    min_requests: int = Field(20, ge=1, description="with at least this many requests.")
    cooldown: float = Field(
        10.0, gt=0, description="Seconds open before one probe request is let through."
    )


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


RedactPattern = Annotated[str, Field(min_length=1, max_length=1024), AfterValidator(_check_regex)]


class RequestLogSettings(_Strict):
    """What a gateway following a config center sends to its request log besides each request's
    metadata (always sent): the request bodies, only when asked, redacted before they leave."""

    bodies: bool = Field(
        False,
        description="Store each request's JSON body as the caller sent it, with secrets "
        "redacted and cut to `max_body_bytes`.",
    )
    max_body_bytes: int = Field(
        16384, ge=256, le=1024 * 1024, description="Bytes of a body kept; the rest is cut off."
    )
    redact: list[RedactPattern] = Field(
        default_factory=list,
        max_length=100,
        description="Regular expressions (Python syntax) whose matches are replaced by "
        "[REDACTED], besides the built-in ones (API keys, bearer tokens, and the values of "
        "JSON fields named like api_key, password, secret or authorization).",
    )


class GatewaySettings(_Strict):
    """Data-plane settings that are part of the configuration (and so change live)."""

    circuit_breaker: CircuitBreakerSettings = Field(default_factory=CircuitBreakerSettings)
    request_log: RequestLogSettings = Field(default_factory=RequestLogSettings)

    max_request_body_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="Larger request bodies get a 413."
    )
    trusted_proxies: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="Load balancers whose X-Forwarded-For is believed for the caller's address.",
    )


class Config(_Strict):
    """The whole configuration document."""

    version: Literal[1] = 1
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    providers: list[Provider] = Field(default_factory=list)
    models: list[Model] = Field(default_factory=list)
    namespaces: list[Namespace] = Field(default_factory=list)
    prices: list[Price] = Field(default_factory=list)

    @model_validator(mode="after")
    def _cross_references(self) -> Config:
        _unique("providers", [p.name for p in self.providers])
        _unique("namespaces", [n.name for n in self.namespaces])
        providers = {p.name for p in self.providers}
        public_names: dict[str, str] = {}
        for m_index, model in enumerate(self.models):
            for name in (model.name, *model.aliases):
                if name in public_names:
                    raise ValueError(
                        f"models[{m_index}]: model name or alias {name!r} is already used by "
                        f"model {public_names[name]!r}"
                    )
                public_names[name] = model.name
            for t_index, target in enumerate(model.targets):
                if target.provider not in providers:
                    raise ValueError(
                        f"models[{m_index}].targets[{t_index}].provider: unknown provider "
                        f"{target.provider!r} (known: {', '.join(sorted(providers)) or 'none'})"
                    )
        _unique("prices", [p.model for p in self.prices])
        for p_index, price in enumerate(self.prices):
            if price.model not in public_names:
                raise ValueError(f"prices[{p_index}].model: unknown model {price.model!r}")
        seen_hashes: dict[str, str] = {}
        for namespace in self.namespaces:
            _unique(f"namespace {namespace.name!r} keys", [k.name for k in namespace.keys])
            for key in namespace.keys:
                owner = f"{namespace.name}/{key.name}"
                if key.key_hash in seen_hashes:
                    raise ValueError(
                        f"key {owner!r} has the same key_hash as key {seen_hashes[key.key_hash]!r}"
                    )
                seen_hashes[key.key_hash] = owner
        return self


def _unique(what: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{what}: name {name!r} is used more than once")
        seen.add(name)


def canonical_document(config: Config) -> dict[str, object]:
    """The configuration as a plain document: defaults left out, secrets kept (not masked).

    This is the form that is stored, versioned, diffed and exported, so equal configurations
    always produce equal documents.
    """
    document = config.model_dump(mode="json", exclude_defaults=True)
    providers = document.get("providers")
    if isinstance(providers, list):
        for entry, provider in zip(providers, config.providers, strict=True):
            if provider.api_key is not None:
                entry["api_key"] = provider.api_key.get_secret_value()
    return document
