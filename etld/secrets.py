"""Integration secrets: AES-GCM at rest, or an environment variable named in the config.

A credential stored through the API is encrypted with a key derived from
`ETLD_SECRET_KEY`, with the tenant and integration ids as associated data, so a
ciphertext copied onto another integration's row does not decrypt. Integrations
declared in etld.toml never store a secret: they name the variable it is read from.
"""

from __future__ import annotations

import hashlib
import os
import secrets as _random
from collections.abc import Mapping
from typing import Any

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from etld.errors import EtldError, StartupError

_VERSION = b"\x01"
_NONCE_BYTES = 12


class SecretError(EtldError):
    """A secret cannot be stored or read (no key, wrong key, missing variable)."""


def _key(secret_key: str) -> bytes:
    if len(secret_key) < 16:
        raise SecretError(
            "ETLD_SECRET_KEY must be set to at least 16 characters to store credentials"
        )
    # The configured key is a passphrase of any length; AES-256 needs exactly 32 bytes.
    return hashlib.sha256(b"etld-credentials:" + secret_key.encode()).digest()


def _aad(tenant_id: int, integration_id: int) -> bytes:
    return f"etld:{tenant_id}:{integration_id}".encode()


def encrypt_secret(secret_key: str, tenant_id: int, integration_id: int, plaintext: str) -> bytes:
    nonce = _random.token_bytes(_NONCE_BYTES)
    sealed = AESGCM(_key(secret_key)).encrypt(
        nonce, plaintext.encode(), _aad(tenant_id, integration_id)
    )
    return _VERSION + nonce + sealed


def decrypt_secret(secret_key: str, tenant_id: int, integration_id: int, blob: bytes) -> str:
    if not blob or blob[:1] != _VERSION:
        raise SecretError("stored credentials are in an unknown format")
    nonce, sealed = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
    try:
        plain = AESGCM(_key(secret_key)).decrypt(nonce, sealed, _aad(tenant_id, integration_id))
    except InvalidTag:
        raise SecretError(
            "stored credentials do not decrypt: ETLD_SECRET_KEY differs from the one they were "
            "saved with, or the row was tampered with"
        ) from None
    return plain.decode()


def hint(plaintext: str) -> str:
    """What the UI may show of a secret: its last 4 characters."""
    return "…" + plaintext[-4:] if len(plaintext) > 4 else "…"


def integration_secret(
    *,
    tenant_id: int,
    integration_id: int,
    settings: Mapping[str, Any],
    credentials: bytes | None,
    secret_key: str,
    env: Mapping[str, str] | None = None,
) -> str | None:
    """The integration's token: from `settings.token_env`, else decrypted from the row."""
    env = os.environ if env is None else env
    token_env = settings.get("token_env")
    if token_env:
        value = env.get(str(token_env))
        if not value:
            raise SecretError(f"environment variable {token_env} is not set")
        return value
    if credentials:
        return decrypt_secret(secret_key, tenant_id, integration_id, credentials)
    return None


async def require_secret_key(conn: asyncpg.Connection, secret_key: str) -> None:
    """Refuse to start without a key when the database holds encrypted secrets.

    Without the key every run of such an integration would fail at its first call; the
    operator is better told at once, in one line, than by a stream of dead letters.
    """
    if secret_key:
        return
    try:
        sealed = await conn.fetchval(
            "SELECT count(*) FROM integrations"
            " WHERE credentials IS NOT NULL OR webhook_secret IS NOT NULL"
        )
    except asyncpg.UndefinedTableError:
        return  # a database not migrated yet holds no secrets
    if sealed:
        raise StartupError(
            f"ETLD_SECRET_KEY is not set, but {sealed} integration(s) store encrypted "
            "credentials: set it to the key they were saved with"
        )
