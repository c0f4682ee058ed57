"""Standard Webhooks signing and verification."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from crm_bridge.signing import (
    SecretFormatError,
    VerificationFailure,
    WebhookSecret,
    WebhookVerificationError,
    sign,
    signature_headers,
    verify,
)

# The worked example of the Standard Webhooks specification.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

BODY = '{"type":"call.ended","data":{"call_id":"c-1","caller":"Zoë"}}'.encode()
NOW = 1_714_564_800


def reference_signature(secret_text: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The scheme written out from its definition, independently of the module under test."""
    key = base64.b64decode(secret_text.removeprefix("whsec_"))
    content = msg_id.encode() + b"." + str(timestamp).encode() + b"." + body
    return "v1," + base64.b64encode(hmac.digest(key, content, "sha256")).decode()


def test_matches_the_specification_example() -> None:
    secret = WebhookSecret.parse(SPEC_SECRET)
    assert sign(secret, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    assert reference_signature(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_headers_match_an_independent_computation_and_verify() -> None:
    secret = WebhookSecret(key=hashlib.sha256(b"crm-test").digest())
    headers = signature_headers(secret, "0190e1c4-5a00-7abc-8def-0123456789ab", NOW, BODY)
    assert headers == {
        "webhook-id": "0190e1c4-5a00-7abc-8def-0123456789ab",
        "webhook-timestamp": str(NOW),
        "webhook-signature": reference_signature(
            secret.serialize(), "0190e1c4-5a00-7abc-8def-0123456789ab", NOW, BODY
        ),
    }
    assert verify(secret, headers, BODY, now=NOW + 2) == "0190e1c4-5a00-7abc-8def-0123456789ab"


def test_header_names_are_case_insensitive() -> None:
    secret = WebhookSecret.parse(SPEC_SECRET)
    headers = {
        "Webhook-Id": SPEC_ID,
        "Webhook-Timestamp": str(SPEC_TIMESTAMP),
        "Webhook-Signature": SPEC_SIGNATURE,
    }
    assert verify(secret, headers, SPEC_BODY, now=SPEC_TIMESTAMP) == SPEC_ID


def test_any_one_of_several_signatures_is_enough() -> None:
    old, new = WebhookSecret(key=b"o" * 32), WebhookSecret(key=b"n" * 32)
    headers = signature_headers([old, new], "msg_1", NOW, BODY)
    assert headers["webhook-signature"].count("v1,") == 2
    # A receiver that knows only one of the secrets accepts the delivery during rotation.
    assert verify(new, headers, BODY, now=NOW) == "msg_1"
    assert verify(old, headers, BODY, now=NOW) == "msg_1"
    # Unknown schemes and malformed entries are skipped, not fatal.
    headers["webhook-signature"] = "v1a,AAAA v1,***notbase64 " + sign(new, "msg_1", NOW, BODY)
    assert verify(new, headers, BODY, now=NOW) == "msg_1"


def good_headers(secret: WebhookSecret) -> dict[str, str]:
    return signature_headers(secret, "msg_1", NOW, BODY)


def failure_of(secret: WebhookSecret, headers: dict[str, str], body: bytes, now: float) -> object:
    with pytest.raises(WebhookVerificationError) as excinfo:
        verify(secret, headers, body, now=now)
    return excinfo.value.failure


def test_tampered_body_is_rejected() -> None:
    secret = WebhookSecret(key=b"k" * 32)
    tampered = BODY.replace(b"c-1", b"c-2")
    assert failure_of(secret, good_headers(secret), tampered, NOW) is (
        VerificationFailure.SIGNATURE_MISMATCH
    )


def test_tampered_id_or_timestamp_is_rejected() -> None:
    secret = WebhookSecret(key=b"k" * 32)
    headers = good_headers(secret) | {"webhook-id": "msg_2"}
    assert failure_of(secret, headers, BODY, NOW) is VerificationFailure.SIGNATURE_MISMATCH
    headers = good_headers(secret) | {"webhook-timestamp": str(NOW + 1)}
    assert failure_of(secret, headers, BODY, NOW) is VerificationFailure.SIGNATURE_MISMATCH


def test_wrong_secret_is_rejected() -> None:
    headers = good_headers(WebhookSecret(key=b"k" * 32))
    assert failure_of(WebhookSecret(key=b"x" * 32), headers, BODY, NOW) is (
        VerificationFailure.SIGNATURE_MISMATCH
    )


def test_timestamps_outside_the_tolerance_window_are_rejected() -> None:
    secret = WebhookSecret(key=b"k" * 32)
    headers = good_headers(secret)
    assert verify(secret, headers, BODY, now=NOW + 300) == "msg_1"
    assert verify(secret, headers, BODY, now=NOW - 300) == "msg_1"
    assert failure_of(secret, headers, BODY, NOW + 301) is VerificationFailure.TIMESTAMP_TOO_OLD
    assert failure_of(secret, headers, BODY, NOW - 301) is VerificationFailure.TIMESTAMP_TOO_NEW
    with pytest.raises(WebhookVerificationError):
        verify(secret, headers, BODY, now=NOW + 31, tolerance=30)


@pytest.mark.parametrize(
    ("change", "failure"),
    [
        ({"webhook-timestamp": "17e8"}, VerificationFailure.BAD_TIMESTAMP),
        ({"webhook-timestamp": "-5"}, VerificationFailure.BAD_TIMESTAMP),
        ({"webhook-signature": "v2,abc"}, VerificationFailure.NO_SIGNATURE),
        ({"webhook-signature": ""}, VerificationFailure.MISSING_HEADER),
    ],
)
def test_malformed_headers_are_rejected_with_their_reason(
    change: dict[str, str], failure: VerificationFailure
) -> None:
    secret = WebhookSecret(key=b"k" * 32)
    assert failure_of(secret, good_headers(secret) | change, BODY, NOW) is failure


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_headers_are_named(missing: str) -> None:
    secret = WebhookSecret(key=b"k" * 32)
    headers = good_headers(secret)
    del headers[missing]
    with pytest.raises(WebhookVerificationError, match=missing) as excinfo:
        verify(secret, headers, BODY, now=NOW)
    assert excinfo.value.failure is VerificationFailure.MISSING_HEADER


def test_secrets_round_trip_and_never_show_in_repr() -> None:
    secret = WebhookSecret.generate(random_bytes=lambda n: bytes(range(n)))
    assert len(secret.key) == 32
    assert WebhookSecret.parse(secret.serialize()) == secret
    assert secret.serialize() not in repr(secret)
    assert "key" not in repr(secret)


@pytest.mark.parametrize(
    "text", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!", "whsec_"]
)
def test_malformed_secrets_are_refused(text: str) -> None:
    with pytest.raises(SecretFormatError):
        WebhookSecret.parse(text)
