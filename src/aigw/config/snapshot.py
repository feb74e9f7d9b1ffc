"""The compiled, immutable view of a configuration that the gateway's hot path reads.

A :class:`Snapshot` is built once per configuration version, off the request path. Everything a
request needs is a dictionary lookup away: the caller's key by its hash, the model by any of its
public names, and the set of models each key may use (wildcards already expanded). Replacing the
configuration is one reference swap, so in-flight requests keep the snapshot they started with.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from ipaddress import IPv4Network, IPv6Network

import orjson

from aigw.config.schema import (
    CircuitBreakerSettings,
    Config,
    Model,
    ModelAccess,
    Provider,
    RequestLogSettings,
    Target,
)
from aigw.state.limits import REQUEST_KINDS, LimitPlan, limit_kinds

IPNetwork = IPv4Network | IPv6Network

# The Messages API version the gateway speaks to Anthropic (a provider's headers may override it).
ANTHROPIC_VERSION = "2023-06-01"


@dataclass(frozen=True, slots=True)
class ProviderEntry:
    name: str
    type: str
    base_url: str
    # Headers sent on every upstream request: credentials and the provider's extras.
    headers: dict[str, str]
    connect_timeout: float
    read_timeout: float
    total_timeout: float | None
    count_tokens_upstream: bool = False
    first_byte_timeout: float | None = None
    health_check: HealthCheckEntry | None = None


@dataclass(frozen=True, slots=True)
class HealthCheckEntry:
    url: str
    interval: float
    timeout: float
    unhealthy_after: int


@dataclass(frozen=True, slots=True)
class TargetEntry:
    provider: ProviderEntry
    upstream_model: str
    weight: int
    priority: int
    # The route's timeouts, each falling back to the provider's (seconds).
    connect_timeout: float = 10.0
    first_byte_timeout: float = 300.0
    read_timeout: float = 300.0
    total_timeout: float | None = None

    @property
    def name(self) -> str:
        """``provider/upstream model``: what ``x-aigw-upstream`` says and health is kept by."""
        return f"{self.provider.name}/{self.upstream_model}"


@dataclass(frozen=True, slots=True)
class RoutingEntry:
    strategy: str = "weighted"
    max_attempts: int = 3
    backoff_ms: float = 25.0
    deadline: float = 30.0


@dataclass(frozen=True, slots=True)
class PriceEntry:
    """USD per million tokens."""

    input: float
    output: float
    cached_input: float

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        """What a request cost; cached prompt tokens are part of ``prompt_tokens``."""
        uncached = max(prompt_tokens - cached_tokens, 0)
        return (
            uncached * self.input
            + cached_tokens * self.cached_input
            + completion_tokens * self.output
        ) / 1_000_000


@dataclass(frozen=True, slots=True)
class ModelEntry:
    name: str
    names: tuple[str, ...]
    targets: tuple[TargetEntry, ...]
    owned_by: str
    price: PriceEntry | None = None
    default_max_tokens: int | None = None
    drop_unsupported_params: bool = False
    routing: RoutingEntry = field(default_factory=RoutingEntry)


@dataclass(frozen=True, slots=True)
class KeyEntry:
    namespace: str
    name: str
    prefix: str | None
    expires_at: datetime | None
    # Canonical names of the models this key may use: namespace policy ∩ key policy.
    allowed_models: frozenset[str]
    # Each tuple is one policy's IP allow list; the caller must match every one of them.
    ip_allow: tuple[tuple[IPNetwork, ...], ...] = ()
    max_tokens: int | None = None
    max_prompt_tokens: int | None = None
    default_max_tokens: int | None = None
    # Shared-state limits by kind (aigw.state.limits), for the namespace and for this key.
    namespace_limit_kinds: dict[str, int] = field(default_factory=dict)
    key_limit_kinds: dict[str, int] = field(default_factory=dict)
    # Those limits as a plan, built once per snapshot; a request only adds its estimates.
    limit_plan: LimitPlan | None = None

    @property
    def has_limits(self) -> bool:
        return bool(self.namespace_limit_kinds or self.key_limit_kinds)

    @property
    def counts_tokens(self) -> bool:
        """Whether admission needs the prompt's token count (token limits, budgets, a cap)."""
        kinds = self.namespace_limit_kinds.keys() | self.key_limit_kinds.keys()
        return self.max_prompt_tokens is not None or bool(kinds - REQUEST_KINDS)


@dataclass(frozen=True, slots=True)
class RequestLogEntry:
    """``gateway.request_log``: whether request bodies go to the request log, and how they are
    cut and redacted (by ``gateway/monitoring/request_log.py``, off the request path)."""

    bodies: bool = False
    max_body_bytes: int = 16384
    redact: tuple[re.Pattern[str], ...] = ()


@dataclass(frozen=True, slots=True)
class Snapshot:
    config: Config
    version: str
    keys_by_hash: dict[str, KeyEntry] = field(repr=False)
    models_by_name: dict[str, ModelEntry]
    max_request_body_bytes: int
    trusted_proxies: tuple[IPNetwork, ...] = ()
    circuit_breaker: CircuitBreakerSettings = field(default_factory=CircuitBreakerSettings)
    request_log: RequestLogEntry = field(default_factory=RequestLogEntry)

    def models_for(self, key: KeyEntry) -> list[ModelEntry]:
        """Every model entry the key may use, in configuration order."""
        seen: dict[str, ModelEntry] = {}
        for entry in self.models_by_name.values():
            if entry.name in key.allowed_models:
                seen.setdefault(entry.name, entry)
        return list(seen.values())


def build_snapshot(config: Config) -> Snapshot:
    """Compile a validated configuration into the gateway's lookup tables."""
    providers = {p.name: _provider_entry(p) for p in config.providers}
    prices = {
        p.model: PriceEntry(
            p.input_per_million,
            p.output_per_million,
            p.input_per_million
            if p.cached_input_per_million is None
            else p.cached_input_per_million,
        )
        for p in config.prices
    }
    models_by_name: dict[str, ModelEntry] = {}
    for model in config.models:
        entry = ModelEntry(
            name=model.name,
            names=(model.name, *model.aliases),
            targets=tuple(_target_entry(providers[t.provider], t, model) for t in model.targets),
            routing=RoutingEntry(
                model.routing.strategy,
                model.routing.max_attempts,
                model.routing.backoff_ms,
                model.routing.deadline,
            ),
            owned_by=model.owned_by,
            price=next((prices[n] for n in (model.name, *model.aliases) if n in prices), None),
            default_max_tokens=model.default_max_tokens,
            drop_unsupported_params=model.drop_unsupported_params,
        )
        for name in entry.names:
            models_by_name[name] = entry

    keys_by_hash: dict[str, KeyEntry] = {}
    for namespace in config.namespaces:
        namespace_models = _allowed(config.models, namespace.policy.models)
        for key in namespace.keys:
            if key.disabled:
                continue
            allowed = namespace_models
            if key.policy is not None:
                allowed = allowed & _allowed(config.models, key.policy.models)
            policies = [namespace.policy] if key.policy is None else [namespace.policy, key.policy]
            namespace_kinds: dict[str, int] = dict(limit_kinds(namespace.policy.limits))
            key_kinds: dict[str, int] = dict(limit_kinds(key.policy.limits)) if key.policy else {}
            keys_by_hash[key.key_hash.removeprefix("sha256:")] = KeyEntry(
                namespace=namespace.name,
                name=key.name,
                prefix=key.prefix,
                expires_at=key.expires_at,
                allowed_models=allowed,
                ip_allow=tuple(tuple(p.ip_allow) for p in policies if p.ip_allow),
                max_tokens=_tightest(p.max_tokens for p in policies),
                max_prompt_tokens=_tightest(p.max_prompt_tokens for p in policies),
                default_max_tokens=_tightest(p.default_max_tokens for p in policies),
                namespace_limit_kinds=namespace_kinds,
                key_limit_kinds=key_kinds,
                limit_plan=LimitPlan.for_request(
                    namespace.name,
                    key.name,
                    namespace_limits=namespace_kinds,
                    key_limits=key_kinds,
                )
                if namespace_kinds or key_kinds
                else None,
            )

    return Snapshot(
        config=config,
        version=config_digest(config),
        keys_by_hash=keys_by_hash,
        models_by_name=models_by_name,
        max_request_body_bytes=config.gateway.max_request_body_bytes,
        trusted_proxies=tuple(config.gateway.trusted_proxies),
        circuit_breaker=config.gateway.circuit_breaker,
        request_log=_request_log_entry(config.gateway.request_log),
    )


def config_digest(config: Config) -> str:
    """A short content hash identifying a configuration (shown by /readyz)."""
    document = config.model_dump(mode="json", exclude_none=True)
    return hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]


def _provider_entry(provider: Provider) -> ProviderEntry:
    # identity: a compressed upstream stream could not be relayed chunk by chunk.
    headers = {
        "Content-Type": "application/json",
        "Accept-Encoding": "identity",
        **provider.headers,
    }
    secret = provider.api_key.get_secret_value() if provider.api_key is not None else ""
    if provider.type == "anthropic":
        headers.setdefault("anthropic-version", ANTHROPIC_VERSION)
        if secret:
            headers["x-api-key"] = secret
    elif secret:
        headers["Authorization"] = f"Bearer {secret}"
    return ProviderEntry(
        name=provider.name,
        type=provider.type,
        base_url=provider.base_url,
        headers=headers,
        connect_timeout=provider.timeouts.connect,
        read_timeout=provider.timeouts.read,
        total_timeout=provider.timeouts.total,
        count_tokens_upstream=provider.count_tokens == "upstream",
        first_byte_timeout=provider.timeouts.first_byte,
        health_check=HealthCheckEntry(
            provider.base_url + provider.health_check.path,
            provider.health_check.interval,
            provider.health_check.timeout,
            provider.health_check.unhealthy_after,
        )
        if provider.health_check is not None
        else None,
    )


def _target_entry(provider: ProviderEntry, target: Target, model: Model) -> TargetEntry:
    route = model.routing.timeouts
    read = route.read or provider.read_timeout
    return TargetEntry(
        provider,
        target.model,
        target.weight,
        target.priority,
        connect_timeout=route.connect or provider.connect_timeout,
        first_byte_timeout=route.first_byte or provider.first_byte_timeout or read,
        read_timeout=read,
        total_timeout=route.total or provider.total_timeout,
    )


def _request_log_entry(settings: RequestLogSettings) -> RequestLogEntry:
    return RequestLogEntry(
        bodies=settings.bodies,
        max_body_bytes=settings.max_body_bytes,
        redact=tuple(re.compile(pattern) for pattern in settings.redact),
    )


def _tightest(values: Iterable[int | None]) -> int | None:
    """The smallest of the set values: a key can only make a cap stricter."""
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _allowed(models: list[Model], access: ModelAccess) -> frozenset[str]:
    """Canonical names of models that some name (or alias) allows and no name denies."""
    allow = _pattern(access.allow)
    deny = _pattern(access.deny)
    return frozenset(
        model.name
        for model in models
        if any(allow.match(n) for n in (model.name, *model.aliases))
        and not any(deny.match(n) for n in (model.name, *model.aliases))
    )


def _pattern(globs: list[str]) -> re.Pattern[str]:
    """One regex for a list of globs in which only '*' is special (model names contain '.')."""
    if not globs:
        return re.compile(r"(?!)")  # matches nothing
    alternatives = ("(?:" + ".*".join(map(re.escape, g.split("*"))) + ")" for g in globs)
    return re.compile("(?:" + "|".join(alternatives) + r")\Z")
