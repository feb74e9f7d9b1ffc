"""Enforce a namespace's policy (narrowed by its key) on a request about to be forwarded.

The checks that need no shared state run here, in this order: the caller's address, the model,
then the request's token caps. Rate limits, quotas and budgets need counters shared by every
gateway and are admitted in one round trip to the state store after these checks.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Any

from aigw.config.snapshot import KeyEntry, ModelEntry
from aigw.gateway.core.errors import InvalidRequest, PermissionDenied


def enforce_policy(
    key: KeyEntry,
    model: ModelEntry,
    body: dict[str, Any],
    client: IPv4Address | IPv6Address | None,
) -> None:
    """Raise a 403 (address, model) or 400 (caps) unless the policy lets the request through."""
    for networks in key.ip_allow:
        if client is None or not any(client in network for network in networks):
            raise PermissionDenied(
                f"requests from {client or 'an unknown address'} are not allowed for "
                f"namespace '{key.namespace}'",
                code="ip_not_allowed",
            )
    if model.name not in key.allowed_models:
        raise PermissionDenied(
            f"namespace '{key.namespace}' is not allowed to use model '{model.name}'",
            param="model",
            code="model_not_allowed",
        )
    if key.max_tokens is not None:
        for param in ("max_tokens", "max_completion_tokens"):
            requested = body.get(param)
            if isinstance(requested, int) and requested > key.max_tokens:
                raise InvalidRequest(
                    f"'{param}' is {requested}, above this key's limit of {key.max_tokens}",
                    param=param,
                    code="max_tokens_exceeded",
                )
