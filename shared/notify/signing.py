"""Standard Webhooks signatures (https://www.standardwebhooks.com, "Signature scheme"), pure.

The secret is `whsec_` + base64 of 24-64 random bytes; the signature of a delivery is
`v1,` + base64(HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")), sent in
`webhook-signature` beside `webhook-id` (the CloudEvent id: the same on every retry, so receivers
can deduplicate) and `webhook-timestamp` (Unix seconds of this attempt, so receivers can refuse
replays). Receivers use any Standard Webhooks library, e.g. PyPI `standardwebhooks`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64


class WebhookSecretError(ValueError):
    """The secret is not `whsec_` + base64 of 24-64 bytes."""


def secret_key(secret: str) -> bytes:
    """The HMAC key inside a `whsec_...` secret; raises WebhookSecretError with the reason."""
    if not secret.startswith(SECRET_PREFIX):
        raise WebhookSecretError(f"must start with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error:
        raise WebhookSecretError(f"must be {SECRET_PREFIX} followed by base64") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise WebhookSecretError(f"must encode {MIN_SECRET_BYTES}-{MAX_SECRET_BYTES} bytes, not {len(key)}")
    return key


def sign(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for one delivery."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_headers(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, webhook_id, timestamp, body),
    }
