"""A readable difference between two configuration documents.

Named lists (providers, models, namespaces, keys, targets) are compared item by item by name,
so a change reads ``namespaces[team].keys[ci].disabled: false → true`` rather than as a shift of
list positions. Provider credentials are compared but never shown.
"""

from __future__ import annotations

from typing import Any

from aigw.config.secrets import REDACTED

# The field that identifies the items of each named list.
_IDENTITY = {
    "providers": "name",
    "models": "name",
    "namespaces": "name",
    "keys": "name",
    "prices": "model",
}


def diff_documents(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """Changes as ``{"path", "op": added|removed|changed, "before"?, "after"?}``, in order."""
    changes: list[dict[str, Any]] = []
    _diff(before, after, "", changes)
    return changes


def _diff(before: Any, after: Any, path: str, changes: list[dict[str, Any]]) -> None:
    if before == after:
        return
    if isinstance(before, dict) and isinstance(after, dict):
        for key in list(before) + [k for k in after if k not in before]:
            child = f"{path}.{key}" if path else str(key)
            if key not in after:
                changes.append({"path": child, "op": "removed", "before": _show(key, before[key])})
            elif key not in before:
                changes.append({"path": child, "op": "added", "after": _show(key, after[key])})
            else:
                _diff_value(key, before[key], after[key], child, changes)
        return
    changes.append({"path": path, "op": "changed", "before": before, "after": after})


def _diff_value(
    key: str, before: Any, after: Any, path: str, changes: list[dict[str, Any]]
) -> None:
    identity = _IDENTITY.get(key)
    if identity and _named(before, identity) and _named(after, identity):
        old = {item[identity]: item for item in before}
        new = {item[identity]: item for item in after}
        for name in list(old) + [n for n in new if n not in old]:
            child = f"{path}[{name}]"
            if name not in new:
                changes.append({"path": child, "op": "removed", "before": _show(key, old[name])})
            elif name not in old:
                changes.append({"path": child, "op": "added", "after": _show(key, new[name])})
            else:
                _diff(old[name], new[name], child, changes)
        return
    if key == "api_key":
        if before != after:
            changes.append({"path": path, "op": "changed", "before": REDACTED, "after": REDACTED})
        return
    if isinstance(before, dict) and isinstance(after, dict):
        _diff(before, after, path, changes)
    elif before != after:
        changes.append({"path": path, "op": "changed", "before": before, "after": after})


def _named(items: Any, identity: str) -> bool:
    return isinstance(items, list) and all(isinstance(i, dict) and identity in i for i in items)


def _show(key: str, value: Any) -> Any:
    """A value as it may be shown: provider credentials masked."""
    if key == "api_key":
        return REDACTED
    if key == "providers" and isinstance(value, list):
        return [_show("provider", v) for v in value]
    if isinstance(value, dict) and "api_key" in value:
        return {**value, "api_key": REDACTED}
    return value
