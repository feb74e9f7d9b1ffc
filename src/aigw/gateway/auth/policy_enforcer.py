"""Enforce a namespace's policy (narrowed by its key) on a request about to be forwarded.

Today the policy is model access; rate limits, token quotas and budgets join here as further
checks of the same shape.
"""

from __future__ import annotations

from aigw.config.snapshot import KeyEntry, ModelEntry
from aigw.gateway.core.errors import PermissionDenied


def enforce_policy(key: KeyEntry, model: ModelEntry) -> None:
    """Raise a 403 unless the key's namespace (and the key itself) may use the model."""
    if model.name not in key.allowed_models:
        raise PermissionDenied(
            f"namespace '{key.namespace}' is not allowed to use model '{model.name}'",
            param="model",
            code="model_not_allowed",
        )
