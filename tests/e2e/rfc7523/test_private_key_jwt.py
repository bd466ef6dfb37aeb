"""private_key_jwt client authentication (RFC 7523 sections 2.2 and 3) at the token endpoint,
black-box over HTTP: a registered agent authenticates with a signed assertion instead of a secret.
The claim checks on their own are in tests/provider/test_client_auth.py."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from delegation_idp import TOKEN_EXCHANGE_GRANT, jose
from delegation_idp.models import ClientAssertionJti
from tests.conftest import ACCESS_TOKEN_TYPE
from tests.helpers import assert_oauth_error, decode, snapshot

pytestmark = pytest.mark.rfc("7523-3")


def exchange_params(cast: Any, subject_token: str) -> dict[str, str]:
    return {
        "grant_type": TOKEN_EXCHANGE_GRANT,
        "subject_token": subject_token,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        "audience": cast["agent2"].uri,
    }


@pytest.mark.rfc("7523-2.2")
def test_exchange_with_a_client_assertion(
    cast: Any, user_token: str, token_endpoint: Any, assertion: Any, assertion_params: Any
) -> None:
    response = token_endpoint({**exchange_params(cast, user_token), **assertion_params(assertion())})
    assert response.status_code == 200, response.content
    claims = decode(response.json()["access_token"])[1]
    assert claims["client_id"] == cast["agent1"].client_id
    assert claims["act"] == {"sub": cast["agent1"].uri}
    assert ClientAssertionJti.objects.filter(client_id=cast["agent1"].client_id).count() == 1


def test_client_credentials_with_a_client_assertion(
    cast: Any, token_endpoint: Any, assertion: Any, assertion_params: Any
) -> None:
    from oauth2_provider.models import get_application_model

    Application = get_application_model()
    Application.objects.filter(client_id=cast["agent1"].client_id).update(
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS
    )
    response = token_endpoint({"grant_type": "client_credentials", **assertion_params(assertion())})
    assert response.status_code == 200, response.content
    assert decode(response.json()["access_token"])[1]["client_id"] == cast["agent1"].client_id


@pytest.mark.rfc("7523-3")
def test_replayed_assertion_is_refused(
    cast: Any, user_token: str, token_endpoint: Any, assertion: Any, assertion_params: Any
) -> None:
    token = assertion()
    first = token_endpoint({**exchange_params(cast, user_token), **assertion_params(token)})
    assert first.status_code == 200, first.content
    before = snapshot()
    again = token_endpoint({**exchange_params(cast, user_token), **assertion_params(token)})
    assert_oauth_error(again, 401, "invalid_client")
    assert snapshot() == before


@pytest.mark.parametrize("aud_kind", ["issuer", "token_endpoint", "list_of_ours"])
def test_audience_may_be_the_issuer_or_the_token_endpoint(
    cast: Any, user_token: str, token_endpoint: Any, assertion: Any, assertion_params: Any, aud_kind: str
) -> None:
    aud = {
        "issuer": "http://testserver",
        "token_endpoint": "http://testserver/o/token/",
        "list_of_ours": ["http://testserver", "http://testserver/o/token/"],
    }[aud_kind]
    response = token_endpoint({**exchange_params(cast, user_token), **assertion_params(assertion(aud=aud))})
    assert response.status_code == 200, response.content


def _other_key_same_kid(agent_key: jose.SigningKey) -> jose.SigningKey:
    other = jose.generate_key("ES256")
    return jose.SigningKey(kid=agent_key.kid, alg="ES256", jwk=other.jwk)


@pytest.mark.parametrize(
    "case",
    [
        "aud_other_server",
        "aud_list_with_other_server",
        "aud_missing",
        "expired",
        "no_exp",
        "lifetime_too_long",
        "issued_too_long_ago",
        "future_iat",
        "iss_not_client",
        "sub_other_client",
        "no_jti",
        "wrong_key",
        "unknown_kid",
        "typ_access_token",
        "wrong_assertion_type",
        "client_id_mismatch",
        "garbage",
    ],
)
def test_bad_assertions_are_refused(
    cast: Any,
    user_token: str,
    token_endpoint: Any,
    assertion: Any,
    assertion_params: Any,
    agent_key: jose.SigningKey,
    case: str,
    caplog: Any,
) -> None:
    caplog.set_level(logging.INFO, logger="delegation_idp.provider.validators")
    now = int(time.time())
    other_client = cast["agent2"].client_id
    extra: dict[str, str] = {}
    if case == "aud_other_server":
        token = assertion(aud="https://other-idp.example.com")
    elif case == "aud_list_with_other_server":
        token = assertion(aud=["http://testserver", "https://other-idp.example.com"])
    elif case == "aud_missing":
        token = assertion(aud=None)
    elif case == "expired":
        token = assertion(iat=now - 600, exp=now - 300)
    elif case == "no_exp":
        token = assertion(exp=None)
    elif case == "lifetime_too_long":
        token = assertion(iat=None, exp=now + 3600)
    elif case == "issued_too_long_ago":
        token = assertion(iat=now - 600, exp=now + 3000)
    elif case == "future_iat":
        token = assertion(iat=now + 600)
    elif case == "iss_not_client":
        token = assertion(iss="https://agent1.example.com")
    elif case == "sub_other_client":
        token = assertion(sub=other_client)
    elif case == "no_jti":
        token = assertion(jti=None)
    elif case == "wrong_key":
        token = assertion(key=_other_key_same_kid(agent_key))
    elif case == "unknown_kid":
        token = assertion(key=jose.generate_key("ES256"))
    elif case == "typ_access_token":
        token = assertion(typ="at+jwt")
    elif case == "wrong_assertion_type":
        token = assertion()
        extra = {"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"}
    elif case == "client_id_mismatch":
        token = assertion()
        extra = {"client_id": other_client}
    else:
        token = "not.a.jwt"
    before = snapshot()
    response = token_endpoint({**exchange_params(cast, user_token), **assertion_params(token), **extra})
    assert_oauth_error(response, 401, "invalid_client")
    assert snapshot() == before
    expected = REASONS.get(case)
    if expected is not None:
        named = "-" if case == "garbage" else cast["agent1"].client_id
        assert f"client assertion refused for {named}: {expected}" in caplog.text
    assert token not in caplog.text


REASONS = {
    "aud_other_server": "bad_audience",
    "aud_list_with_other_server": "bad_audience",
    "aud_missing": "bad_audience",
    "expired": "expired",
    "no_exp": "missing_exp",
    "lifetime_too_long": "lifetime_too_long",
    "issued_too_long_ago": "too_old",
    "future_iat": "not_yet_valid",
    "iss_not_client": "wrong_issuer",
    "no_jti": "bad_jti",
    "wrong_key": "bad_signature",
    "unknown_kid": "unknown_kid",
    "typ_access_token": "bad_typ",
    "wrong_assertion_type": "wrong_assertion_type",
    "garbage": "no_subject",
}


def test_party_without_keys_cannot_use_assertions(
    cast: Any, user_token: str, token_endpoint: Any, assertion: Any, assertion_params: Any
) -> None:
    from delegation_idp.models import Party

    token = assertion()
    Party.objects.filter(uri=cast["agent1"].uri).update(jwks=None)
    response = token_endpoint({**exchange_params(cast, user_token), **assertion_params(token)})
    assert_oauth_error(response, 401, "invalid_client")


def test_assertion_does_not_fall_back_to_a_secret(
    cast: Any, user_token: str, token_endpoint: Any, assertion_params: Any
) -> None:
    """An offered assertion alone decides, even with a valid secret in the body."""
    response = token_endpoint(
        {
            **exchange_params(cast, user_token),
            **assertion_params("not.a.jwt"),
            "client_id": cast["agent1"].client_id,
        },
        None,
    )
    assert_oauth_error(response, 401, "invalid_client")


def test_symmetric_algorithm_is_refused(
    cast: Any, user_token: str, token_endpoint: Any, assertion_params: Any, agent_key: jose.SigningKey
) -> None:
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    client_id = cast["agent1"].client_id
    now = int(time.time())
    header = b64(json.dumps({"alg": "HS256", "kid": agent_key.kid}).encode())
    payload = b64(
        json.dumps(
            {"iss": client_id, "sub": client_id, "aud": "http://testserver", "exp": now + 60, "jti": "x1"}
        ).encode()
    )
    mac = hmac.new(
        json.dumps(agent_key.public_jwk()).encode(), f"{header}.{payload}".encode(), hashlib.sha256
    )
    token = f"{header}.{payload}.{b64(mac.digest())}"
    response = token_endpoint({**exchange_params(cast, user_token), **assertion_params(token)})
    assert_oauth_error(response, 401, "invalid_client")
