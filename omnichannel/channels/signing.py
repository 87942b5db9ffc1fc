"""Webhook signatures of the SMS gateway: HMAC-SHA256 over ``<timestamp>.<raw body>``.

The gateway sends ``X-Signature-Timestamp`` (Unix seconds) and ``X-Signature`` (``sha256=<hex>``). The
timestamp is inside the MAC, and a request older (or newer) than the tolerance is refused, so a captured
request cannot be replayed later; message ids make a replay within the window a no-op.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from core.errors import Forbidden

TIMESTAMP_HEADER = "X-Signature-Timestamp"
SIGNATURE_HEADER = "X-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str | None,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    *,
    tolerance_seconds: int,
    now: float | None = None,
) -> None:
    """Return if the signature is good; ``Forbidden`` with a stable code otherwise."""
    if secret is None:
        raise Forbidden(
            "no webhook secret is configured (HUILIU_SMS_WEBHOOK_SECRET)", code="webhook_disabled"
        )
    if not timestamp or not signature:
        raise Forbidden(
            f"{TIMESTAMP_HEADER} and {SIGNATURE_HEADER} headers are required", code="signature_missing"
        )
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise Forbidden(f"{TIMESTAMP_HEADER} is not a Unix time", code="signature_invalid") from None
    if abs((time.time() if now is None else now) - sent_at) > tolerance_seconds:
        raise Forbidden(
            f"the request is older than {tolerance_seconds} s (or from the future)", code="signature_expired"
        )
    if not hmac.compare_digest(sign(secret, sent_at, body), signature):
        raise Forbidden("the signature does not match the body", code="signature_invalid")
