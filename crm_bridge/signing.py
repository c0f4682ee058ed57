"""Standard Webhooks signatures (HMAC-SHA256 scheme ``v1``), for sending and receiving.

The scheme, as the Standard Webhooks specification defines it:

- three headers: ``webhook-id`` (the message id, the same on every retry of one message),
  ``webhook-timestamp`` (integer Unix seconds of this attempt) and ``webhook-signature``;
- signed content: ``{webhook-id}.{webhook-timestamp}.{raw body}``;
- signature: ``v1,`` + base64(HMAC-SHA256(key, signed content)); several signatures (e.g. during
  a secret rotation) are separated by spaces, and one match is enough;
- secret: ``whsec_`` + base64(key);
- a receiver rejects timestamps too far from its own clock (replay protection) and compares
  signatures in constant time.

No clock reads here: ``now`` (Unix seconds) is passed in.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"
DEFAULT_TOLERANCE = 300.0
"""Seconds a timestamp may differ from the receiver's clock, either way (the spec's 5 minutes)."""


class SecretFormatError(ValueError):
    """A webhook secret is not ``whsec_`` followed by base64."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookSecret:
    """An HMAC key; its repr never shows the key."""

    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not self.key:
            raise SecretFormatError("webhook secret key is empty")

    @classmethod
    def parse(cls, text: str) -> WebhookSecret:
        """Read ``whsec_<base64>``."""
        if not text.startswith(SECRET_PREFIX):
            raise SecretFormatError(f"webhook secret must start with {SECRET_PREFIX!r}")
        try:
            key = base64.b64decode(text[len(SECRET_PREFIX) :], validate=True)
        except binascii.Error as exc:
            raise SecretFormatError(f"webhook secret is not valid base64: {exc}") from None
        return cls(key=key)

    @classmethod
    def generate(
        cls, size: int = 32, random_bytes: Callable[[int], bytes] = secrets.token_bytes
    ) -> WebhookSecret:
        """A new random key (the spec asks for 24 to 64 bytes)."""
        if not 24 <= size <= 64:
            raise ValueError(f"webhook secret size must be 24..64 bytes, got {size}")
        return cls(key=random_bytes(size))

    def serialize(self) -> str:
        """The ``whsec_<base64>`` form, for configuration and for the receiving party."""
        return SECRET_PREFIX + base64.b64encode(self.key).decode("ascii")


class VerificationFailure(enum.Enum):
    """Why a delivery was not accepted."""

    MISSING_HEADER = "missing header"
    BAD_TIMESTAMP = "timestamp is not an integer"
    TIMESTAMP_TOO_OLD = "timestamp too old"
    TIMESTAMP_TOO_NEW = "timestamp too far in the future"
    NO_SIGNATURE = "no v1 signature present"
    SIGNATURE_MISMATCH = "no signature matches"


class WebhookVerificationError(ValueError):
    """A delivery failed verification; ``failure`` says why (the receiver answers 400/401)."""

    def __init__(self, failure: VerificationFailure, detail: str) -> None:
        super().__init__(f"{failure.value}: {detail}")
        self.failure = failure
        self.detail = detail


def signed_content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    """``{id}.{timestamp}.{body}``: what the HMAC covers."""
    return f"{msg_id}.{timestamp}.".encode() + body


def sign(secret: WebhookSecret, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature."""
    # hmac.digest: the one-shot C path (no HMAC object per delivery).
    digest = hmac.digest(secret.key, signed_content(msg_id, timestamp, body), hashlib.sha256)
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def signature_headers(
    secret: WebhookSecret | Iterable[WebhookSecret], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three request headers; one signature per secret (several during rotation)."""
    keys = [secret] if isinstance(secret, WebhookSecret) else list(secret)
    if not keys:
        raise ValueError("at least one webhook secret is needed to sign")
    return {
        HEADER_ID: msg_id,
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_SIGNATURE: " ".join(sign(key, msg_id, timestamp, body) for key in keys),
    }


def verify(
    secret: WebhookSecret | Iterable[WebhookSecret],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE,
) -> str:
    """Check a received delivery; return its ``webhook-id`` or raise ``WebhookVerificationError``.

    ``headers`` is looked up case-insensitively (HTTP field names are, RFC 9110 §5.1).
    ``body`` must be the raw bytes as received, before any JSON parsing.
    """
    keys = [secret] if isinstance(secret, WebhookSecret) else list(secret)
    if not keys:
        raise ValueError("at least one webhook secret is needed to verify")
    msg_id = _header(headers, HEADER_ID)
    timestamp_text = _header(headers, HEADER_TIMESTAMP)
    signature_text = _header(headers, HEADER_SIGNATURE)

    if not timestamp_text.isascii() or not timestamp_text.isdigit():
        raise WebhookVerificationError(VerificationFailure.BAD_TIMESTAMP, repr(timestamp_text))
    timestamp = int(timestamp_text)
    if timestamp < now - tolerance:
        raise WebhookVerificationError(
            VerificationFailure.TIMESTAMP_TOO_OLD, f"{now - timestamp:.0f} s old"
        )
    if timestamp > now + tolerance:
        raise WebhookVerificationError(
            VerificationFailure.TIMESTAMP_TOO_NEW, f"{timestamp - now:.0f} s ahead"
        )

    received: list[bytes] = []
    for entry in signature_text.split(" "):
        version, sep, value = entry.partition(",")
        if sep and version == SIGNATURE_VERSION:
            try:
                received.append(base64.b64decode(value, validate=True))
            except binascii.Error:
                continue  # a malformed entry cannot match; others may
        # Other versions (e.g. asymmetric "v1a") are not ours to check.
    if not received:
        raise WebhookVerificationError(VerificationFailure.NO_SIGNATURE, signature_text[:80])

    content = signed_content(msg_id, timestamp, body)
    matched = False
    for key in keys:
        expected = hmac.new(key.key, content, hashlib.sha256).digest()
        for candidate in received:
            # Constant-time compare; keep looping so timing does not reveal which one matched.
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise WebhookVerificationError(
            VerificationFailure.SIGNATURE_MISMATCH, f"webhook-id {msg_id!r}"
        )
    return msg_id


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        for key, candidate in headers.items():
            if key.lower() == name:
                value = candidate
                break
    if value is None or value == "":
        raise WebhookVerificationError(VerificationFailure.MISSING_HEADER, name)
    return value
