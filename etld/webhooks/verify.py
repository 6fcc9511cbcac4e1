"""Webhook secrets and the proofs a delivery must carry.

Each integration has its own secret: named by `settings.webhook_secret_env` (an environment
variable, for integrations declared in etld.toml), or stored sealed in
`integrations.webhook_secret` with the same AES-GCM scheme as credentials. The stored form
is tagged, so a credentials ciphertext copied into the column does not pass for a secret.

GitHub signs every delivery: `X-Hub-Signature-256: sha256=<HMAC-SHA256 of the raw body>`.
Jira Cloud admin webhooks can sign the same way (`X-Hub-Signature`); otherwise a Jira webhook
URL carries the secret as `?secret=...`, or the caller sends `Authorization: Bearer ...`.
Every comparison is constant-time, and a missing secret refuses everything.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from typing import Any

from etld.secrets import SecretError, decrypt_secret, encrypt_secret

_TAG = "etld-webhook:"
MIN_SECRET_LENGTH = 16


def seal_webhook_secret(secret_key: str, tenant_id: int, integration_id: int, secret: str) -> bytes:
    """The stored form of a webhook secret (see `integrations.webhook_secret`)."""
    if len(secret) < MIN_SECRET_LENGTH:
        raise SecretError(f"a webhook secret needs at least {MIN_SECRET_LENGTH} characters")
    return encrypt_secret(secret_key, tenant_id, integration_id, _TAG + secret)


def webhook_secret(
    integration: Mapping[str, Any], secret_key: str, env: Mapping[str, str] | None = None
) -> str | None:
    """The integration's webhook secret, or None when it has none (or it cannot be read)."""
    env = os.environ if env is None else env
    settings = integration["settings"] or {}
    name = settings.get("webhook_secret_env")
    if name:
        value = env.get(str(name))
        return value if value and len(value) >= MIN_SECRET_LENGTH else None
    sealed = integration["webhook_secret"]
    if not sealed:
        return None
    try:
        plain = decrypt_secret(secret_key, integration["tenant_id"], integration["id"], sealed)
    except SecretError:
        return None
    return plain.removeprefix(_TAG) if plain.startswith(_TAG) else None


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """`sha256=<hex>` over the raw body, compared in constant time."""
    if not header:
        return False
    return hmac.compare_digest(header.strip().lower().encode(), signature(secret, body).encode())


def github_ok(secret: str, body: bytes, headers: Mapping[str, str]) -> bool:
    return signature_ok(secret, body, headers.get("X-Hub-Signature-256"))


def jira_ok(secret: str, body: bytes, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
    """A signature if one is sent, else the secret as a bearer token or `?secret=`."""
    if "X-Hub-Signature" in headers:
        return signature_ok(secret, body, headers.get("X-Hub-Signature"))
    provided = query.get("secret")
    header = headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        provided = token.strip() if scheme.lower() == "bearer" else None
    if not provided:
        return False
    return hmac.compare_digest(provided.encode(), secret.encode())
