"""DPoP-bound tokens at the DRF resource server (RFC 9449 sections 7 and 9), with tokens the
real provider issued, bound to a client's key (``cnf.jkt``) and signed again with its key."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
import redis

from delegation_idp.rfc9449 import CacheReplayStore, RedisReplayStore
from tests.support.dpop import Prover

pytestmark = [pytest.mark.urls("tests.resource_server.urls"), pytest.mark.rfc("9449-7.1")]

URL = "http://testserver/api/whoami/"
METADATA_URL = "http://testserver/.well-known/oauth-protected-resource"


def challenges(response) -> dict[str, dict[str, str]]:
    """The WWW-Authenticate challenges by scheme, each with its parameters."""
    header = response["WWW-Authenticate"]
    found: dict[str, dict[str, str]] = {}
    for scheme, params in re.findall(r'(Bearer|DPoP)((?:\s*,?\s*\w+="(?:[^"\\]|\\.)*")*)', header):
        found[scheme] = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', params))
    return found


def dpop_get(client, token: str, proof: str | None, path: str = "/api/whoami/", **headers: Any):
    if proof is not None:
        headers["HTTP_DPOP"] = proof
    return client.get(path, HTTP_AUTHORIZATION=f"DPoP {token}", **headers)


def assert_dpop_refusal(response, error: str, metadata: str = METADATA_URL) -> dict[str, str]:
    assert response.status_code == 401, response.content
    assert response["Cache-Control"] == "no-store"
    found = challenges(response)
    assert set(found) == {"DPoP"}, response["WWW-Authenticate"]
    params = found["DPoP"]
    assert params["error"] == error
    assert params["algs"].split() == ["ES256", "ES384", "EdDSA", "PS256", "RS256"]
    assert params["resource_metadata"] == metadata
    return params


@pytest.fixture
def bound(chain, bind, prover) -> str:
    """The seed's last-hop token (aud the resource server), bound to ``prover``'s key."""
    return bind(chain[3], prover)


@pytest.fixture
def rs(resource_settings, use_validator):
    """The resource server's validator, remembering proofs in the Django cache as a site's does."""
    return use_validator(replay_store=CacheReplayStore("default"))


def test_a_bound_token_with_its_proof_is_accepted_and_exposes_the_thumbprint(client, bound, prover, rs):
    response = dpop_get(client, bound, prover.proof("GET", URL, token=bound))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["jkt"] == prover.jkt
    assert body["actors"] == [
        "https://mcp-server1.example.com",
        "https://agent2.example.com",
        "https://agent1.example.com",
    ]
    assert "DPoP-Nonce" not in response  # nonces are not required here


def test_a_bearer_token_keeps_working_and_has_no_thumbprint(client, chain, rs):
    response = client.get("/api/whoami/", HTTP_AUTHORIZATION=f"Bearer {chain[3]}")
    assert response.status_code == 200, response.content
    assert response.json()["jkt"] is None


@pytest.mark.rfc("9449-7.2")
def test_without_a_token_both_schemes_are_offered(client, rs):
    response = client.get("/api/whoami/")
    assert response.status_code == 401
    found = challenges(response)
    assert set(found) == {"Bearer", "DPoP"}
    assert "error" not in found["Bearer"] and "error" not in found["DPoP"]
    assert found["Bearer"]["resource_metadata"] == METADATA_URL
    assert found["DPoP"]["algs"] == "ES256 ES384 EdDSA PS256 RS256"


@pytest.mark.rfc("9449-7.2")
def test_a_bound_token_presented_as_a_bearer_token_is_refused(client, bound, rs):
    response = client.get("/api/whoami/", HTTP_AUTHORIZATION=f"Bearer {bound}")
    assert response.status_code == 401, response.content
    found = challenges(response)
    assert found["Bearer"]["error"] == "invalid_token"
    assert "DPoP scheme" in found["Bearer"]["error_description"]
    assert "error" not in found["DPoP"] and found["DPoP"]["algs"]


def test_a_dpop_token_without_a_proof_is_refused(client, bound, rs):
    params = assert_dpop_refusal(dpop_get(client, bound, None), "invalid_dpop_proof")
    assert "needs a DPoP proof" in params["error_description"]


def test_an_unbound_token_presented_with_the_dpop_scheme_is_refused(client, chain, prover, rs):
    response = dpop_get(client, chain[3], prover.proof("GET", URL, token=chain[3]))
    params = assert_dpop_refusal(response, "invalid_token")
    assert "not DPoP-bound" in params["error_description"]


@pytest.mark.rfc("9449-11.1")
def test_a_replayed_proof_is_refused(client, bound, prover, rs):
    proof = prover.proof("GET", URL, token=bound)
    assert dpop_get(client, bound, proof).status_code == 200
    params = assert_dpop_refusal(dpop_get(client, bound, proof), "invalid_dpop_proof")
    assert "already used" in params["error_description"]


@pytest.mark.rfc("9449-11.1")
def test_a_proof_replayed_at_another_process_sharing_the_cache_is_refused(
    client, bound, prover, resource_settings, make_validator
):
    from delegation_idp.resource_server import drf

    proof = prover.proof("GET", URL, token=bound)
    drf.set_validator(make_validator(replay_store=CacheReplayStore("default")))
    assert dpop_get(client, bound, proof).status_code == 200
    drf.set_validator(make_validator(replay_store=CacheReplayStore("default")))  # a second process
    try:
        assert_dpop_refusal(dpop_get(client, bound, proof), "invalid_dpop_proof")
    finally:
        drf.set_validator(None)


@pytest.mark.parametrize(
    ("htm", "htu", "path"),
    [
        ("POST", URL, "/api/whoami/"),  # another method
        ("GET", "http://testserver/api/admin/", "/api/whoami/"),  # another URL of this site
        ("GET", "https://testserver/api/whoami/", "/api/whoami/"),  # another scheme
        ("GET", "http://evil.example/api/whoami/", "/api/whoami/"),  # another host
        ("GET", URL, "/api/deep/"),  # a proof for whoami, sent to deep
    ],
)
def test_a_proof_made_for_another_request_is_refused(client, bound, prover, rs, htm, htu, path):
    assert_dpop_refusal(
        dpop_get(client, bound, prover.proof(htm, htu, token=bound), path), "invalid_dpop_proof"
    )


def test_the_query_is_not_part_of_htu(client, bound, prover, rs):
    response = dpop_get(client, bound, prover.proof("GET", URL, token=bound), "/api/whoami/?page=2")
    assert response.status_code == 200, response.content


def test_an_expired_proof_is_refused(client, bound, prover, rs):
    old = prover.proof("GET", URL, token=bound, iat=time.time() - 61)
    params = assert_dpop_refusal(dpop_get(client, bound, old), "invalid_dpop_proof")
    assert "time window" in params["error_description"]


def test_a_proof_for_another_token_is_refused(client, bound, chain, prover, rs):
    assert_dpop_refusal(
        dpop_get(client, bound, prover.proof("GET", URL, token=chain[2])), "invalid_dpop_proof"
    )
    assert_dpop_refusal(dpop_get(client, bound, prover.proof("GET", URL)), "invalid_dpop_proof")


@pytest.mark.parametrize("alg", ["none", "HS256"])
def test_a_proof_signed_with_a_symmetric_or_no_algorithm_is_refused(client, bound, prover, rs, alg):
    proof = prover.forged(prover.claims("GET", URL, token=bound), alg=alg)
    params = assert_dpop_refusal(dpop_get(client, bound, proof), "invalid_dpop_proof")
    assert "algorithm" in params["error_description"]


def test_a_stolen_token_is_useless_with_the_thiefs_own_key(client, bound, rs):
    """The token leaked from the hop that holds it; the thief signs a perfect proof, with its
    own key: the key binding fails (RFC 9449 section 7.1, ``invalid_token``)."""
    thief = Prover()
    response = dpop_get(client, bound, thief.proof("GET", URL, token=bound))
    params = assert_dpop_refusal(response, "invalid_token")
    assert "key binding" in params["error_description"]


def test_two_dpop_headers_are_refused(client, bound, prover, rs):
    first, second = (prover.proof("GET", URL, token=bound) for _ in range(2))
    assert_dpop_refusal(dpop_get(client, bound, f"{first}, {second}"), "invalid_dpop_proof")


@pytest.mark.parametrize("header", ["DPoP", "DPoP ", "DPoP a b", "dpop \u00e9t\u00e9"])
def test_a_malformed_dpop_authorization_is_invalid_token(client, prover, rs, header):
    response = client.get("/api/whoami/", HTTP_AUTHORIZATION=header, HTTP_DPOP=prover.proof("GET", URL))
    assert_dpop_refusal(response, "invalid_token")


def test_the_dpop_scheme_is_case_insensitive(client, bound, prover, rs):
    proof = prover.proof("GET", URL, token=bound)
    assert client.get("/api/whoami/", HTTP_AUTHORIZATION=f"dpop {bound}", HTTP_DPOP=proof).status_code == 200


def test_insufficient_scope_of_a_bound_token_is_challenged_in_the_dpop_scheme(client, bound, prover, rs):
    response = dpop_get(
        client, bound, prover.proof("GET", "http://testserver/api/admin/", token=bound), "/api/admin/"
    )
    assert response.status_code == 403, response.content
    found = challenges(response)
    assert set(found) == {"DPoP"}
    assert found["DPoP"]["error"] == "insufficient_scope"
    assert found["DPoP"]["scope"] == "tasks.read tasks.admin"


@pytest.mark.rfc("9449-9")
def test_the_nonce_flow(client, bound, prover, settings, resource_settings, provider_http):
    """A required nonce: the first proof is answered ``use_dpop_nonce`` with a ``DPoP-Nonce``;
    the retry with it succeeds and carries a fresh nonce for the next request."""
    from delegation_idp.resource_server import drf, site
    from delegation_idp.resource_server.validation import TokenValidator

    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "RESOURCE_DPOP_NONCE_LIFETIME": 300}
    config = site.config_from_settings()  # nonces from the settings, under SECRET_KEY
    assert config.dpop_nonce_lifetime == 300
    drf.set_validator(TokenValidator(config, http=provider_http, replay_store=CacheReplayStore("default")))
    try:
        first = dpop_get(client, bound, prover.proof("GET", URL, token=bound))
        params = assert_dpop_refusal(first, "use_dpop_nonce")
        assert "DPoP-Nonce" in params["error_description"]
        nonce = first["DPoP-Nonce"]
        retry = dpop_get(client, bound, prover.proof("GET", URL, token=bound, nonce=nonce))
        assert retry.status_code == 200, retry.content
        assert retry["DPoP-Nonce"] == nonce  # still the current window's
        stale = dpop_get(client, bound, prover.proof("GET", URL, token=bound, nonce="0.AAAA"))
        assert_dpop_refusal(stale, "use_dpop_nonce")
        assert stale["DPoP-Nonce"] == nonce
        # A refusal of any proof tells the client the nonce, too; a bearer request never does.
        assert dpop_get(client, bound, "x.y.z")["DPoP-Nonce"] == nonce
        assert "DPoP-Nonce" not in client.get("/api/whoami/")
    finally:
        drf.set_validator(None)


def test_the_site_validator_remembers_proofs_in_the_configured_cache(resource_settings, settings):
    from delegation_idp.resource_server import site

    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "DPOP_REPLAY_CACHE_ALIAS": "default"}
    store = site.get_validator().replay_store
    assert isinstance(store, CacheReplayStore) and store.alias == "default"


def test_behind_a_proxy_htu_is_the_public_url(
    client, bound, prover, settings, resource_settings, use_validator
):
    """With ``RESOURCE_URL`` set, the site is named by its origin, whatever Host the proxy
    forwards: a proof for the public URL passes, one for the address the proxy reached fails."""
    settings.DELEGATION_IDP = {
        **settings.DELEGATION_IDP,
        "RESOURCE_URL": "https://api.example.com/api/whoami/",
    }
    use_validator()
    public = "https://api.example.com/api/whoami/"
    assert dpop_get(client, bound, prover.proof("GET", public, token=bound)).status_code == 200
    refused = dpop_get(client, bound, prover.proof("GET", URL, token=bound))
    metadata = "https://api.example.com/.well-known/oauth-protected-resource/api/whoami/"
    assert_dpop_refusal(refused, "invalid_dpop_proof", metadata)


def test_a_host_the_site_does_not_list_literally_names_no_url(client, bound, prover, settings, rs):
    """``ALLOWED_HOSTS = ["*"]`` lets any Host in, but names none: no proof can match."""
    settings.ALLOWED_HOSTS = ["*"]
    proof = prover.proof("GET", "http://anything.example/api/whoami/", token=bound)
    response = dpop_get(client, bound, proof, HTTP_HOST="anything.example")
    assert response.status_code == 401
    assert challenges(response)["DPoP"]["error"] == "invalid_dpop_proof"


def test_an_unavailable_replay_store_fails_closed(client, bound, prover, resource_settings, use_validator):
    class Down:
        def first_use(self, key: str, ttl: int) -> bool:
            raise ConnectionError("the cache is down")

    use_validator(replay_store=Down())
    response = dpop_get(client, bound, prover.proof("GET", URL, token=bound))
    assert response.status_code == 503, response.content
    # The project's own stores say so with ReplayStoreUnavailable: a hung Redis cache.
    use_validator(replay_store=RedisReplayStore(redis.Redis.from_url("redis://127.0.0.1:1/0")))
    response = dpop_get(client, bound, prover.proof("GET", URL, token=bound))
    assert response.status_code == 503, response.content


# -- the chain as the provider binds it ------------------------------------------------------------

TOKEN_URL = "http://testserver/o/token/"


@pytest.fixture
def hop_keys(cast) -> dict[str, Prover]:
    return {name: Prover() for name in cast.agents}


@pytest.fixture
def provider_chain(cast, client, token_endpoint, hop_keys) -> list[str]:
    """The seed's four tokens as the provider issues them to hops that prove their own key at
    the token endpoint: each bound to the key of the hop that requested it."""
    from tests.conftest import ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT, authorize_code, code_form

    agent1 = cast["agent1"]
    code, verifier = authorize_code(client, agent1, cast.user, cast.scope)
    proof = hop_keys["agent1"].proof("POST", TOKEN_URL)
    response = token_endpoint(code_form(agent1, code, verifier), agent1, HTTP_DPOP=proof)
    assert response.status_code == 200, response.content
    tokens = [response.json()["access_token"]]
    for name, target in (
        ("agent1", cast["agent2"].uri),
        ("agent2", cast["mcp-server1"].uri),
        ("mcp-server1", cast.resource_server),
    ):
        form = {
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "subject_token": tokens[-1],
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "audience": target,
        }
        proof = hop_keys[name].proof("POST", TOKEN_URL)
        response = token_endpoint(form, cast[name], HTTP_DPOP=proof)
        assert response.status_code == 200, response.content
        assert response.json()["token_type"] == "DPoP"
        tokens.append(response.json()["access_token"])
    return tokens


@pytest.mark.rfc("9449-7.1")
def test_the_last_hops_token_is_good_only_with_the_key_of_the_hop_that_requested_it(
    client, provider_chain, hop_keys, rs
):
    """mcp-server1 requested the resource server's token with its key: only that key presents
    it. The same token stolen by any other hop (each with a key of its own) or by an outsider
    is refused, with proofs that are otherwise perfect."""
    token = provider_chain[3]
    for name in ("agent1", "agent2"):
        stolen = dpop_get(client, token, hop_keys[name].proof("GET", URL, token=token))
        assert_dpop_refusal(stolen, "invalid_token")
    assert_dpop_refusal(dpop_get(client, token, Prover().proof("GET", URL, token=token)), "invalid_token")
    response = client.get("/api/whoami/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 401  # nor as a bearer token
    owner = dpop_get(client, token, hop_keys["mcp-server1"].proof("GET", URL, token=token))
    assert owner.status_code == 200, owner.content
    assert owner.json()["jkt"] == hop_keys["mcp-server1"].jkt
    assert owner.json()["depth"] == 3
