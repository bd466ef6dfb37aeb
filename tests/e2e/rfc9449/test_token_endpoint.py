"""DPoP at the token endpoint, for every grant (RFC 9449 sections 4, 5, 6 and 8)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from delegation_idp import jose
from delegation_idp.models import AuditEvent, Party, TokenLineage
from tests.helpers import assert_oauth_error, decode, snapshot, with_idp

from .conftest import Prover

CC = {"grant_type": "client_credentials"}


def bound_to(response: Any, key: Prover) -> dict[str, Any]:
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["token_type"] == "DPoP"
    claims = decode(body["access_token"])[1]
    assert claims["cnf"] == {"jkt": key.jkt}
    assert TokenLineage.objects.get(jti=claims["jti"]).jkt == key.jkt
    return body


@pytest.mark.rfc("9449-5")
def test_client_credentials_token_is_bound(worker, cast, token_endpoint, prover):
    key = prover()
    bound_to(token_endpoint(CC, worker, **key.header()), key)
    assert AuditEvent.objects.order_by("-id").first().jkt == key.jkt


@pytest.mark.rfc("9449-5")
def test_without_a_proof_the_token_is_a_bearer_token(worker, cast, token_endpoint):
    response = token_endpoint(CC, worker)
    assert response.json()["token_type"] == "Bearer"
    claims = decode(response.json()["access_token"])[1]
    assert "cnf" not in claims and TokenLineage.objects.get(jti=claims["jti"]).jkt == ""


@pytest.mark.rfc("9449-5")
def test_authorization_code_token_is_bound(bound_user_token, keys_of):
    body = bound_user_token()
    assert body["token_type"] == "DPoP"
    assert decode(body["access_token"])[1]["cnf"] == {"jkt": keys_of["agent1"].jkt}


@pytest.mark.rfc("9449-5")
@pytest.mark.parametrize("alg", ["ES256", "ES384", "EdDSA", "PS256", "RS256"])
def test_every_advertised_algorithm_binds(worker, cast, token_endpoint, prover, alg):
    key = prover(alg)
    bound_to(token_endpoint(CC, worker, **key.header()), key)


@pytest.mark.rfc("9449-5")
def test_confidential_refresh_binds_the_new_token_to_the_new_proof(
    cast, bound_user_token, token_endpoint, prover
):
    body = bound_user_token()
    other = prover()
    refreshed = token_endpoint(
        {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
        cast["agent1"],
        **other.header(),
    )
    bound_to(refreshed, other)


@pytest.mark.rfc("9449-5.1")
def test_metadata_advertises_proof_algorithms(client):
    algs = client.get("/.well-known/oauth-authorization-server").json()["dpop_signing_alg_values_supported"]
    assert algs and set(algs) <= jose.ASYMMETRIC_ALGORITHMS and "HS256" not in algs and "none" not in algs


@pytest.mark.rfc("9449-6.2")
def test_introspection_returns_cnf_of_a_bound_token(worker, cast, token_endpoint, introspect, prover):
    key = prover()
    token = bound_to(token_endpoint(CC, worker, **key.header()), key)["access_token"]
    data = introspect(token, worker).json()
    assert data["active"] is True and data["cnf"] == {"jkt": key.jkt} and data["token_type"] == "DPoP"
    bearer = token_endpoint(CC, worker).json()["access_token"]
    data = introspect(bearer, worker).json()
    assert "cnf" not in data and data["token_type"] == "Bearer"


# -- refused proofs: the exact error, no-store, nothing issued, one audit record ----------------


def _now() -> int:
    return int(time.time())


def _hs256(key: Prover) -> str:
    """A proof whose header claims a symmetric algorithm (RFC 9449 section 4.3 check 5)."""
    header = jose.b64url(b'{"typ":"dpop+jwt","alg":"HS256","jwk":{"kty":"oct","k":"c2VjcmV0"}}')
    payload = jose.b64url(b'{"jti":"x","htm":"POST","htu":"http://testserver/o/token/","iat":%d}' % _now())
    return f"{header}.{payload}.{jose.b64url(b'0' * 32)}"


def _none(key: Prover) -> str:
    public = key.key.public_jwk()
    import json

    header = jose.b64url(json.dumps({"typ": "dpop+jwt", "alg": "none", "jwk": public}).encode())
    payload = jose.b64url(b'{"jti":"x","htm":"POST","htu":"http://testserver/o/token/","iat":%d}' % _now())
    return f"{header}.{payload}."


def _private_jwk(key: Prover) -> str:
    import json

    private = json.loads(key.key.jwk.export_private())
    header = jose.b64url(json.dumps({"typ": "dpop+jwt", "alg": "ES256", "jwk": private}).encode())
    good = key.proof()
    return f"{header}.{good.split('.')[1]}.{good.split('.')[2]}"


def _other_key_signature(key: Prover) -> str:
    other = Prover()
    head, body, _ = key.proof().split(".")
    return f"{head}.{body}.{other.proof().split('.')[2]}"


PROOFS = [
    ("wrong-url", lambda k: k.proof(url="http://testserver/o/introspect/"), "dpop_wrong_url"),
    ("wrong-host", lambda k: k.proof(url="http://evil.example/o/token/"), "dpop_wrong_url"),
    ("wrong-method", lambda k: k.proof(method="GET"), "dpop_wrong_method"),
    ("expired", lambda k: k.proof(iat=_now() - 3600), "dpop_stale"),
    ("future", lambda k: k.proof(iat=_now() + 3600), "dpop_stale"),
    ("no-jti", lambda k: k.proof(jti=None), "dpop_bad_jti"),
    ("string-iat", lambda k: k.proof(iat="now"), "dpop_bad_iat"),
    ("symmetric-alg", _hs256, "dpop_bad_alg"),
    ("none-alg", _none, "dpop_bad_alg"),
    ("private-key-in-header", _private_jwk, "dpop_bad_key"),
    ("bad-signature", _other_key_signature, "dpop_bad_signature"),
    ("two-proofs", lambda k: k.proof() + ", " + k.proof(), "dpop_multiple_proofs"),
    ("not-a-jwt", lambda k: "garbage", "dpop_malformed"),
    ("oversized", lambda k: "a" * 5000 + ".b.c", "dpop_too_large"),
]


@pytest.mark.rfc("9449-4.3")
@pytest.mark.parametrize("make, reason", [p[1:] for p in PROOFS], ids=[p[0] for p in PROOFS])
def test_refused_proof(worker, cast, token_endpoint, prover, make, reason):
    before, events = snapshot(), AuditEvent.objects.count()
    response = token_endpoint(CC, worker, HTTP_DPOP=make(prover()))
    assert_oauth_error(response, 400, "invalid_dpop_proof")
    assert snapshot() == before and AuditEvent.objects.count() == events + 1
    event = AuditEvent.objects.order_by("-id").first()
    assert (event.decision, event.reason, event.error) == ("denied", reason, "invalid_dpop_proof")


@pytest.mark.rfc("9449-11.1")
def test_replayed_proof_is_refused(worker, cast, token_endpoint, prover):
    key = prover()
    proof = key.proof()
    assert token_endpoint(CC, worker, HTTP_DPOP=proof).status_code == 200
    before = snapshot()
    response = token_endpoint(CC, worker, HTTP_DPOP=proof)
    assert_oauth_error(response, 400, "invalid_dpop_proof")
    assert snapshot() == before
    assert AuditEvent.objects.order_by("-id").first().reason == "dpop_replayed"


@pytest.mark.rfc("9449-4.3")
def test_htu_compared_without_query_and_fragment_and_default_port(worker, cast, token_endpoint, prover):
    key = prover()
    response = token_endpoint(CC, worker, HTTP_DPOP=key.proof(url="HTTP://TestServer:80/o/token/?x=1#f"))
    bound_to(response, key)


@pytest.mark.rfc("9449-4.3")
def test_a_refused_proof_consumes_no_authorization_code(cast, client, token_endpoint, prover):
    from tests.conftest import authorize_code, code_form

    agent = cast["agent1"]
    code, verifier = authorize_code(client, agent, cast.user, cast.scope)
    key = prover()
    refused = token_endpoint(code_form(agent, code, verifier), agent, HTTP_DPOP=key.proof(method="PUT"))
    assert_oauth_error(refused, 400, "invalid_dpop_proof")
    bound_to(token_endpoint(code_form(agent, code, verifier), agent, **key.header()), key)


# -- nonces (section 8) -------------------------------------------------------------------------


@pytest.fixture
def nonces():
    with with_idp(DPOP_NONCE_LIFETIME=300):
        yield


@pytest.mark.rfc("9449-8")
def test_nonce_required_then_accepted(worker, nonces, cast, token_endpoint, prover):
    key = prover()
    before = snapshot()
    first = token_endpoint(CC, worker, **key.header())
    assert_oauth_error(first, 400, "use_dpop_nonce")
    assert snapshot() == before
    nonce = first["DPoP-Nonce"]
    assert AuditEvent.objects.order_by("-id").first().reason == "dpop_nonce_required"
    second = token_endpoint(CC, worker, **key.header(nonce=nonce))
    bound_to(second, key)
    assert second["DPoP-Nonce"]  # section 8.2: the nonce to use next


@pytest.mark.rfc("9449-8")
def test_forged_or_stale_nonce_refused(worker, nonces, cast, token_endpoint, prover):
    from delegation_idp.provider import dpop

    key = prover()
    issuer = dpop.nonce_issuer()
    stale = issuer.current(time.time() - 2 * issuer.lifetime)
    for nonce in (stale, "0.forged", issuer.current(time.time())[:-2] + "AA"):
        response = token_endpoint(CC, worker, **key.header(nonce=nonce))
        assert_oauth_error(response, 400, "use_dpop_nonce")
        assert response["DPoP-Nonce"] != nonce
    assert AuditEvent.objects.order_by("-id").first().reason == "dpop_nonce_stale"


@pytest.mark.rfc("9449-8")
def test_previous_window_nonce_still_accepted(worker, nonces, cast, token_endpoint, prover):
    from delegation_idp.provider import dpop

    issuer = dpop.nonce_issuer()
    previous = issuer.current(time.time() - issuer.lifetime)
    key = prover()
    bound_to(token_endpoint(CC, worker, **key.header(nonce=previous)), key)


def test_without_nonces_no_nonce_header(worker, cast, token_endpoint, prover):
    assert not token_endpoint(CC, worker, **prover().header()).has_header("DPoP-Nonce")


# -- "DPoP required" parties (section 5.2's dpop_bound_access_tokens) ---------------------------


@pytest.fixture
def agent1_requires_dpop(cast, worker):
    Party.objects.filter(uri__in=[cast["agent1"].uri, worker.uri]).update(dpop_required=True)


@pytest.mark.rfc("9449-5.2")
def test_dpop_required_party_gets_no_bearer_token(worker, agent1_requires_dpop, cast, token_endpoint, prover):
    before = snapshot()
    response = token_endpoint(CC, worker)
    assert_oauth_error(response, 400, "invalid_dpop_proof")
    assert snapshot() == before
    assert AuditEvent.objects.order_by("-id").first().reason == "dpop_required"
    key = prover()
    bound_to(token_endpoint(CC, worker, **key.header()), key)


@pytest.mark.rfc("9449-5.2")
def test_dpop_required_party_authorization_code_needs_a_proof(
    agent1_requires_dpop, cast, client, token_endpoint
):
    from tests.conftest import authorize_code, code_form

    agent = cast["agent1"]
    code, verifier = authorize_code(client, agent, cast.user, cast.scope)
    before = snapshot()
    assert_oauth_error(token_endpoint(code_form(agent, code, verifier), agent), 400, "invalid_dpop_proof")
    assert snapshot() == before


@pytest.mark.rfc("9449-5.2")
def test_dpop_required_party_cannot_exchange_for_a_bearer_token(
    cast, user_token, exchange, token_endpoint, prover
):
    Party.objects.filter(uri=cast["agent1"].uri).update(dpop_required=True)  # after its bearer user token
    before = snapshot()
    refused = exchange("agent1", user_token, cast["agent2"].uri)
    assert_oauth_error(refused, 400, "invalid_dpop_proof")
    assert snapshot() == before
    assert AuditEvent.objects.order_by("-id").first().reason == "dpop_required"
    key = prover()
    from tests.conftest import ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT

    form = {
        "grant_type": TOKEN_EXCHANGE_GRANT,
        "subject_token": user_token,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        "audience": cast["agent2"].uri,
    }
    bound_to(token_endpoint(form, cast["agent1"], **key.header()), key)


# -- dpop_jkt: the authorization code bound to a key (section 10) -------------------------------


def _authorize(client: Any, agent: Any, user: Any, **extra: str) -> Any:
    import base64
    import hashlib
    import secrets
    from urllib.parse import urlencode

    client.force_login(user)
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {
        "response_type": "code",
        "client_id": agent.client_id,
        "redirect_uri": agent.redirect_uri,
        "scope": "tasks.read",
        "state": "s1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    response = client.post(f"/o/authorize/?{urlencode(params)}", {**params, "allow": "Authorize"})
    client.logout()
    return response, verifier


def _code(response: Any) -> str:
    from urllib.parse import parse_qs, urlsplit

    assert response.status_code == 302, response.content
    return parse_qs(urlsplit(response["Location"]).query)["code"][0]


@pytest.mark.rfc("9449-10")
def test_dpop_jkt_binds_the_code_to_the_key(cast, client, token_endpoint, prover):
    from tests.conftest import code_form

    agent, key = cast["agent1"], prover()
    response, verifier = _authorize(client, agent, cast.user, dpop_jkt=key.jkt)
    code = _code(response)
    before = snapshot()
    other = token_endpoint(code_form(agent, code, verifier), agent, **prover().header())
    assert_oauth_error(other, 400, "invalid_dpop_proof")
    assert AuditEvent.objects.order_by("-id").first().reason == "dpop_key_mismatch"
    without = token_endpoint(code_form(agent, code, verifier), agent)
    assert_oauth_error(without, 400, "invalid_dpop_proof")
    assert AuditEvent.objects.order_by("-id").first().reason == "dpop_required"
    assert snapshot() == before  # neither consumed the code
    bound_to(token_endpoint(code_form(agent, code, verifier), agent, **key.header()), key)


@pytest.mark.rfc("9449-10")
def test_malformed_dpop_jkt_is_an_error_redirect(cast, client):
    from urllib.parse import parse_qs, urlsplit

    agent = cast["agent1"]
    client.force_login(cast.user)
    from urllib.parse import urlencode

    params = {
        "response_type": "code",
        "client_id": agent.client_id,
        "redirect_uri": agent.redirect_uri,
        "scope": "tasks.read",
        "state": "s2",
        "code_challenge": "x" * 43,
        "code_challenge_method": "S256",
        "dpop_jkt": "not a thumbprint",
    }
    before = AuditEvent.objects.count()
    response = client.get(f"/o/authorize/?{urlencode(params)}")
    assert response.status_code == 302
    query = parse_qs(urlsplit(response["Location"]).query)
    assert query["error"] == ["invalid_request"] and query["state"] == ["s2"] and "code" not in query
    assert AuditEvent.objects.count() == before + 1
    assert AuditEvent.objects.order_by("-id").first().reason == "dpop_jkt_malformed"
