"""RS256 (RFC 9068 section 4 requires resource servers to accept it) and EdDSA end to end."""

from __future__ import annotations

import time

import pytest

from delegation_idp import jose
from delegation_idp.models import SigningKey
from delegation_idp.provider import keys, rotation
from tests.helpers import decode


@pytest.mark.django_db
@pytest.mark.rfc("9068-4")
@pytest.mark.parametrize("alg", ["RS256", "EdDSA", "ES256"])
def test_chain_signed_and_verified_with(alg, idp, client, cast, issue_user_token, exchange, introspect):
    idp(SIGNING_ALGORITHM=alg)
    SigningKey.objects.all().delete()  # a site set up with this algorithm from the start
    keys.keyset.invalidate()
    assert keys.ensure_current_key().alg == alg
    tokens = [issue_user_token()]
    for name, target in (
        ("agent1", cast["agent2"].uri),
        ("agent2", cast["mcp-server1"].uri),
        ("mcp-server1", cast.resource_server),
    ):
        response = exchange(name, tokens[-1], target)
        assert response.status_code == 200, response.content
        tokens.append(response.json()["access_token"])
    published = {k["kid"]: jose.public_key(k) for k in client.get("/.well-known/jwks.json").json()["keys"]}
    for token, audience in zip(
        tokens, [cast["agent1"].uri, cast["agent2"].uri, cast["mcp-server1"].uri, cast.resource_server]
    ):
        header, claims = jose.verify(
            token,
            published.get,
            algorithms=[alg],
            max_bytes=8192,
            max_header_bytes=1024,
            max_json_depth=16,
        )
        assert header["alg"] == alg
        jose.validate_claims(claims, issuer="http://testserver", now=time.time(), leeway=0, audience=audience)
    assert introspect(tokens[1], "agent2")["active"] is True


@pytest.mark.django_db
def test_rotation_to_another_algorithm_keeps_old_tokens_working(clock, idp, cast, issue_user_token, exchange):
    old = issue_user_token()
    assert decode(old)[0]["alg"] == "ES256"
    idp(SIGNING_ALGORITHM="RS256")
    rotation.rotate_keys(force=True)
    clock.advance(300)
    assert SigningKey.objects.get(kid=rotation.rotate_keys().promoted).alg == "RS256"
    response = exchange("agent1", old, cast["agent2"].uri)
    assert response.status_code == 200, response.content
    assert decode(response.json()["access_token"])[0]["alg"] == "RS256"


def _key(alg: str) -> jose.SigningKey:
    return jose.generate_key(alg)


def _verify(token: str, key: jose.SigningKey) -> tuple[dict, dict]:
    return jose.verify(
        token,
        {key.kid: key}.get,
        algorithms=[key.alg],
        max_bytes=8192,
        max_header_bytes=1024,
        max_json_depth=16,
    )


@pytest.mark.rfc("7515-7.1")
@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
def test_tokens_are_standard_compact_jws_both_ways(alg: str) -> None:
    """Signed through jwcrypto's JWS core, our tokens verify with its full JWS object, and
    tokens made by the full JWS object verify here."""
    import json

    from jwcrypto import jws

    key = _key(alg)
    token = jose.sign({"sub": "u", "n": 1}, key)
    theirs = jws.JWS()
    theirs.deserialize(token)
    theirs.verify(key.jwk, alg=alg)
    assert json.loads(theirs.payload) == {"sub": "u", "n": 1}

    made = jws.JWS(json.dumps({"sub": "v"}).encode())
    made.add_signature(key.jwk, alg=alg, protected=json.dumps({"alg": alg, "kid": key.kid, "typ": "at+jwt"}))
    assert _verify(made.serialize(compact=True), key)[1] == {"sub": "v"}


def _flip_trailing_bits(segment: str) -> str:
    """The same bytes under a non-canonical base64url spelling (unused low bits set)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    unused = {2: 4, 3: 2}.get(len(segment) % 4, 0)  # bits of the last character that carry nothing
    assert unused, "segment length has no spare bits"
    last = alphabet.index(segment[-1])
    return segment[:-1] + alphabet[last | ((1 << unused) - 1)]


@pytest.mark.rfc("7515-2")
@pytest.mark.parametrize("part", [0, 1])
def test_non_canonical_base64url_does_not_verify(part: int) -> None:
    key = _key("ES256")
    for extra in range(4):  # find claims whose segment lengths leave spare bits
        token = jose.sign({"sub": "u", "pad": "x" * extra}, key)
        segments = token.split(".")
        if len(segments[part]) % 4 in (2, 3):
            break
    _verify(token, key)
    segments[part] = _flip_trailing_bits(segments[part])
    with pytest.raises(jose.JoseError):
        _verify(".".join(segments), key)


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_generated_kids_never_begin_with_a_dash(alg):
    """A thumbprint begins with ``-`` once in 64 keys; such a kid would read as an option to
    ``manage.py revoke_key KID``. In 1,000 keys that happens with near certainty."""
    kids = [jose.generate_key(alg).kid for _ in range(1000)]
    assert not [kid for kid in kids if kid.startswith("-")]
    assert len(set(kids)) == len(kids)
