"""Provider credentials encrypted at rest with a master key from the environment.

Stored documents carry ``enc:v1:<Fernet token>`` in place of each provider's ``api_key``; the
config center encrypts on write and gateways decrypt when they build a snapshot. The master key
is any string (``AIGW_MASTER_KEY``); a Fernet key is derived from it with HKDF-SHA256, so an
operator can use a passphrase or ``openssl rand -base64 32`` alike.
"""

from __future__ import annotations

import base64
import copy
import secrets as _secrets
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MASTER_KEY_ENV = "AIGW_MASTER_KEY"
ENCRYPTED_PREFIX = "enc:v1:"
REDACTED = "********"


class SecretError(Exception):
    """A secret could not be decrypted (wrong master key, or a damaged value)."""


class SecretBox:
    def __init__(self, master_key: str) -> None:
        if not master_key:
            raise SecretError(f"{MASTER_KEY_ENV} is empty")
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=b"aigw-secrets", info=b"provider-credentials"
        ).derive(master_key.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def encrypt(self, value: str) -> str:
        if value.startswith(ENCRYPTED_PREFIX):
            return value
        return ENCRYPTED_PREFIX + self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, value: str) -> str:
        if not value.startswith(ENCRYPTED_PREFIX):
            return value
        try:
            return self._fernet.decrypt(value[len(ENCRYPTED_PREFIX) :].encode()).decode()
        except InvalidToken:
            raise SecretError(
                f"cannot decrypt a provider credential: is {MASTER_KEY_ENV} the key it was "
                "encrypted with?"
            ) from None

    def encrypt_document(
        self, document: dict[str, Any], previous: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Encrypt every credential, reusing ``previous``'s ciphertext for unchanged ones.

        Fernet tokens differ on every encryption; reuse keeps an unchanged credential byte-for-byte
        the same across versions, so a diff shows only real changes.
        """
        known: dict[str, str] = {}
        for provider in (previous or {}).get("providers") or []:
            value = provider.get("api_key") if isinstance(provider, dict) else None
            if isinstance(value, str) and value.startswith(ENCRYPTED_PREFIX):
                known.setdefault(self.decrypt(value), value)
        return _map_provider_keys(document, lambda v: known.get(v) or self.encrypt(v))

    def decrypt_document(self, document: dict[str, Any]) -> dict[str, Any]:
        return _map_provider_keys(document, self.decrypt)


def redact_document(document: dict[str, Any]) -> dict[str, Any]:
    """The document with every provider credential replaced by a fixed mask."""
    return _map_provider_keys(document, lambda _: REDACTED)


def master_key_from(env: dict[str, str] | Any, data_dir: Path | None) -> str:
    """The master key from the environment, else one kept in the data directory (embedded mode)."""
    key = env.get(MASTER_KEY_ENV)
    if key:
        return key
    if data_dir is None:
        raise SecretError(f"set {MASTER_KEY_ENV} to encrypt provider credentials")
    path = data_dir / "master-key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = _secrets.token_urlsafe(32)
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    return key


def _map_provider_keys(document: dict[str, Any], transform: Any) -> dict[str, Any]:
    result = copy.deepcopy(document)
    for provider in result.get("providers") or []:
        if isinstance(provider, dict) and isinstance(provider.get("api_key"), str):
            if provider["api_key"]:
                provider["api_key"] = transform(provider["api_key"])
    return result
