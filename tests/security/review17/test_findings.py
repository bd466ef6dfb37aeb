"""Findings of the hostile review of the provider's DPoP (RFC 9449 with RFC 8693): each test
fails on the code it was written against and names the fix in its docstring."""

from __future__ import annotations

import base64
import json
import math
import secrets
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.core import checks

from delegation_idp import jose
from delegation_idp.models import AuditEvent, Party
from tests.conftest import Agent, authorize_code, code_form, free_port
from tests.helpers import assert_oauth_error, decode, snapshot, with_idp

from .conftest import Prover

CC = {"grant_type": "client_credentials"}


def last_event() -> AuditEvent:
    return AuditEvent.objects.order_by("-id").first()


# -- F1 (high): a DPoP-bound token is a bearer token to django-oauth-toolkit's own protection ---


@pytest.mark.rfc("9449-7.2")
@pytest.mark.urls("tests.security.review17.urls")
@pytest.mark.parametrize("path", ["/api/me/", "/api/drf/me/"], ids=["ProtectedResourceView", "drf"])
def test_bound_token_is_not_accepted_as_a_bearer_token_by_django_oauth_toolkit(
    worker, cast, token_endpoint, prover, client, path
):
    """A site that installs this app keeps its APIs behind django-oauth-toolkit
    (``ProtectedResourceView``, DRF's ``OAuth2Authentication``, ``OAuth2TokenMiddleware``).
    They validate through ``OAUTH2_VALIDATOR_CLASS``, which this app provides
    (``DelegationValidator``), and its inherited ``validate_bearer_token`` finds a DPoP-bound
    JWT in the ``AccessToken`` table and accepts it under ``Authorization: Bearer`` with no
    proof at all. A token stolen from the agent's logs then works as a plain bearer token on
    the provider's own site, which is the very theft the binding is there to stop (RFC 9449
    sections 7.1 and 7.2: a bound token is good only with a proof by its key).

    Fix: override ``DelegationValidator.validate_bearer_token`` to refuse a token bound to a key
    (its lineage row's ``jkt``, or a ``cnf`` in the JWT) with ``invalid_token``:
    django-oauth-toolkit verifies no proof, so a bound token is never valid there."""
    bearer = token_endpoint(CC, worker).json()["access_token"]
    assert client.get(path, HTTP_AUTHORIZATION=f"Bearer {bearer}").status_code == 200  # the API works
    key = prover()
    issued = token_endpoint(CC, worker, **key.header()).json()
    assert issued["token_type"] == "DPoP" and decode(issued["access_token"])[1]["cnf"] == {"jkt": key.jkt}
    stolen = client.get(path, HTTP_AUTHORIZATION=f"Bearer {issued['access_token']}")
    assert stolen.status_code in (401, 403), "a DPoP-bound token was accepted as a bearer token"


# -- F2 (medium): the replay store unavailable is a 500 --------------------------------------


@pytest.mark.rfc("9449-11.1")
def test_replay_store_unavailable_is_503_not_500(worker, cast, token_endpoint, prover, settings):
    """The proof's ``jti`` goes to ``CacheReplayStore.first_use`` (``cache.add``) unguarded: with
    the Redis behind ``DPOP_REPLAY_CACHE_ALIAS`` down, ``redis.ConnectionError`` escapes the
    proof check and every DPoP token request is ``500 server_error`` (``unhandled_exception``,
    logged with a traceback each time), where the rest of the endpoint answers a storage outage
    ``503 temporarily_unavailable`` with ``Retry-After``.

    Fix: a replay store that cannot answer refuses the proof (fail closed, never accept an
    unchecked ``jti``) as ``TemporarilyUnavailable`` with a reason of its own (e.g.
    ``dpop_replay_unavailable``), ideally through the cache breaker
    (:mod:`delegation_idp.breaker`) so a hung Redis costs a bounded wait."""
    settings.CACHES = {
        **settings.CACHES,
        "dpop-down": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        },
    }
    before = snapshot()
    with with_idp(DPOP_REPLAY_CACHE_ALIAS="dpop-down"):
        response = token_endpoint(CC, worker, **prover().header())
    assert_oauth_error(response, 503, "temporarily_unavailable")
    assert response.has_header("Retry-After")
    assert snapshot() == before
    assert (last_event().decision, last_event().error) == ("denied", "temporarily_unavailable")


# -- F3 (medium): a nonce with a non-ASCII character is a 500 --------------------------------


@pytest.mark.rfc("9449-8")
def test_non_ascii_nonce_is_use_dpop_nonce_not_500(worker, cast, token_endpoint, prover):
    """``NonceIssuer.accepts`` compares the nonce's MAC with ``hmac.compare_digest`` on ``str``
    values, which raises ``TypeError`` for a non-ASCII string. Any client (a key of its own
    signs the proof) sends ``nonce: "<current window>.é"`` and gets ``500 server_error``; the
    resource side shares the class.

    Fix: ``accepts`` returns False for a nonce that is not ASCII (``nonce.isascii()``), or
    compares bytes; the answer is then ``400 use_dpop_nonce`` with a fresh ``DPoP-Nonce``."""
    from delegation_idp.provider import dpop

    with with_idp(DPOP_NONCE_LIFETIME=300):
        window = dpop.nonce_issuer().current(time.time()).split(".")[0]
        before = snapshot()
        response = token_endpoint(CC, worker, **prover().header(nonce=f"{window}.é"))
        assert_oauth_error(response, 400, "use_dpop_nonce")
        assert response.has_header("DPoP-Nonce")
    assert snapshot() == before


# -- F4 (low): a refused proof's audit record has no jkt, though its key is known ------------


def _replayed(key: Prover, token_endpoint: Any, worker: Agent) -> str:
    proof = key.proof()
    assert token_endpoint(CC, worker, HTTP_DPOP=proof).status_code == 200
    return proof


PROVEN_BUT_REFUSED = [
    ("replayed", _replayed, "dpop_replayed"),
    ("stale", lambda k, *_: k.proof(iat=int(time.time()) - 3600), "dpop_stale"),
    ("wrong-url", lambda k, *_: k.proof(url="http://testserver/o/introspect/"), "dpop_wrong_url"),
]


@pytest.mark.rfc("9449-11.1")
@pytest.mark.parametrize(
    "make, reason", [p[1:] for p in PROVEN_BUT_REFUSED], ids=[p[0] for p in PROVEN_BUT_REFUSED]
)
def test_refused_proof_audit_names_the_proof_key(worker, cast, token_endpoint, prover, make, reason):
    """docs/dpop.md: a refused proof has "an audit record that names the reason and the proof
    key's thumbprint", and "each audit record of the token endpoint stores the thumbprint of the
    key the request proved, whatever the outcome". ``TokenView.answer`` sets ``record.jkt``
    only after ``check_proof`` returned, so a proof whose signature verified but that is
    replayed, stale or made for another URL is audited with ``jkt`` "": the replay an incident
    responder looks for cannot be tied to the key that made it.

    Fix: ``check_proof`` attaches the verified thumbprint to the ``ProofError`` it raises after
    the signature check (``ProofError.jkt``), and ``token_request_proof`` puts it on the running
    audit record before raising the refusal."""
    key = prover()
    response = token_endpoint(CC, worker, HTTP_DPOP=make(key, token_endpoint, worker))
    assert_oauth_error(response, 400, "invalid_dpop_proof")
    event = last_event()
    assert event.reason == reason
    assert event.jkt == key.jkt


# -- F5 (low): an empty DPoP header is audited as two proofs ---------------------------------


@pytest.mark.rfc("9449-4.3")
@pytest.mark.parametrize("value", ["", "   "], ids=["empty", "blank"])
def test_empty_dpop_header_is_malformed_not_multiple_proofs(worker, cast, token_endpoint, value):
    """``_one_proof`` refuses an empty or blank header with ``dpop_multiple_proofs`` ("Exactly
    one DPoP header is allowed."), because the list of values is not empty: the audit record
    and the client both get a reason that is not what happened (one header, with nothing in it).

    Fix: ``_one_proof`` raises ``dpop_malformed`` (or a ``dpop_missing`` member of the catalogue)
    for an empty or blank value, ``dpop_multiple_proofs`` only for more than one."""
    response = token_endpoint(CC, worker, HTTP_DPOP=value)
    body = assert_oauth_error(response, 400, "invalid_dpop_proof")
    assert last_event().reason == "dpop_malformed", (last_event().reason, body["error_description"])


# -- F6 (low): the implicit grant's refusal of a "DPoP required" party -----------------------


@pytest.mark.rfc("9449-5.2")
def test_implicit_grant_refusal_of_dpop_required_party_is_audited_with_state(cast, client, settings):
    """With the implicit grant enabled (an existing site that keeps it:
    ``COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT`` off) and a party marked "DPoP required" whose
    application uses it, ``response_type=token`` can never be bound (no token request, no
    proof). ``generate_access_token`` refuses it, but from inside oauthlib's implicit grant,
    after consent: the error redirect loses ``state`` (RFC 6749 section 4.2.2.1: required when
    the request had one), carries ``invalid_dpop_proof`` (a code of the token endpoint and the
    resource, not of an authorization response), and no audit record is written
    (``for_oauthlib`` finds no running attempt at this endpoint).

    Fix: refuse ``response_type=token`` for a "DPoP required" party in
    ``AuthorizationView.validate_authorization_request`` (before the consent page), audited
    like the other authorization refusals (``audit_refusal``), as an error redirect with
    ``state`` and an RFC 6749 code (``unauthorized_client``), under a reason of its own."""
    from oauth2_provider.models import get_application_model

    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": False}
    agent = cast["agent1"]
    get_application_model().objects.filter(client_id=agent.client_id).update(
        authorization_grant_type="implicit"
    )
    Party.objects.filter(uri=agent.uri).update(dpop_required=True)
    client.force_login(cast.user)
    params = {
        "response_type": "token",
        "client_id": agent.client_id,
        "redirect_uri": agent.redirect_uri,
        "scope": cast.scope,
        "state": "st-6",
    }
    before, events = snapshot(), AuditEvent.objects.count()
    response = client.post(f"/o/authorize/?{urlencode(params)}", {**params, "allow": "Authorize"})
    assert snapshot() == before
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    # django-oauth-toolkit puts every authorization error of its view in the query, the
    # implicit grant's too (RFC 6749 section 4.2.2.1 says the fragment): read both.
    answer = {**parse_qs(location.query), **parse_qs(location.fragment)}
    assert "access_token" not in answer
    assert answer.get("state") == ["st-6"], response["Location"]
    assert answer.get("error", [""])[0] in {
        "unauthorized_client",
        "unsupported_response_type",
        "access_denied",
    }
    assert AuditEvent.objects.count() == events + 1
    assert (last_event().decision, last_event().client_id) == ("denied", agent.client_id)


# -- F7 (low): a refresh retried in the grace period returns a token its answer misdescribes --


@pytest.mark.rfc("9449-5")
@pytest.mark.parametrize("retry_with", ["no-proof", "another-key"])
def test_refresh_retry_in_grace_period_answers_the_token_it_returns(
    cast, bound_user_token, token_endpoint, prover, settings, retry_with
):
    """With ``REFRESH_TOKEN_GRACE_PERIOD_SECONDS``, django-oauth-toolkit answers a retried
    refresh with the access token the first refresh issued. The token generator has already
    built the answer's ``token_type`` from the *retry's* proof, so a confidential client
    that retries without a proof is told ``"token_type": "Bearer"`` for a token bound to K2,
    and one that retries with K3 is told ``DPoP`` for a token bound to K2 (the audit
    record says K3). RFC 9449 section 5: the client relies on ``token_type`` to know how to
    present the token; here it presents it wrongly and is refused at the resource.

    Fix: when django-oauth-toolkit hands back the previous access token, answer the binding of
    *that* token (its lineage ``jkt``): refuse a retry whose proof is not by its key
    (``dpop_key_mismatch``, or ``dpop_required`` without one), or at least set ``token_type``
    from the returned token's ``cnf``."""
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 120}
    refresh = {"grant_type": "refresh_token", "refresh_token": bound_user_token()["refresh_token"]}
    k2 = prover()
    first = token_endpoint(refresh, cast["agent1"], **k2.header())
    assert first.status_code == 200 and decode(first.json()["access_token"])[1]["cnf"] == {"jkt": k2.jkt}
    k3 = prover()
    headers = k3.header() if retry_with == "another-key" else {}
    retried = token_endpoint(refresh, cast["agent1"], **headers)
    if retried.status_code == 200:
        body = retried.json()
        jkt = decode(body["access_token"])[1].get("cnf", {}).get("jkt", "")
        assert body["token_type"] == ("DPoP" if jkt else "Bearer"), (body["token_type"], jkt)
        assert jkt == (k3.jkt if headers else ""), "the token is not bound to the key the retry proved"
    else:
        assert_oauth_error(retried, 400, "invalid_dpop_proof")


# -- F8 (low): an RSA proof key with a huge public exponent ----------------------------------


def _rsa_key_with_exponent_bits(bits: int, e_bits: int) -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwcrypto import jwk

    base = rsa.generate_private_key(65537, bits).private_numbers()
    p, q = base.p, base.q
    phi = (p - 1) * (q - 1)
    while True:
        e = secrets.randbits(e_bits) | (1 << (e_bits - 1)) | 1
        if math.gcd(e, phi) == 1:
            break
    d = pow(e, -1, phi)
    numbers = rsa.RSAPrivateNumbers(
        p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p), rsa.RSAPublicNumbers(e, p * q)
    )
    return jwk.JWK.from_pyca(numbers.private_key())


@pytest.mark.rfc("9449-4.3")
def test_rsa_proof_key_with_a_huge_public_exponent_is_refused(worker, cast, token_endpoint):
    """``_proof_key`` bounds an RSA proof key's modulus from below (2048 bits) but nothing else:
    a key whose public exponent ``e`` is as long as its modulus is accepted, and every proof
    signed by it costs a full-length modular exponentiation to verify (about 3 ms at 2048 bits,
    10 ms at 3072, against 0.1 ms with e = 65537 on this machine). Proofs are verified before
    client authentication, so any address can buy that 30 to 100 fold amplification per request
    with a key it made once; the token it obtains is bound to that key.

    Fix: accept an RSA proof key only with a small public exponent (e = 65537, or at most 32
    bits, as RFC 7518 keys in practice are) and a modulus of at most 4096 bits; refuse others
    with ``dpop_bad_key`` before any verification."""
    k = _rsa_key_with_exponent_bits(2048, 2047)
    claims = {
        "jti": secrets.token_urlsafe(12),
        "htm": "POST",
        "htu": "http://testserver/o/token/",
        "iat": int(time.time()),
    }
    proof = jose.sign_proof(claims, jose.SigningKey(kid="", alg="RS256", jwk=k))
    e = json.loads(k.export_public())["e"]
    assert int.from_bytes(base64.urlsafe_b64decode(e + "=" * (-len(e) % 4)), "big").bit_length() == 2047
    before = snapshot()
    response = token_endpoint(CC, worker, HTTP_DPOP=proof)
    assert_oauth_error(response, 400, "invalid_dpop_proof")
    assert last_event().reason == "dpop_bad_key"
    assert snapshot() == before


# -- F9 (low): a nonce lifetime under one second passes the checks and breaks the endpoint ----


@pytest.mark.parametrize("name", ["DPOP_NONCE_LIFETIME", "RESOURCE_DPOP_NONCE_LIFETIME"])
@pytest.mark.parametrize("value", [0.5, -60])
def test_invalid_nonce_lifetime_is_a_system_check_error(name, value):
    """``nonce_issuer`` treats any truthy lifetime as on and builds ``NonceIssuer(lifetime=int(v))``,
    which raises ``ValueError`` below one second. No system check looks at the two settings, so
    ``DPOP_NONCE_LIFETIME = 0.5`` (or a negative value) passes ``manage.py check`` and then every
    token endpoint request, with or without a proof, dies in ``conclude()`` (``nonce_headers``)
    as Django's HTML 500 page.

    Fix: a system check (``delegation_idp.E0xx``) that each lifetime is None or an integer of at
    least 1, beside E025/E026 in ``check_dpop``."""
    with with_idp(**{name: value}):
        found = [m for m in checks.run_checks() if m.id and m.id.startswith("delegation_idp.")]
    assert any(name in m.msg for m in found), [m.id for m in found]


# -- F10 (low): an opaque Bearer access token with a DPoP-bound refresh token ----------------


@pytest.mark.rfc("9449-5")
def test_opaque_bearer_answer_does_not_bind_the_refresh_token_silently(cast, client, token_endpoint, prover):
    """With ``JWT_ACCESS_TOKENS = "agents"`` an application outside the parties keeps opaque
    tokens: a public client that sends a proof gets ``"token_type": "Bearer"``, which RFC 9449
    section 5 tells the client to read as "this server does not bind tokens" (so it may stop
    sending proofs). Yet ``bind_refresh_token`` bound its refresh token to the key, so the next
    refresh without a proof is refused with ``dpop_required``, whose description ("This
    client's tokens must be DPoP-bound") names a party setting this client does not have.

    Fix: bind a public client's refresh token only when the access token issued with it is bound
    (the generator's issuance carries ``jkt``), or bind both; never one silently."""
    from oauth2_provider.models import get_application_model

    app = get_application_model().objects.create(
        name="legacy-public",
        client_type="public",
        authorization_grant_type="authorization-code",
        redirect_uris="https://legacy.example.com/cb",
        client_secret="",
        hash_client_secret=False,
    )
    legacy = Agent("legacy", app.client_id, "", "", "https://legacy.example.com/cb")
    with with_idp(JWT_ACCESS_TOKENS="agents"):
        code, verifier = authorize_code(client, legacy, cast.user, "tasks.read")
        form = {**code_form(legacy, code, verifier), "client_id": legacy.client_id}
        issued = token_endpoint(form, None, **prover().header())
        assert issued.status_code == 200, issued.content
        body = issued.json()
        assert body["token_type"] == "Bearer" and body["access_token"].count(".") != 2  # opaque, unbound
        refresh = {
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": legacy.client_id,
        }
        refreshed = token_endpoint(refresh, None)
    assert refreshed.status_code == 200, refreshed.content
