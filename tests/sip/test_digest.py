"""Digest authentication: the RFCs' worked examples, header parsing, stateless nonces, replays."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace

import pytest

from telephony.sip.digest import (
    Algorithm,
    AuthOutcome,
    Challenge,
    Credentials,
    DigestAuthenticator,
    DigestError,
    StoredSecret,
    answer_challenge,
    choose_challenge,
    compute_ha1,
    compute_response,
    parse_auth_params,
)

SECRET = b"0123456789abcdef0123456789abcdef"
REALM = "cxos.example"
PASSWORD = StoredSecret(password="s3cret")


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- RFC worked examples -----------------------------------------------------------------------

# RFC 2617 §3.5, as printed (folded over lines; unfolded here by the SIP parser into spaces).
RFC2617_CHALLENGE = (
    'Digest realm="testrealm@host.com",                 qop="auth,auth-int",'
    '                 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",'
    '                 opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)
RFC2617_AUTHORIZATION = (
    'Digest username="Mufasa",                 realm="testrealm@host.com",'
    '                 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",'
    '                 uri="/dir/index.html",                 qop=auth,'
    '                 nc=00000001,                 cnonce="0a4f113b",'
    '                 response="6629fae49393a05397450978507c4ef1",'
    '                 opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)
RFC2617_RESPONSE = "6629fae49393a05397450978507c4ef1"


def test_rfc2617_worked_example_by_the_formula_and_by_our_code() -> None:
    # RFC 2617 §3.2.2.1: request-digest = KD(H(A1), nonce:nc:cnonce:qop:H(A2)), KD(s, d) = H(s:d).
    ha1 = md5("Mufasa:testrealm@host.com:Circle Of Life")
    ha2 = md5("GET:/dir/index.html")
    by_formula = md5(f"{ha1}:dcd98b7102dd2f0e8b11d0f600bfb0c093:00000001:0a4f113b:auth:{ha2}")
    assert by_formula == RFC2617_RESPONSE

    assert compute_ha1(Algorithm.MD5, "Mufasa", "testrealm@host.com", "Circle Of Life") == ha1
    ours = compute_response(
        algorithm=Algorithm.MD5,
        ha1=ha1,
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        method="GET",
        uri="/dir/index.html",
        qop="auth",
        nc="00000001",
        cnonce="0a4f113b",
    )
    assert ours == RFC2617_RESPONSE


def test_rfc2617_headers_parse_and_client_reproduces_the_response() -> None:
    challenge = Challenge.parse(RFC2617_CHALLENGE)
    assert challenge.realm == "testrealm@host.com"
    assert challenge.qop == ("auth", "auth-int")
    assert challenge.algorithm is Algorithm.MD5  # absent means MD5
    assert challenge.opaque == "5ccc069c403ebaf9f0171e9517f40e41"

    sent = answer_challenge(
        challenge,
        username="Mufasa",
        password="Circle Of Life",
        method="GET",
        uri="/dir/index.html",
        cnonce="0a4f113b",
    )
    received = Credentials.parse(RFC2617_AUTHORIZATION)
    assert sent.response == received.response == RFC2617_RESPONSE
    assert (sent.nc, sent.qop, sent.cnonce, sent.opaque) == (
        received.nc,
        received.qop,
        received.cnonce,
        received.opaque,
    )
    assert Credentials.parse(str(sent)) == sent


# RFC 7616 §3.9.1 (the SHA-256 algorithm RFC 8760 brings to SIP), with its published responses.
RFC7616 = {
    "username": "Mufasa",
    "realm": "http-auth@example.org",
    "password": "Circle of Life",
    "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
}
RFC7616_SHA256_RESPONSE = "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
RFC7616_MD5_RESPONSE = "8ca523f5e9506fed4657c9700eebdbec"


@pytest.mark.parametrize(
    ("algorithm", "hash_function", "published"),
    [
        (Algorithm.SHA256, sha256, RFC7616_SHA256_RESPONSE),
        (Algorithm.MD5, md5, RFC7616_MD5_RESPONSE),
    ],
)
def test_rfc7616_example(
    algorithm: Algorithm, hash_function: Callable[[str], str], published: str
) -> None:
    h = hash_function
    ha1 = h(f"{RFC7616['username']}:{RFC7616['realm']}:{RFC7616['password']}")
    ha2 = h("GET:/dir/index.html")
    assert h(f"{ha1}:{RFC7616['nonce']}:00000001:{RFC7616['cnonce']}:auth:{ha2}") == published

    challenge = Challenge(realm=RFC7616["realm"], nonce=RFC7616["nonce"], algorithm=algorithm)
    sent = answer_challenge(
        challenge,
        username="Mufasa",
        password="Circle of Life",
        method="GET",
        uri="/dir/index.html",
        cnonce=RFC7616["cnonce"],
    )
    assert sent.response == published
    assert sent.algorithm == algorithm.value


@pytest.mark.parametrize(
    ("algorithm", "h"),
    [(Algorithm.MD5_SESS, md5), (Algorithm.SHA256_SESS, sha256)],
)
def test_sess_variants_follow_rfc2617_a1(algorithm: Algorithm, h: Callable[[str], str]) -> None:
    # RFC 2617 §3.2.2.2: A1 = H(user:realm:passwd):nonce:cnonce for the -sess algorithms.
    ha1 = h(f"{h('bob:r:pw')}:n1:c1")
    expected = h(f"{ha1}:n1:00000002:c1:auth:{h('REGISTER:sip:r')}")
    challenge = Challenge(realm="r", nonce="n1", algorithm=algorithm)
    sent = answer_challenge(
        challenge, username="bob", password="pw", method="REGISTER", uri="sip:r", cnonce="c1", nc=2
    )
    assert sent.response == expected


# --- header values ---------------------------------------------------------------------------


def test_quoted_strings_with_escapes_and_tokens() -> None:
    scheme, params = parse_auth_params(
        r'Digest username="al\"ice\\", realm="a, b=c" ,, qop=auth, NC=0000000a, uri="sip:x"'
    )
    assert scheme == "Digest"
    assert params == {
        "username": 'al"ice\\',
        "realm": "a, b=c",
        "qop": "auth",
        "nc": "0000000a",
        "uri": "sip:x",
    }


def test_credentials_serialise_and_parse_back_with_awkward_characters() -> None:
    credentials = Credentials(
        username='agent "7"\\',
        realm=REALM,
        nonce="abc",
        uri="sip:cxos.example;transport=tcp",
        response="00",
        cnonce="x,y",
        qop="auth",
        nc="00000001",
    )
    assert Credentials.parse(str(credentials)) == credentials


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ("", "missing authentication scheme"),
        ('Basic realm="x"', "scheme 'Basic' is not Digest"),
        ('Digest realm="x", realm="y", nonce="n"', "parameter 'realm' appears twice"),
        ('Digest realm="x" nonce="n"', "expected ',' at character 17"),
        ('Digest realm="unterminated', "malformed parameter at character 7"),
        ('Digest nonce="n"', "missing 'realm' parameter"),
        ('Digest realm="x", nonce="n", algorithm=SHA-512', "unsupported algorithm 'SHA-512'"),
    ],
)
def test_bad_challenges_say_why(value: str, detail: str) -> None:
    with pytest.raises(DigestError) as caught:
        Challenge.parse(value)
    assert caught.value.detail == detail


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ('Digest username="a", realm="r", nonce="n", uri="u"', "missing 'response' parameter"),
        (
            'Digest username="a", realm="r", nonce="n", uri="u", response="0", qop=auth, nc=1',
            "missing 'cnonce' parameter",
        ),
        (
            'Digest username="a", realm="r", nonce="n", uri="u", response="0", qop=auth,'
            ' cnonce="c", nc=1',
            "nc is not 8 hexadecimal digits",
        ),
    ],
)
def test_bad_credentials_say_why(value: str, detail: str) -> None:
    with pytest.raises(DigestError) as caught:
        Credentials.parse(value)
    assert caught.value.detail == detail


def test_client_takes_the_topmost_supported_challenge() -> None:
    values = [
        'Digest realm="r", nonce="n", algorithm=SHA-512-256, qop="auth"',
        'Digest realm="r", nonce="n", algorithm=SHA-256, qop="auth"',
        'Digest realm="r", nonce="n", algorithm=MD5, qop="auth"',
    ]
    assert choose_challenge(values).algorithm is Algorithm.SHA256
    with pytest.raises(DigestError, match="no usable challenge: unsupported algorithm"):
        choose_challenge(values[:1])


def test_client_refuses_auth_int_only() -> None:
    challenge = Challenge(realm="r", nonce="n", qop=("auth-int",))
    with pytest.raises(DigestError, match="no supported qop"):
        answer_challenge(challenge, username="a", password="b", method="M", uri="u", cnonce="c")


def test_secrets_stay_out_of_reprs() -> None:
    secret = StoredSecret(password="hunter2", ha1_md5="f" * 32)
    assert "hunter2" not in repr(secret) and "f" * 32 not in repr(secret)
    credentials = Credentials(username="a", realm="r", nonce="n", uri="u", response="deadbeef")
    assert "deadbeef" not in repr(credentials)
    with pytest.raises(ValueError, match="needs a password or at least one HA1"):
        StoredSecret()


# --- server side -----------------------------------------------------------------------------


def authenticator(**overrides: object) -> DigestAuthenticator:
    settings: dict[str, object] = {"realm": REALM, "secret": SECRET, "nonce_lifetime": 300.0}
    settings.update(overrides)
    return DigestAuthenticator(**settings)  # type: ignore[arg-type]


def register_credentials(
    challenge: Challenge, *, password: str = "s3cret", nc: int = 1, username: str = "1001"
) -> Credentials:
    return answer_challenge(
        challenge,
        username=username,
        password=password,
        method="REGISTER",
        uri=f"sip:{REALM}",
        cnonce="phone-cnonce",
        nc=nc,
    )


def verify(
    server: DigestAuthenticator,
    credentials: Credentials,
    *,
    secret: StoredSecret | None = PASSWORD,
    source: str = "198.51.100.20",
    now: float = 1010.0,
) -> tuple[AuthOutcome, str]:
    result = server.verify(credentials, method="REGISTER", secret=secret, source=source, now=now)
    return result.outcome, result.reason


def test_challenges_offer_sha256_first_then_md5_with_one_nonce() -> None:
    sha, md = authenticator().challenges(source="198.51.100.20", now=1000.0)
    assert (sha.algorithm, md.algorithm) == (Algorithm.SHA256, Algorithm.MD5)
    assert sha.nonce == md.nonce
    assert str(sha).startswith(f'Digest realm="{REALM}", nonce="')
    assert str(sha).endswith('algorithm=SHA-256, qop="auth"')
    assert Challenge.parse(str(md)) == md


@pytest.mark.parametrize("index", [0, 1])
def test_right_password_is_accepted_with_either_algorithm(index: int) -> None:
    server = authenticator()
    challenge = server.challenges(source="198.51.100.20", now=1000.0)[index]
    assert verify(server, register_credentials(challenge)) == (AuthOutcome.ACCEPTED, "ok")


@pytest.mark.parametrize("algorithm", [Algorithm.MD5, Algorithm.SHA256])
def test_stored_ha1_instead_of_password(algorithm: Algorithm) -> None:
    server = authenticator(algorithms=(algorithm,))
    (challenge,) = server.challenges(source="198.51.100.20", now=1000.0)
    ha1 = compute_ha1(algorithm, "1001", REALM, "s3cret")
    stored = (
        StoredSecret(ha1_md5=ha1.upper())
        if algorithm is Algorithm.MD5
        else StoredSecret(ha1_sha256=ha1)
    )
    assert verify(server, register_credentials(challenge), secret=stored)[0] is AuthOutcome.ACCEPTED
    # A hash for the other algorithm only cannot answer this one.
    other = (
        StoredSecret(ha1_sha256=ha1) if algorithm is Algorithm.MD5 else StoredSecret(ha1_md5=ha1)
    )
    assert verify(server, register_credentials(challenge), secret=other)[0] is AuthOutcome.REJECTED


def test_sess_algorithm_is_verified_when_offered() -> None:
    server = authenticator(algorithms=(Algorithm.SHA256_SESS,))
    (challenge,) = server.challenges(source="198.51.100.20", now=1000.0)
    stored = StoredSecret(ha1_sha256=compute_ha1(Algorithm.SHA256, "1001", REALM, "s3cret"))
    assert verify(server, register_credentials(challenge), secret=stored)[0] is AuthOutcome.ACCEPTED


def test_wrong_password_and_unknown_user_are_rejected() -> None:
    server = authenticator()
    challenge = server.challenges(source="198.51.100.20", now=1000.0)[0]
    assert verify(server, register_credentials(challenge, password="guess")) == (
        AuthOutcome.REJECTED,
        "wrong response",
    )
    assert verify(server, register_credentials(challenge), secret=None) == (
        AuthOutcome.REJECTED,
        "unknown user",
    )


def test_expired_nonce_is_stale_only_for_the_right_password() -> None:
    server = authenticator()
    challenge = server.challenges(source="198.51.100.20", now=1000.0)[0]
    late = 1000.0 + 301.0
    assert verify(server, register_credentials(challenge), now=late) == (
        AuthOutcome.STALE,
        "nonce expired",
    )
    assert verify(server, register_credentials(challenge, password="x"), now=late)[0] is (
        AuthOutcome.REJECTED
    )
    assert verify(server, register_credentials(challenge), now=1000.0 + 299.0)[0] is (
        AuthOutcome.ACCEPTED
    )
    stale = server.challenges(source="198.51.100.20", now=late, stale=True)[0]
    assert str(stale).endswith(", stale=true")
    assert Challenge.parse(str(stale)).stale


def test_nonce_is_bound_to_source_secret_and_realm() -> None:
    server = authenticator()
    challenge = server.challenges(source="198.51.100.20", now=1000.0)[0]
    credentials = register_credentials(challenge)
    assert verify(server, credentials, source="203.0.113.66") == (
        AuthOutcome.REJECTED,
        "nonce not issued to source",
    )
    other_secret = authenticator(secret=b"another secret, 16+ bytes")
    assert verify(other_secret, credentials)[0] is AuthOutcome.REJECTED
    forged = Challenge(realm=REALM, nonce="3e8.1.AAAAAAAAAAAAAAAAAAAAAAAA")
    assert verify(server, register_credentials(forged))[1] == "nonce not issued to source"


def test_nonce_count_must_grow() -> None:
    server = authenticator()
    challenge = server.challenges(source="198.51.100.20", now=1000.0)[0]
    assert verify(server, register_credentials(challenge, nc=1))[0] is AuthOutcome.ACCEPTED
    assert verify(server, register_credentials(challenge, nc=1)) == (
        AuthOutcome.STALE,
        "nonce count replayed",
    )
    assert verify(server, register_credentials(challenge, nc=2))[0] is AuthOutcome.ACCEPTED


def test_nonce_count_memory_is_bounded() -> None:
    server = authenticator(max_tracked_nonces=2)
    nonces = [server.challenges(source="198.51.100.20", now=1000.0 + i)[0] for i in range(3)]
    for challenge in nonces:
        assert verify(server, register_credentials(challenge), now=1005.0)[0] is (
            AuthOutcome.ACCEPTED
        )
    # The two most recent nonces are remembered; the oldest was forgotten.
    assert verify(server, register_credentials(nonces[2]), now=1005.0)[0] is AuthOutcome.STALE
    assert verify(server, register_credentials(nonces[0]), now=1005.0)[0] is (AuthOutcome.ACCEPTED)


def test_policy_rejections() -> None:
    server = authenticator()
    challenge = server.challenges(source="198.51.100.20", now=1000.0)[0]
    good = register_credentials(challenge)
    cases = {
        "algorithm not offered": replace(good, algorithm="MD5-sess"),
        "realm mismatch": replace(good, realm="elsewhere"),
        "qop=auth missing": replace(good, qop=None, nc=None),
    }
    for reason, credentials in cases.items():
        assert verify(server, credentials) == (AuthOutcome.REJECTED, reason)


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        DigestAuthenticator(realm=REALM, secret=b"short")


def test_only_wrong_answers_to_our_own_nonce_count_as_guesses() -> None:
    server = authenticator()
    challenge = server.challenges(source="198.51.100.20", now=1000.0)[0]
    results = {
        "wrong password": (register_credentials(challenge, password="x"), PASSWORD),
        "unknown user": (register_credentials(challenge), None),
        "other source": (register_credentials(challenge, password="x"), PASSWORD),
    }
    counted = {}
    for label, (credentials, secret) in results.items():
        source = "203.0.113.66" if label == "other source" else "198.51.100.20"
        result = server.verify(
            credentials, method="REGISTER", secret=secret, source=source, now=1001.0
        )
        assert result.outcome is AuthOutcome.REJECTED
        counted[label] = result.counts_as_failure
    # A spoofed source never saw the nonce: its failure must not count against that address.
    assert counted == {"wrong password": True, "unknown user": True, "other source": False}


def test_nonces_issued_in_the_same_millisecond_differ() -> None:
    server = authenticator()
    first = server.make_nonce(source="198.51.100.20", now=1000.0)
    second = server.make_nonce(source="198.51.100.20", now=1000.0)
    assert first != second
    for nonce in (first, second):
        credentials = register_credentials(Challenge(realm=REALM, nonce=nonce))
        assert verify(server, credentials)[0] is AuthOutcome.ACCEPTED
