"""The claim checks of a client assertion (RFC 7523 section 3) and the memory of spent ``jti``
values, on their own: ``delegation_idp.provider.client_auth`` without the token endpoint
(tests/e2e/rfc7523 drives it over HTTP)."""

from __future__ import annotations

import base64
import functools
import json
import secrets
import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st
from jwcrypto import jwk, jws

from delegation_idp import jose
from delegation_idp.models import ClientAssertionJti
from delegation_idp.provider.client_auth import (
    AssertionRefused,
    check_assertion_claims,
    client_key,
    purge_used_assertions,
    verify_client_assertion,
)
from tests.helpers import with_idp

pytestmark = pytest.mark.rfc("7523-3")


def test_purge_forgets_only_expired_assertions(db: Any) -> None:
    now = timezone.now()
    ClientAssertionJti.objects.create(client_id="c", jti="old", expires_at=now - timedelta(seconds=1))
    ClientAssertionJti.objects.create(client_id="c", jti="live", expires_at=now + timedelta(seconds=60))
    assert purge_used_assertions(now) == 1
    assert list(ClientAssertionJti.objects.values_list("jti", flat=True)) == ["live"]


OURS = frozenset({"https://idp.example.com", "https://idp.example.com/o/token/"})


@given(
    aud=st.one_of(
        st.sampled_from(sorted(OURS)),
        st.lists(st.sampled_from(sorted(OURS) + ["https://evil.example.com", "x"]), max_size=4),
        st.text(max_size=30),
    )
)
def test_audience_property(aud: Any) -> None:
    """Accepted exactly when aud is non-empty and every value names this provider."""
    values = [aud] if isinstance(aud, str) else aud
    claims = {"iss": "c", "sub": "c", "aud": aud, "exp": 1060, "jti": "j"}
    expected = bool(values) and all(v in OURS for v in values)
    try:
        checked = check_assertion_claims(
            claims, client_id="c", audiences=OURS, now=1000, leeway=0, max_lifetime=300
        )
    except AssertionRefused as refused:
        assert not expected and refused.reason == "bad_audience"
    else:
        assert expected and checked.jti == "j" and checked.expires_at == 1060


@given(lifetime=st.integers(min_value=-100, max_value=1000))
def test_lifetime_property(lifetime: int) -> None:
    """exp must lie in (now - leeway, now + max_lifetime + leeway]."""
    claims = {"iss": "c", "sub": "c", "aud": "https://idp.example.com", "exp": 1000 + lifetime, "jti": "j"}
    ok = -10 < lifetime <= 310
    try:
        check_assertion_claims(claims, client_id="c", audiences=OURS, now=1000, leeway=10, max_lifetime=300)
    except AssertionRefused:
        assert not ok
    else:
        assert ok


@given(
    iat_age=st.integers(min_value=-100, max_value=1000),
    exp_ahead=st.integers(min_value=-100, max_value=7200),
)
def test_lifetime_from_iat_property(iat_age: int, exp_ahead: int) -> None:
    """With ``iat``, an assertion is good until the earlier of ``exp`` and ``iat +
    max_lifetime`` (RFC 7523 section 3 items 4 and 6), whatever ``exp`` says beyond: its
    ``jti`` is remembered exactly that long (item 7), never longer than max_lifetime from now."""
    now, leeway, max_lifetime = 1000, 10, 300
    claims = {"iss": "c", "sub": "c", "aud": "https://idp.example.com", "jti": "j"}
    claims |= {"iat": now - iat_age, "exp": now + exp_ahead}
    good_until = min(now + exp_ahead, now - iat_age + max_lifetime)
    ok = iat_age >= -leeway and exp_ahead > -leeway and good_until + leeway > now
    try:
        checked = check_assertion_claims(
            claims, client_id="c", audiences=OURS, now=now, leeway=leeway, max_lifetime=max_lifetime
        )
    except AssertionRefused as refused:
        assert not ok
        assert refused.reason in {"expired", "not_yet_valid", "too_old"}
    else:
        assert ok
        assert checked.expires_at == good_until + leeway
        assert checked.expires_at <= now + max_lifetime + 2 * leeway


# -- which registered key verifies an assertion (RFC 7515 section 4.1.4, RFC 7517 section 4) -------


@functools.cache
def private_jwk(kind: str) -> jwk.JWK:
    """One private key of each kind, made once per test run (RSA generation is slow)."""
    if kind.startswith("RSA"):
        return jwk.JWK.generate(kty="RSA", size=int(kind[3:] or 2048))
    if kind == "Ed25519":
        return jwk.JWK.generate(kty="OKP", crv="Ed25519")
    if kind == "oct":
        return jwk.JWK.generate(kty="oct", size=256)
    return jwk.JWK.generate(kty="EC", crv=kind)


def public(kind: str, **members: Any) -> dict[str, Any]:
    """The public JWK of ``kind`` as a client registers it, with ``members`` (None drops one)."""
    key = private_jwk(kind)
    data = json.loads(key.export() if kind == "oct" else key.export_public())
    data.update(members)
    return {k: v for k, v in data.items() if v is not None}


def sign(kind: str, alg: str, claims: dict[str, Any], **header: Any) -> str:
    """A compact JWS by ``kind``'s private key, with exactly the protected header given."""
    token = jws.JWS(json.dumps(claims))
    token.add_signature(private_jwk(kind), alg=None, protected=json.dumps({"alg": alg, **header}))
    return str(token.serialize(compact=True))


def refusal(jwks: dict[str, Any], kid: str | None, alg: str) -> str:
    with pytest.raises(AssertionRefused) as refused:
        client_key(jwks, kid, alg)
    return refused.value.reason


def thumbprint(key: Any) -> str:
    return str(key.jwk.thumbprint())


@pytest.mark.rfc("7515-4.1.4")
def test_without_kid_the_one_fitting_key_verifies() -> None:
    jwks = {"keys": [public("P-256", kid="ec"), public("RSA2048", kid="rsa")]}
    assert thumbprint(client_key(jwks, None, "ES256")) == private_jwk("P-256").thumbprint()
    assert thumbprint(client_key(jwks, None, "RS256")) == private_jwk("RSA2048").thumbprint()
    assert client_key({"keys": [public("Ed25519")]}, None, "EdDSA").alg == "EdDSA"


@pytest.mark.rfc("7515-4.1.4")
def test_without_kid_two_fitting_keys_need_a_kid() -> None:
    jwks = {"keys": [public("P-256", kid="a"), public("P-256", kid="b")]}
    assert refusal(jwks, None, "ES256") == "kid_required"
    assert client_key(jwks, "b", "ES256").kid == "b"


@pytest.mark.rfc("7515-4.1.4")
def test_without_kid_a_key_of_another_type_does_not_verify() -> None:
    assert refusal({"keys": [public("P-256", kid="ec")]}, None, "RS256") == "alg_mismatch"
    assert refusal({"keys": [public("P-384")]}, None, "ES256") == "alg_mismatch"
    jwks = {"keys": [public("P-256", kid="a"), public("Ed25519", kid="b")]}
    assert refusal(jwks, None, "RS256") == "no_matching_key"


@pytest.mark.rfc("7515-4.1.4")
def test_with_a_kid_only_that_key_is_tried() -> None:
    jwks = {"keys": [public("P-256", kid="ec"), public("RSA2048", kid="rsa")]}
    assert refusal(jwks, "rsa", "ES256") == "alg_mismatch"  # though "ec" would fit
    assert refusal(jwks, "other", "ES256") == "unknown_kid"
    twice = {"keys": [public("P-256", kid="same"), public("P-384", kid="same")]}
    assert refusal(twice, "same", "ES256") == "duplicate_kid"


@pytest.mark.rfc("7517-4.4")
@pytest.mark.parametrize("alg", ["RS256", "PS256"])
def test_an_rsa_key_without_alg_verifies_rs256_and_ps256(alg: str) -> None:
    with with_idp(ALLOWED_ALGORITHMS=["ES256", "RS256", "PS256", "EdDSA"]):
        key = client_key({"keys": [public("RSA2048", kid="rsa")]}, None, alg)
    assert key.alg == alg and thumbprint(key) == private_jwk("RSA2048").thumbprint()


@pytest.mark.rfc("7517-4.4")
def test_an_algorithm_off_the_allow_list_is_not_taken_from_the_header() -> None:
    """PS256 is not on the default allow-list: an RSA key without alg does not verify it."""
    jwks = {"keys": [public("RSA2048")]}
    assert refusal(jwks, None, "PS256") == "bad_alg"
    with with_idp(ALLOWED_ALGORITHMS=["ES256", "EdDSA"]):
        assert refusal(jwks, None, "RS256") == "bad_alg"


@pytest.mark.rfc("7517-4.4")
def test_a_key_with_alg_verifies_that_alg_only() -> None:
    with with_idp(ALLOWED_ALGORITHMS=["ES256", "RS256", "PS256"]):
        jwks = {"keys": [public("RSA2048", alg="RS256")]}
        assert client_key(jwks, None, "RS256").alg == "RS256"
        assert refusal(jwks, None, "PS256") == "alg_mismatch"
        assert refusal({"keys": [public("P-256", alg="RS256")]}, None, "RS256") == "key_alg_invalid"


@pytest.mark.rfc("7518-3.3")
def test_weak_symmetric_and_encryption_keys_never_verify() -> None:
    assert refusal({"keys": [public("RSA1024")]}, None, "RS256") == "key_too_weak"
    assert refusal({"keys": [public("oct")]}, None, "RS256") == "unsupported_key"
    assert refusal({"keys": [public("P-256", use="enc")]}, None, "ES256") == "key_not_for_signing"
    assert refusal({"keys": []}, None, "ES256") == "no_keys"
    assert refusal({"keys": [public("P-256", x="AAAA")]}, None, "ES256") == "unloadable_key"


KINDS = {"P-256": {"ES256"}, "P-384": {"ES384"}, "RSA2048": {"RS256", "PS256"}, "Ed25519": {"EdDSA"}}
ALLOWED = ["ES256", "ES384", "RS256", "PS256", "EdDSA"]


@given(
    keys=st.lists(
        st.tuples(st.sampled_from(sorted(KINDS)), st.sampled_from([None, *ALLOWED]), st.booleans()),
        max_size=4,
    ),
    alg=st.sampled_from(ALLOWED),
)
def test_the_key_without_kid_property(keys: list[tuple[str, str | None, bool]], alg: str) -> None:
    """Without a kid, a key is chosen exactly when one key fits: its alg is the header's, or it
    has none and its type signs with the header's; never a key that does not fit."""
    jwks = {"keys": [public(kind, alg=declared, use="sig" if sig else None) for kind, declared, sig in keys]}
    fits = [kind for kind, declared, _ in keys if alg in KINDS[kind] and declared in (None, alg)]
    with with_idp(ALLOWED_ALGORITHMS=ALLOWED):
        try:
            key = client_key(jwks, None, alg)
        except AssertionRefused as refused:
            assert len(fits) != 1
            if fits:
                assert refused.reason == "kid_required"
            else:
                assert refused.reason in {"no_keys", "no_matching_key", "alg_mismatch", "key_alg_invalid"}
        else:
            assert len(fits) == 1
            assert key.alg == alg and thumbprint(key) == private_jwk(fits[0]).thumbprint()


def test_a_token_of_our_own_keys_still_needs_a_kid() -> None:
    """Only client assertions may leave kid out: the default of the JOSE layer is unchanged."""
    token = sign("P-256", "ES256", {"sub": "x"})
    with pytest.raises(jose.JoseError) as refused:
        jose.peek_header(
            token, algorithms=["ES256"], max_bytes=8192, max_header_bytes=1024, expected_typ=None
        )
    assert refused.value.reason == "bad_kid"


# -- the whole check of an assertion --------------------------------------------------------------


def claims_for(client_id: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": "http://testserver", "iat": now}
    claims |= {"exp": now + 60, "jti": secrets.token_urlsafe(12), **overrides}
    return claims


@pytest.mark.rfc("7515-4.1.4")
def test_an_assertion_without_kid_authenticates(db: Any) -> None:
    jwks = {"keys": [public("P-256", kid="k1", use="sig")]}
    verify_client_assertion(sign("P-256", "ES256", claims_for("c")), "c", jwks)
    assert ClientAssertionJti.objects.filter(client_id="c").count() == 1


@pytest.mark.rfc("7523-3")
@pytest.mark.parametrize("alg", ["RS256", "PS256"])
def test_an_rsa_key_without_alg_authenticates_rs256_and_ps256_assertions(db: Any, alg: str) -> None:
    jwks = {"keys": [public("RSA2048", kid="r1")]}
    with with_idp(ALLOWED_ALGORITHMS=["ES256", "RS256", "PS256"]):
        verify_client_assertion(sign("RSA2048", alg, claims_for("c")), "c", jwks)
        verify_client_assertion(sign("RSA2048", alg, claims_for("c"), kid="r1"), "c", jwks)


@pytest.mark.rfc("7523-3")
@pytest.mark.parametrize(
    ("header_alg", "registered", "reason"),
    [
        ("ES256", public("P-256", kid="a"), "kid_required"),  # two keys, no kid
        ("RS256", public("P-256", kid="b"), "no_matching_key"),
        ("HS256", public("P-256", kid="a"), "bad_alg"),
        ("none", public("P-256", kid="a"), "bad_alg"),
    ],
)
def test_refusals_name_their_reason(db: Any, header_alg: str, registered: Any, reason: str) -> None:
    jwks = {"keys": [public("P-256", kid="a0"), registered]}
    claims = claims_for("c")
    token = sign("P-256", "ES256", claims) if header_alg == "ES256" else _unsigned(header_alg, claims)
    with pytest.raises(AssertionRefused) as refused:
        verify_client_assertion(token, "c", jwks)
    assert refused.value.reason == reason
    assert not ClientAssertionJti.objects.exists()


def _unsigned(alg: str, claims: dict[str, Any]) -> str:
    """A compact token with a header of ``alg`` and a junk signature (never verified)."""

    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': alg})}.{b64(claims)}.c2ln"
