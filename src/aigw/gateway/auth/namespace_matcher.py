"""Match a request to its namespace (tenant) by the caller's API key.

The key is read from ``Authorization: Bearer``, ``api-key`` (Azure OpenAI's header) or
``x-api-key`` (Anthropic's), in that order, hashed, and looked up in the snapshot: one SHA-256
and one dictionary lookup, no I/O.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from aigw.config.snapshot import KeyEntry, Snapshot
from aigw.gateway.core.errors import AuthenticationFailed
from aigw.gateway.core.http import Scope

_KEY_HEADERS = (b"authorization", b"api-key", b"x-api-key")


def caller_key(scope: Scope) -> str | None:
    """The API key the caller presented, if any."""
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name in _KEY_HEADERS and name not in found:
            found[name] = value
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


def match_namespace(scope: Scope, snapshot: Snapshot) -> KeyEntry:
    """The key entry (and so the namespace) of the caller, or a 401."""
    key = caller_key(scope)
    if key is None:
        raise AuthenticationFailed(
            "missing API key: send it as 'Authorization: Bearer sk-...'", code="missing_api_key"
        )
    entry = snapshot.keys_by_hash.get(hashlib.sha256(key.encode()).hexdigest())
    if entry is None:
        raise AuthenticationFailed("incorrect API key provided")
    if entry.expires_at is not None and _expired(entry.expires_at):
        raise AuthenticationFailed("this API key has expired", code="expired_api_key")
    return entry


def _expired(expires_at: datetime) -> bool:
    now = datetime.now(UTC) if expires_at.tzinfo else datetime.now()
    return now >= expires_at
