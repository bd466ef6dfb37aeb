"""private_key_jwt from client libraries other than this project's (RFC 7523 section 2.2).

The provider's own tests sign assertions with ``delegation_idp.jose``; here the assertion, the
key and its published JWK come from independent implementations, as they would from an
agent written by someone else: PyJWT (signing with keys from ``cryptography``) and Authlib's
``PrivateKeyJWT`` client authentication. The agent's public key is registered in its party's
``jwks``; the token request is an RFC 8693 exchange.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

import httpx
import pytest

from delegation_idp import TOKEN_EXCHANGE_GRANT
from tests.conftest import ACCESS_TOKEN_TYPE
from tests.helpers import decode

pytestmark = pytest.mark.rfc("7523-2.2")

TOKEN_URL = "http://testserver/o/token/"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def register_public_key(cast: Any, jwk: dict[str, Any]) -> None:
    """agent1 publishes ``jwk`` as its only key (what an administrator or registration does)."""
    from delegation_idp.models import Party

    party = Party.objects.get(uri=cast["agent1"].uri)
    party.jwks = {"keys": [jwk]}
    party.save()


def exchange_form(cast: Any, subject_token: str) -> dict[str, str]:
    return {
        "grant_type": TOKEN_EXCHANGE_GRANT,
        "subject_token": subject_token,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        "audience": cast["agent2"].uri,
    }


def assert_issued_to_agent1(cast: Any, access_token: str) -> None:
    claims = decode(access_token)[1]
    assert claims["client_id"] == cast["agent1"].client_id
    assert claims["aud"] == cast["agent2"].uri
    assert claims["act"] == {"sub": cast["agent1"].uri}


# -- PyJWT ---------------------------------------------------------------------------------------


def _pyjwt_key(alg: str) -> tuple[Any, dict[str, Any]]:
    """A private key made by ``cryptography`` and its public JWK as PyJWT writes it. An RSA
    JWK names its algorithm (RSA keys serve several); EC and OKP keys say it by their curve."""
    jwt = pytest.importorskip("jwt", reason="PyJWT is not installed (it comes with the mcp extra)")
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if alg == "ES256":
        private: Any = ec.generate_private_key(ec.SECP256R1())
    elif alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    algorithm = jwt.get_algorithm_by_name(alg)
    jwk = dict(algorithm.to_jwk(private.public_key(), as_dict=True))
    jwk.update({"kid": f"peer-{secrets.token_hex(6)}", "use": "sig"})
    if alg == "RS256":
        jwk["alg"] = "RS256"
    return private, jwk


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256"])
@pytest.mark.parametrize("aud", ["token_endpoint", "issuer"])
def test_an_assertion_signed_by_pyjwt_authenticates_an_exchange(alg, aud, cast, user_token, token_endpoint):
    import jwt

    private, jwk = _pyjwt_key(alg)
    register_public_key(cast, jwk)
    client_id = cast["agent1"].client_id
    now = int(time.time())
    assertion = jwt.encode(
        {
            "iss": client_id,
            "sub": client_id,
            "aud": TOKEN_URL if aud == "token_endpoint" else "http://testserver",
            "iat": now,
            "exp": now + 60,
            "jti": secrets.token_urlsafe(16),
        },
        private,
        algorithm=alg,
        headers={"kid": jwk["kid"]},
    )
    response = token_endpoint(
        {
            **exchange_form(cast, user_token),
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        }
    )
    assert response.status_code == 200, response.content
    assert_issued_to_agent1(cast, response.json()["access_token"])


def test_a_pyjwt_assertion_for_another_key_of_the_same_kid_is_refused(cast, user_token, token_endpoint):
    import jwt

    _registered, jwk = _pyjwt_key("ES256")
    register_public_key(cast, jwk)
    impostor, _ = _pyjwt_key("ES256")
    client_id = cast["agent1"].client_id
    now = int(time.time())
    assertion = jwt.encode(
        {
            "iss": client_id,
            "sub": client_id,
            "aud": TOKEN_URL,
            "exp": now + 60,
            "jti": secrets.token_urlsafe(16),
        },
        impostor,
        algorithm="ES256",
        headers={"kid": jwk["kid"]},
    )
    response = token_endpoint(
        {
            **exchange_form(cast, user_token),
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        }
    )
    assert response.status_code == 401, response.content
    assert response.json()["error"] == "invalid_client"


# -- Authlib ---------------------------------------------------------------------------------------


def authlib_client(cast: Any, provider: Any, key: Any, auth: Any, sent: list[dict[str, str]]) -> Any:
    """Authlib's httpx ``OAuth2Client`` with ``auth`` as its client authentication, as its
    documentation shows, its requests answered by the real provider (the ``provider``
    transport); the form of every request it sends is kept in ``sent``."""
    from urllib.parse import parse_qsl

    from authlib.integrations.httpx_client import OAuth2Client

    try:  # the HTTP library Authlib's client is built on: httpx2 where installed, else httpx
        import httpx2 as http
    except ImportError:  # pragma: no cover
        import httpx as http

    class Bridge(http.BaseTransport):  # type: ignore[misc,name-defined]
        def handle_request(self, request: Any) -> Any:
            body = request.read()
            sent.append(dict(parse_qsl(body.decode())))
            answer = provider.handle_request(
                httpx.Request(request.method, str(request.url), headers=request.headers.raw, content=body)
            )
            return http.Response(answer.status_code, headers=answer.headers.raw, content=answer.content)

    client = OAuth2Client(
        client_id=cast["agent1"].client_id,
        client_secret=key,
        token_endpoint_auth_method=auth.name,
        transport=Bridge(),
    )
    client.register_client_auth_method(auth)
    return client


def exchange_with(agent: Any, cast: Any, user_token: str) -> Any:
    with agent:
        return agent.fetch_token(
            TOKEN_URL,
            grant_type=TOKEN_EXCHANGE_GRANT,
            subject_token=user_token,
            subject_token_type=ACCESS_TOKEN_TYPE,
            audience=cast["agent2"].uri,
        )


def test_authlib_private_key_jwt_client_exchanges_a_token(cast, user_token, provider):
    """Authlib's ``PrivateKeyJWT`` configured as a careful client would: the key's ``kid`` in
    the header and a lifetime of a minute."""
    from authlib.oauth2.rfc7523 import PrivateKeyJWT
    from joserfc.jwk import ECKey  # Authlib's JOSE library since 1.7

    key = ECKey.generate_key("P-256")
    public = {**key.as_dict(private=False), "kid": key.thumbprint()}
    register_public_key(cast, {**public, "use": "sig"})
    auth = PrivateKeyJWT(
        TOKEN_URL,
        claims={"exp": int(time.time()) + 60},
        headers={"kid": public["kid"]},
        alg="ES256",
    )
    sent: list[dict[str, str]] = []
    token = exchange_with(authlib_client(cast, provider, key, auth, sent), cast, user_token)
    assert token["issued_token_type"] == ACCESS_TOKEN_TYPE
    assert_issued_to_agent1(cast, token["access_token"])
    assert provider.count("/o/token/") == 1
    assert decode(sent[0]["client_assertion"])[0]["kid"] == public["kid"]


@pytest.mark.rfc("7515-4.1.4")
@pytest.mark.rfc("7523-3")
@pytest.mark.parametrize("kind", ["EC", "RSA without alg"])
def test_authlib_private_key_jwt_with_its_defaults_exchanges_a_token(kind, cast, user_token, provider):
    """Authlib's ``PrivateKeyJWT`` with its defaults: no ``kid`` in the header, its own claims
    and its one-hour ``exp``. The one registered key that fits the header's ``alg`` verifies
    it; the RSA key is registered without ``alg`` (Authlib's default RS256 is taken from the
    header); the assertion is good for ``CLIENT_ASSERTION_MAX_LIFETIME`` after its ``iat``.
    Only the EC key needs ``alg`` named, as Authlib's default is RS256."""
    from authlib.oauth2.rfc7523 import PrivateKeyJWT
    from joserfc.jwk import ECKey, RSAKey

    from delegation_idp.models import ClientAssertionJti

    if kind == "EC":
        key: Any = ECKey.generate_key("P-256")
        auth = PrivateKeyJWT(TOKEN_URL, alg="ES256")
    else:
        key = RSAKey.generate_key(2048)
        auth = PrivateKeyJWT(TOKEN_URL)
    public = {k: v for k, v in key.as_dict(private=False).items() if k not in ("alg", "kid")}
    register_public_key(cast, {**public, "kid": f"peer-{secrets.token_hex(6)}", "use": "sig"})
    sent: list[dict[str, str]] = []
    token = exchange_with(authlib_client(cast, provider, key, auth, sent), cast, user_token)
    assert token["issued_token_type"] == ACCESS_TOKEN_TYPE
    assert_issued_to_agent1(cast, token["access_token"])
    header, claims = decode(sent[0]["client_assertion"])
    assert "kid" not in header and header["alg"] == ("ES256" if kind == "EC" else "RS256")
    assert claims["exp"] - claims["iat"] == 3600  # Authlib's default lifetime
    # The jti is remembered for CLIENT_ASSERTION_MAX_LIFETIME after iat, not the hour exp says.
    spent = ClientAssertionJti.objects.get(client_id=cast["agent1"].client_id)
    assert spent.expires_at.timestamp() <= claims["iat"] + 300 + 30


def test_a_second_key_of_the_same_type_needs_a_kid(cast, user_token, provider, caplog):
    """Two registered EC keys and an assertion without ``kid``: the provider does not guess.
    The client is told ``invalid_client`` and nothing more (RFC 6749 section 5.2), as is the
    audit record; the log says why. Naming the key's ``kid`` then authenticates."""
    from authlib.integrations.base_client.errors import OAuthError
    from authlib.oauth2.rfc7523 import PrivateKeyJWT
    from joserfc.jwk import ECKey

    from delegation_idp.models import AuditEvent, Party

    key, other = ECKey.generate_key("P-256"), ECKey.generate_key("P-256")
    Party.objects.filter(uri=cast["agent1"].uri).update(
        jwks={
            "keys": [
                {**key.as_dict(private=False), "kid": "mine"},
                {**other.as_dict(private=False), "kid": "spare"},
            ]
        }
    )
    sent: list[dict[str, str]] = []
    anonymous = PrivateKeyJWT(TOKEN_URL, alg="ES256")
    caplog.set_level(logging.INFO, logger="delegation_idp.provider.validators")
    with pytest.raises(OAuthError) as refused:
        exchange_with(authlib_client(cast, provider, key, anonymous, sent), cast, user_token)
    assert refused.value.error == "invalid_client"
    assert refused.value.description == "Client authentication failed."
    assert f"client assertion refused for {cast['agent1'].client_id}: kid_required" in caplog.text
    assert sent[0]["client_assertion"] not in caplog.text
    audited = AuditEvent.objects.filter(client_id=cast["agent1"].client_id).latest("pk")
    assert (audited.decision, audited.error) == ("denied", "invalid_client")
    named = PrivateKeyJWT(TOKEN_URL, alg="ES256", headers={"kid": "mine"})
    token = exchange_with(authlib_client(cast, provider, key, named, sent), cast, user_token)
    assert_issued_to_agent1(cast, token["access_token"])
