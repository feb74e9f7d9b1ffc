"""API keys: generation, hashing and display prefixes.

Keys are 256-bit random secrets, so a plain SHA-256 is a safe one-way store (no dictionary attack
is possible) and lets the gateway find a key with one dictionary lookup. Only the hash and a short
non-secret prefix ever leave this module.
"""

from __future__ import annotations

import hashlib
import re
import secrets

KEY_PREFIX = "sk-aigw-"
KEY_HASH_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}$")
DISPLAY_PREFIX_LENGTH = 12


def generate_key() -> str:
    """A new caller key, e.g. ``sk-aigw-3q7...`` (43 random URL-safe characters)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The stored form of a key: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    """The non-secret start of a key, shown in lists and logs."""
    return key[:DISPLAY_PREFIX_LENGTH]
