"""Resolve a public model name and choose the upstream target that serves the request."""

from __future__ import annotations

import random

from aigw.config.snapshot import ModelEntry, Snapshot, TargetEntry
from aigw.gateway.core.errors import ModelNotFound, UpstreamUnavailable


def resolve_model(snapshot: Snapshot, name: str) -> ModelEntry:
    """The model a public name or alias refers to, or a 404 ``model_not_found``."""
    model = snapshot.models_by_name.get(name)
    if model is None:
        raise ModelNotFound(
            f"the model '{name}' does not exist or you do not have access to it", param="model"
        )
    return model


def choose_target(model: ModelEntry) -> TargetEntry:
    """A weighted random pick within the first priority group that has any weight."""
    targets = model.targets
    if len(targets) == 1 and targets[0].weight > 0:
        return targets[0]
    for priority in sorted({t.priority for t in targets}):
        group = [t for t in targets if t.priority == priority and t.weight > 0]
        if group:
            return random.choices(group, weights=[t.weight for t in group])[0]
    raise UpstreamUnavailable(f"model '{model.name}' has no target with a positive weight")
