"""Client authentication at the token, introspection and revocation endpoints: the
failure lockout is keyed on the identity the credentials name (never on a body value
beside them), a Basic and body ``client_id`` that differ are refused, and a 401 is
challenged in the scheme the client used (RFC 6749 sections 2.3 and 5.2, RFC 7009)."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlencode

import pytest

from delegation_idp import jose
from delegation_idp.models import AuditEvent
from tests.conftest import ACCESS_TOKEN_TYPE
from tests.helpers import assert_oauth_error, snapshot, with_idp

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
LIMIT = 3
ATTACKER = "203.0.113.66"

ENDPOINTS = {
    "token": "/o/token/",
    "introspection": "/o/introspect/",
    "revocation": "/o/revoke_token/",
}
METHODS = ("basic", "post", "assertion", "none")


@pytest.fixture
def lockout():
    with with_idp(CLIENT_AUTH_FAILURE_LIMIT=LIMIT, CLIENT_AUTH_FAILURE_WINDOW=120, THROTTLE_RATES={}):
        yield


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def endpoint_form(endpoint: str) -> dict[str, str]:
    if endpoint == "token":
        return {
            "grant_type": GRANT,
            "subject_token": "not-a-token",
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "audience": "https://agent2.example.com",
        }
    return {"token": "not-a-token"}


@pytest.fixture
def post(client: Any):
    def send(endpoint: str, data: dict[str, str], authorization: str | None = None, **extra: Any) -> Any:
        headers = {"REMOTE_ADDR": ATTACKER, **extra}
        if authorization is not None:
            headers["HTTP_AUTHORIZATION"] = authorization
        return client.post(
            ENDPOINTS[endpoint],
            urlencode(data),
            content_type="application/x-www-form-urlencoded",
            **headers,
        )

    return send


@pytest.fixture
def wrong_key_assertion(cast: Any, assertion: Any, agent_key: Any):
    """An assertion naming agent1, signed by a key that is not agent1's: a failed guess."""
    stranger = jose.generate_key("ES256")
    return lambda: assertion(key=jose.SigningKey(kid=agent_key.kid, alg="ES256", jwk=stranger.jwk))


@pytest.fixture
def failed_attempt(cast: Any, post: Any, wrong_key_assertion: Any, assertion_params: Any):
    """One failed client authentication naming agent1, by ``method``, at ``endpoint``."""
    agent = cast["agent1"]

    def attempt(endpoint: str, method: str) -> Any:
        form = endpoint_form(endpoint)
        if method == "basic":
            return post(endpoint, form, basic(agent.client_id, "wrong"))
        if method == "post":
            return post(endpoint, {**form, "client_id": agent.client_id, "client_secret": "wrong"})
        if method == "assertion":
            return post(endpoint, {**form, **assertion_params(wrong_key_assertion())})
        return post(endpoint, {**form, "client_id": agent.client_id})

    return attempt


def assert_basic_challenge(response: Any) -> None:
    challenge = response.get("WWW-Authenticate", "")
    assert challenge.startswith('Basic realm="'), challenge
    assert "bearer" not in challenge.lower()


# -- the identity in the credentials ---------------------------------------------------


@pytest.mark.rfc("6749-2.3.1")
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_a_decoy_body_client_id_does_not_divert_the_lockout(cast, post, lockout, endpoint, user_token):
    """Guessing agent1's secret over Basic with another ``client_id`` in the body: every
    guess counts against agent1 at this address, so the guessing reaches 429."""
    agent = cast["agent1"]
    statuses = []
    for n in range(LIMIT + 5):
        form = {**endpoint_form(endpoint), "client_id": f"decoy-{n % 2}"}
        response = post(endpoint, form, basic(agent.client_id, f"guess-{n}"))
        assert response.status_code in (400, 401, 429), response.content
        assert response["Cache-Control"] == "no-store"
        statuses.append(response.status_code)
    assert 429 not in statuses[:LIMIT], statuses
    assert set(statuses[LIMIT:]) == {429}, statuses
    # agent1's own secret does not help from this address for the rest of the window ...
    good = post(endpoint, endpoint_form(endpoint), agent.basic)
    assert_oauth_error(good, 429, "slow_down")
    assert int(good["Retry-After"]) == 120
    # ... while from its own address agent1 is not locked out by someone else's guessing.
    elsewhere = post(endpoint, endpoint_form(endpoint), agent.basic, REMOTE_ADDR="198.51.100.20")
    assert elsewhere.status_code in (200, 400), elsewhere.content


@pytest.mark.rfc("6749-2.3.1")
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_basic_and_a_different_body_client_id_is_invalid_request(cast, post, endpoint):
    agent = cast["agent1"]
    before = snapshot()
    response = post(endpoint, {**endpoint_form(endpoint), "client_id": cast["agent2"].client_id}, agent.basic)
    body = assert_oauth_error(response, 400, "invalid_request")
    assert "client_id" in body["error_description"]
    assert snapshot() == before
    event = AuditEvent.objects.order_by("-id").first()
    assert event is not None
    assert (event.decision, event.reason, event.client_id) == (
        "denied",
        "client_id_mismatch",
        agent.client_id,
    )


@pytest.mark.rfc("6749-2.3.1")
def test_basic_with_the_same_body_client_id_is_accepted(cast, post, user_token):
    agent = cast["agent1"]
    form = {**endpoint_form("token"), "subject_token": user_token, "client_id": agent.client_id}
    response = post("token", form, agent.basic)
    assert response.status_code == 200, response.content


@pytest.mark.rfc("7521-4.2")
def test_an_assertion_with_a_different_body_client_id_is_refused_and_counted(
    cast, post, lockout, wrong_key_assertion, assertion_params
):
    """The assertion names agent1; a ``client_id=decoy`` beside it must not take the count."""
    statuses = []
    for _ in range(LIMIT + 2):
        form = {**endpoint_form("token"), **assertion_params(wrong_key_assertion()), "client_id": "decoy"}
        statuses.append(post("token", form).status_code)
    # RFC 7521 section 4.2.1: a client assertion that does not authenticate is invalid_client.
    assert statuses[:LIMIT] == [401] * LIMIT and set(statuses[LIMIT:]) == {429}, statuses
    assert_oauth_error(post("token", endpoint_form("token"), cast["agent1"].basic), 429, "slow_down")


@pytest.mark.rfc("6749-5.2")
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_failures_lock_the_identity_the_credentials_name(
    cast, failed_attempt, post, lockout, endpoint, method
):
    """Endpoints x authentication methods: ``LIMIT`` failures naming agent1 by any method
    lock agent1 out at that address, at that endpoint, even with the right secret."""
    for _ in range(LIMIT):
        assert_oauth_error(failed_attempt(endpoint, method), 401, "invalid_client")
    locked = post(endpoint, endpoint_form(endpoint), cast["agent1"].basic)
    assert_oauth_error(locked, 429, "slow_down")
    assert int(locked["Retry-After"]) == 120
    # agent2 at the same address is not affected.
    other = post(endpoint, endpoint_form(endpoint), cast["agent2"].basic)
    assert other.status_code in (200, 400), other.content


# -- the challenge matches the scheme ---------------------------------------------------


@pytest.mark.rfc("6749-5.2")
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_the_challenge_of_a_failed_authentication(failed_attempt, endpoint, method):
    """After HTTP Basic, a ``Basic`` challenge; after body authentication (or none) never
    ``Bearer``: a client is not authenticated with a bearer token. Every 401 carries a
    challenge (RFC 9110 section 15.5.2), and Basic is the one HTTP scheme these endpoints take."""
    response = failed_attempt(endpoint, method)
    assert_oauth_error(response, 401, "invalid_client")
    assert_basic_challenge(response)
    realm = {"token": "token", "introspection": "introspection", "revocation": "revocation"}[endpoint]
    assert response["WWW-Authenticate"] == f'Basic realm="{realm}"'


@pytest.mark.rfc("6749-5.2")
def test_undecodable_basic_credentials_are_challenged_as_basic_everywhere(post):
    for endpoint in ENDPOINTS:
        response = post(endpoint, endpoint_form(endpoint), "Basic %%%")
        assert_oauth_error(response, 401, "invalid_client")
        assert_basic_challenge(response)


# -- revocation (RFC 7009) --------------------------------------------------------------


@pytest.mark.rfc("7009-2.2.1")
def test_revocation_guessing_reaches_429_and_every_request_is_audited(cast, post, lockout):
    agent = cast["agent1"]
    AuditEvent.objects.all().delete()
    statuses = [
        post("revocation", {"token": "not-a-token"}, basic(agent.client_id, f"guess-{n}")).status_code
        for n in range(20)
    ]
    assert statuses[:LIMIT] == [401] * LIMIT and set(statuses[LIMIT:]) == {429}, statuses
    events = list(AuditEvent.objects.filter(event="revocation_request").order_by("id"))
    assert len(events) == 20
    assert {e.client_id for e in events} == {agent.client_id}
    assert {e.client_ip for e in events} == {ATTACKER}
    assert [e.reason for e in events[:LIMIT]] == ["invalid_client"] * LIMIT
    assert {e.reason for e in events[LIMIT:]} == {"throttled"}
    assert all(e.decision == "denied" for e in events)


@pytest.mark.rfc("7009-2.2")
def test_revocation_of_an_unknown_token_is_200_and_audited(cast, post):
    response = post("revocation", {"token": "no-such-token"}, cast["agent1"].basic)
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    event = AuditEvent.objects.order_by("-id").first()
    assert event is not None
    assert (event.event, event.decision, event.client_id) == (
        "revocation_request",
        "granted",
        cast["agent1"].client_id,
    )


@pytest.mark.rfc("7009-2.1")
def test_revocation_still_revokes_the_subtree(cast, chain, post):
    from delegation_idp.models import TokenLineage
    from tests.helpers import decode

    response = post(
        "revocation", {"token": chain[0], "token_type_hint": "access_token"}, cast["agent1"].basic
    )
    assert response.status_code == 200, response.content
    rows = TokenLineage.objects.filter(jti__in=[decode(t)[1]["jti"] for t in chain])
    assert rows.count() == len(chain) and all(r.revoked_at is not None for r in rows)
    assert chain[0] not in str(list(AuditEvent.objects.values()))


def test_revocation_is_address_throttled_and_size_limited(cast, post):
    with with_idp(THROTTLE_RATES={"address": "2/min"}):
        for _ in range(2):
            assert post("revocation", {"token": "x"}, cast["agent1"].basic).status_code == 200
        limited = post("revocation", {"token": "x"}, cast["agent1"].basic)
        assert_oauth_error(limited, 429, "slow_down")
        assert int(limited["Retry-After"]) >= 1
    big = post("revocation", {"token": "x" * 40_000}, cast["agent1"].basic)
    assert_oauth_error(big, 413, "invalid_request")
    event = AuditEvent.objects.order_by("-id").first()
    assert event is not None and (event.event, event.reason) == ("revocation_request", "request_too_large")


def test_revocation_accepts_post_only(cast, client):
    response = client.get("/o/revoke_token/")
    assert_oauth_error(response, 405, "invalid_request")
    assert response["Allow"] == "POST"


# -- the request shape, at every endpoint of the guard ---------------------------------


@pytest.mark.rfc("6749-3.2")
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_parameters_in_the_query_string_are_refused(cast, client, lockout, endpoint):
    """Credentials in the URL would skip the lockout (which reads the body) and land in
    access logs: any query string is ``400 invalid_request``, counted against nobody, and a
    guessing run through it still reaches the lockout of the client it names."""
    agent = cast["agent1"]
    statuses = []
    for n in range(LIMIT + 2):
        query = urlencode({"client_id": agent.client_id, "client_secret": f"guess-{n}"})
        response = client.post(
            f"{ENDPOINTS[endpoint]}?{query}",
            urlencode(endpoint_form(endpoint)),
            content_type="application/x-www-form-urlencoded",
            REMOTE_ADDR=ATTACKER,
        )
        assert_oauth_error(response, 400, "invalid_request")
        statuses.append(response.status_code)
    event = AuditEvent.objects.order_by("-id").first()
    assert event is not None and event.reason == "query_parameters"
    assert set(statuses) == {400}, statuses


@pytest.mark.rfc("6749-5.2")
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize(
    "body",
    [b"token=a%00b", b"client_id=a%00b&token=x", b"token=%ZZ", b"token=%ff"],
    ids=["nul-token", "nul-client-id", "bad-escape", "not-utf8"],
)
def test_a_malformed_form_is_invalid_request_at_every_endpoint(cast, client, endpoint, body):
    """Bad bytes are the client's error (400), never a storage outage (503) on any database."""
    form = body if endpoint != "token" else body + b"&grant_type=client_credentials"
    response = client.post(
        ENDPOINTS[endpoint],
        form,
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=cast["agent1"].basic,
    )
    assert_oauth_error(response, 400, "invalid_request")
    event = AuditEvent.objects.order_by("-id").first()
    assert event is not None and event.reason == "bad_encoding"


@pytest.mark.parametrize("endpoint", ["introspection", "revocation"])
def test_only_form_bodies_are_read(cast, client, endpoint):
    response = client.post(
        ENDPOINTS[endpoint],
        '{"token": "x"}',
        content_type="application/json",
        HTTP_AUTHORIZATION=cast["agent1"].basic,
    )
    assert_oauth_error(response, 400, "invalid_request")
    event = AuditEvent.objects.order_by("-id").first()
    assert event is not None and event.reason == "bad_content_type"


def test_no_route_authenticates_clients_outside_the_guard(client, cast):
    """django-oauth-toolkit's device-authorization endpoint (RFC 8628) authenticates clients
    behind none of the guard; this provider does not offer the device flow, and says so."""
    response = client.post(
        "/o/device-authorization/",
        urlencode({"client_id": cast["agent1"].client_id}),
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=basic(cast["agent1"].client_id, "wrong"),
    )
    assert response.status_code == 404
    metadata = client.get("/.well-known/oauth-authorization-server").json()
    assert "urn:ietf:params:oauth:grant-type:device_code" not in metadata["grant_types_supported"]
    assert "device_authorization_endpoint" not in metadata


@pytest.mark.parametrize("endpoint", ["introspection", "revocation"])
def test_a_nul_in_a_multipart_form_is_invalid_request(cast, client, endpoint):
    """Multipart forms are read here too; a NUL in one is refused like one in a urlencoded body."""
    response = client.post(ENDPOINTS[endpoint], {"token": "a\0b"}, HTTP_AUTHORIZATION=cast["agent1"].basic)
    assert_oauth_error(response, 400, "invalid_request")
    event = AuditEvent.objects.order_by("-id").first()
    assert event is not None and event.reason == "bad_encoding"
