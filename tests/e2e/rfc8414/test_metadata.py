"""RFC 8414 authorization server metadata and the JWKS it names."""

from __future__ import annotations

import json

import pytest

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"


@pytest.mark.rfc("8414-3.2")
def test_metadata_names_issuer_and_endpoints(client, db):
    response = client.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    data = response.json()
    assert data["issuer"] == "http://testserver"
    assert data["token_endpoint"] == "http://testserver/o/token/"
    assert data["authorization_endpoint"] == "http://testserver/o/authorize/"
    assert data["revocation_endpoint"] == "http://testserver/o/revoke_token/"
    assert data["introspection_endpoint"] == "http://testserver/o/introspect/"
    assert data["jwks_uri"] == "http://testserver/.well-known/jwks.json"
    assert GRANT in data["grant_types_supported"]
    assert {"authorization_code", "client_credentials", "refresh_token"} <= set(data["grant_types_supported"])
    assert data["code_challenge_methods_supported"] == ["S256"]
    assert "none" not in [a.lower() for a in data["token_endpoint_auth_signing_alg_values_supported"]]


@pytest.mark.rfc("8414-2")
def test_every_endpoint_in_metadata_answers(client, db):
    data = client.get("/.well-known/oauth-authorization-server").json()
    for name in ("token_endpoint", "revocation_endpoint", "introspection_endpoint"):
        path = data[name].removeprefix("http://testserver")
        assert client.post(path).status_code in (400, 401), name
    assert client.get(data["jwks_uri"].removeprefix("http://testserver")).status_code == 200


@pytest.mark.rfc("7517-5")
def test_jwks_publishes_public_members_only(client, cast, user_token):
    from tests.helpers import decode

    keys = json.loads(client.get("/.well-known/jwks.json").content)["keys"]
    assert keys
    for key in keys:
        assert not {"d", "p", "q", "dp", "dq", "qi", "k"} & set(key)
        assert key["use"] == "sig" and key["alg"] in ("ES256", "RS256", "EdDSA")
    assert decode(user_token)[0]["kid"] in {k["kid"] for k in keys}
