"""Match a request to its namespace (tenant) by the caller's API key.

The key is read from ``Authorization: Bearer``, ``api-key`` (Azure OpenAI's header) or
``x-api-key`` (Anthropic's), in that order, hashed, and looked up in the snapshot: one SHA-256
and one dictionary lookup, no I/O. The key decides the namespace.

A caller may also *name* the namespace, to make sure a request lands where it means it to (a
platform that routes many teams' traffic, a key pasted into the wrong service):

1. a path prefix, ``/ns/{namespace}/v1/...`` (the gateway serves the rest of the path as usual);
2. else the header ``x-aigw-namespace``.

Either way the key must belong to that namespace: naming one never grants access to it. A name
that is not the key's namespace (including one that does not exist, which is not told apart, so
namespaces cannot be probed) is a 403 ``namespace_mismatch``; a path prefix and a header that
disagree are a 400. Checks run in this order: key present (401), key known (401), key not
expired (401), named namespace (403).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from aigw.config.snapshot import KeyEntry, Snapshot
from aigw.gateway.core.errors import AuthenticationFailed, InvalidRequest, PermissionDenied
from aigw.gateway.core.http import Scope

_KEY_HEADERS = (b"authorization", b"api-key", b"x-api-key")
NAMESPACE_HEADER = b"x-aigw-namespace"
_WANTED = frozenset((*_KEY_HEADERS, NAMESPACE_HEADER))


def _credentials(scope: Scope) -> dict[bytes, bytes]:
    """The key headers and the namespace header, first value of each, in one pass."""
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name in _WANTED and name not in found:
            found[name] = value
    return found


def caller_key(scope: Scope, found: dict[bytes, bytes] | None = None) -> str | None:
    """The API key the caller presented, if any."""
    if found is None:
        found = _credentials(scope)
    bearer = found.get(b"authorization")
    if bearer is not None:
        scheme, _, token = bearer.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    for name in _KEY_HEADERS[1:]:
        value = found.get(name)
        if value:
            return value.decode("latin-1").strip()
    return None


NAMESPACE_PREFIX = "/ns/"


def split_namespace_path(path: str) -> tuple[str | None, str]:
    """``/ns/team/v1/chat/completions`` → ``("team", "/v1/chat/completions")``; other paths
    are returned as they are, with no namespace."""
    if not path.startswith(NAMESPACE_PREFIX):
        return None, path
    name, slash, rest = path[len(NAMESPACE_PREFIX) :].partition("/")
    return name, slash + rest


def match_namespace(
    scope: Scope, snapshot: Snapshot, path_namespace: str | None = None
) -> KeyEntry:
    """The key entry (and so the namespace) of the caller: a 401 without a valid key, a 403 if
    the caller named another namespace (``path_namespace`` or the header)."""
    found = _credentials(scope)
    key = caller_key(scope, found)
    if key is None:
        raise AuthenticationFailed(
            "missing API key: send it as 'Authorization: Bearer sk-...'", code="missing_api_key"
        )
    entry = snapshot.keys_by_hash.get(hashlib.sha256(key.encode()).hexdigest())
    if entry is None:
        raise AuthenticationFailed("incorrect API key provided")
    if entry.expires_at is not None and _expired(entry.expires_at):
        raise AuthenticationFailed("this API key has expired", code="expired_api_key")
    named = _named_namespace(found.get(NAMESPACE_HEADER), path_namespace)
    if named is not None and named != entry.namespace:
        raise PermissionDenied(
            f"this API key does not belong to namespace '{named}'", code="namespace_mismatch"
        )
    return entry


def _named_namespace(raw: bytes | None, path_namespace: str | None) -> str | None:
    named = raw.decode("latin-1").strip() if raw is not None else None
    if path_namespace is not None:
        if named and named != path_namespace:
            raise InvalidRequest(
                f"the path names namespace '{path_namespace}' and the {NAMESPACE_HEADER.decode()}"
                f" header '{named}'; name one, or the same in both",
                code="namespace_conflict",
            )
        return path_namespace
    return named or None


def _expired(expires_at: datetime) -> bool:
    now = datetime.now(UTC) if expires_at.tzinfo else datetime.now()
    return now >= expires_at
