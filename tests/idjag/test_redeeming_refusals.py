"""Leg 2 refused: every bad ID-JAG gets its exact RFC 6749 section 5.2 / RFC 7523 section 3.1
error, ``Cache-Control: no-store``, no token, nothing in lineage, and an audit record with its
reason from the catalogue."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from delegation_idp import jose
from delegation_idp.idjag import TYP
from delegation_idp.models import AuditEvent, TrustedIssuer
from tests.helpers import assert_oauth_error, snapshot
from tests.idjag.conftest import ENTERPRISE, ENTERPRISE_JWKS, StaticFetcher

pytestmark = pytest.mark.usefixtures("trusted")


def refused(response: Any, before: tuple[int, int], status: int, error: str, reason: str) -> None:
    assert_oauth_error(response, status, error)
    assert snapshot() == before, "a refused request issued something"
    event = AuditEvent.objects.order_by("-id").first()
    assert event is not None
    assert (event.event, event.decision, event.error, event.reason) == (
        "id_jag_redemption",
        "denied",
        error,
        reason,
    )
    assert event.jti == ""


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: str = "") -> str:
    return f"{b64(header)}.{b64(claims)}.{signature}"


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


# (id, status, error, reason, builder(make_id_jag, cast, key) -> assertion)
CASES = [
    (
        "untrusted-issuer",
        400,
        "invalid_grant",
        "id_jag_untrusted_issuer",
        lambda make, cast, key: make(iss="https://idp.untrusted.example.org"),
    ),
    (
        "trusted-issuer-unknown-key",
        400,
        "invalid_grant",
        "id_jag_unknown_kid",
        lambda make, cast, key: make(key=jose.generate_key("ES256")),
    ),
    (
        "same-kid-other-key",
        400,
        "invalid_grant",
        "id_jag_bad_signature",
        lambda make, cast, key: make(
            key=jose.SigningKey(kid=key.kid, alg="ES256", jwk=jose.generate_key("ES256").jwk)
        ),
    ),
    (
        "alg-none",
        400,
        "invalid_grant",
        "id_jag_bad_alg",
        lambda make, cast, key: unsigned({"alg": "none", "kid": key.kid, "typ": TYP}, claims_of(make())),
    ),
    (
        "alg-hs256",
        400,
        "invalid_grant",
        "id_jag_bad_alg",
        lambda make, cast, key: unsigned(
            {"alg": "HS256", "kid": key.kid, "typ": TYP}, claims_of(make()), "c2ln"
        ),
    ),
    (
        "alg-not-the-issuers",
        400,
        "invalid_grant",
        "id_jag_bad_alg",
        lambda make, cast, key: make(key=jose.generate_key("EdDSA")),
    ),
    (
        "expired",
        400,
        "invalid_grant",
        "id_jag_expired",
        lambda make, cast, key: make(iat=int(time.time()) - 900, exp=int(time.time()) - 600),
    ),
    (
        "issued-in-the-future",
        400,
        "invalid_grant",
        "id_jag_not_yet_valid",
        lambda make, cast, key: make(iat=int(time.time()) + 600, exp=int(time.time()) + 900),
    ),
    (
        "client-id-of-another-client",
        400,
        "invalid_grant",
        "id_jag_client_mismatch",
        lambda make, cast, key: make(client_id=cast["agent1"].client_id),
    ),
    (
        "aud-another-server",
        400,
        "invalid_grant",
        "id_jag_bad_aud",
        lambda make, cast, key: make(aud="https://as.elsewhere.example.org"),
    ),
    (
        "aud-with-another-server",
        400,
        "invalid_grant",
        "id_jag_bad_aud",
        lambda make, cast, key: make(aud=["http://testserver", "https://as.elsewhere.example.org"]),
    ),
    ("typ-jwt", 400, "invalid_grant", "id_jag_bad_typ", lambda make, cast, key: make(typ="JWT")),
    ("typ-access-token", 400, "invalid_grant", "id_jag_bad_typ", lambda make, cast, key: make(typ="at+jwt")),
    ("no-jti", 400, "invalid_grant", "id_jag_missing_claim", lambda make, cast, key: make(jti=None)),
    (
        "no-client-id",
        400,
        "invalid_grant",
        "id_jag_missing_claim",
        lambda make, cast, key: make(client_id=None),
    ),
    ("malformed", 400, "invalid_grant", "id_jag_malformed", lambda make, cast, key: "not.a.jwt"),
    ("too-large", 400, "invalid_grant", "id_jag_too_large", lambda make, cast, key: make(pad="x" * 9000)),
    ("act-too-deep", 400, "invalid_grant", "id_jag_bad_act", lambda make, cast, key: make(act=nested(8))),
    ("act-malformed", 400, "invalid_grant", "id_jag_bad_act", lambda make, cast, key: make(act={"sub": 7})),
    (
        "unknown-user",
        400,
        "invalid_grant",
        "id_jag_unknown_user",
        lambda make, cast, key: make(sub="nobody-here"),
    ),
    (
        "resource-of-no-party",
        400,
        "invalid_target",
        "target_unknown",
        lambda make, cast, key: make(resource="https://unknown.example.org/mcp"),
    ),
    (
        "no-resource-at-all",
        400,
        "invalid_target",
        "id_jag_no_resource",
        lambda make, cast, key: make(resource=None),
    ),
]


def nested(depth: int) -> dict[str, Any]:
    act: dict[str, Any] = {"sub": "https://a0.example.com"}
    for i in range(1, depth):
        act = {"sub": f"https://a{i}.example.com", "act": act}
    return act


@pytest.mark.rfc("7523-3.1")
@pytest.mark.parametrize(("case", "status", "error", "reason", "build"), CASES, ids=[c[0] for c in CASES])
def test_bad_id_jag(case, status, error, reason, build, redeem, make_id_jag, cast, enterprise_key):
    assertion = build(make_id_jag, cast, enterprise_key)
    before = snapshot()
    refused(redeem(assertion), before, status, error, reason)


@pytest.mark.rfc("draft-ietf-oauth-identity-assertion-authz-grant-5.1")
def test_a_replayed_id_jag(redeem, make_id_jag):
    assertion = make_id_jag()
    assert redeem(assertion).status_code == 200
    before = snapshot()
    refused(redeem(assertion), before, 400, "invalid_grant", "id_jag_replayed")


def test_an_access_token_where_an_id_jag_is_expected(redeem, user_token):
    before = snapshot()
    refused(redeem(user_token), before, 400, "invalid_grant", "id_jag_bad_typ")


def test_a_client_the_issuer_does_not_trust(redeem, make_id_jag, cast):
    before = snapshot()
    refused(
        redeem(make_id_jag(client_id=cast["agent1"].client_id), agent="agent1"),
        before,
        400,
        "unauthorized_client",
        "id_jag_client_not_allowed",
    )


def test_a_disabled_issuer(redeem, make_id_jag, trusted):
    TrustedIssuer.objects.filter(pk=trusted.pk).update(enabled=False)
    before = snapshot()
    refused(redeem(make_id_jag()), before, 400, "invalid_grant", "id_jag_untrusted_issuer")


def test_a_resource_the_id_jag_does_not_name(redeem, make_id_jag, cast):
    before = snapshot()
    response = redeem(make_id_jag(), resource="https://agent1.example.com")
    refused(response, before, 400, "invalid_target", "id_jag_resource_mismatch")


def test_no_requested_scope_is_asserted(redeem, make_id_jag):
    before = snapshot()
    refused(
        redeem(make_id_jag(scope="tasks.read"), scope="tasks.write"),
        before,
        400,
        "invalid_scope",
        "id_jag_scope_empty",
    )


def test_missing_assertion(token_endpoint, cast):
    from delegation_idp.rfc7523 import GRANT_TYPE

    before = snapshot()
    response = token_endpoint({"grant_type": GRANT_TYPE}, cast["agent2"])
    refused(response, before, 400, "invalid_request", "missing_parameter")


def test_unauthenticated(token_endpoint, make_id_jag):
    from delegation_idp.rfc7523 import GRANT_TYPE

    before = snapshot()
    response = token_endpoint({"grant_type": GRANT_TYPE, "assertion": make_id_jag()})
    refused(response, before, 401, "invalid_client", "invalid_client")


def test_the_issuers_keys_cannot_be_fetched(redeem, make_id_jag):
    StaticFetcher.documents.pop(ENTERPRISE_JWKS)
    before = snapshot()
    response = redeem(make_id_jag())
    refused(response, before, 503, "temporarily_unavailable", "id_jag_keys_unavailable")


def test_a_jwks_that_is_no_key_set(redeem, make_id_jag):
    StaticFetcher.documents[ENTERPRISE_JWKS] = {"keys": [{"kid": str(i)} for i in range(50)]}
    before = snapshot()
    refused(redeem(make_id_jag()), before, 503, "temporarily_unavailable", "id_jag_keys_unavailable")


def test_a_refused_assertion_is_never_echoed(redeem, make_id_jag):
    assertion = make_id_jag(aud="https://as.elsewhere.example.org")
    response = redeem(assertion)
    assert assertion.encode() not in response.content
    event = AuditEvent.objects.order_by("-id").first()
    assert event is not None and assertion not in json.dumps(
        {f.name: str(getattr(event, f.name)) for f in AuditEvent._meta.fields}
    )
    assert ENTERPRISE not in response.content.decode()


def test_a_disabled_client_party(redeem, make_id_jag, cast):
    from delegation_idp.models import Party

    Party.objects.filter(uri=cast["agent2"].uri).update(enabled=False)
    before = snapshot()
    refused(redeem(make_id_jag()), before, 400, "unauthorized_client", "actor_disabled")


def test_a_user_field_the_user_model_lacks_is_no_500(redeem, make_id_jag, trusted):
    TrustedIssuer.objects.filter(pk=trusted.pk).update(user_field="no_such_field")
    before = snapshot()
    refused(redeem(make_id_jag()), before, 400, "invalid_grant", "id_jag_unknown_user")


def test_a_resource_of_a_service_the_issuer_may_not_reach(redeem, make_id_jag, cast):
    """A trusted issuer reaches the services its registration names, not every one here."""
    before = snapshot()
    response = redeem(make_id_jag(resource=cast["mcp-server1"].uri))
    refused(response, before, 400, "invalid_target", "id_jag_resource_not_allowed")


def test_an_issuer_that_names_no_service_reaches_nothing(redeem, make_id_jag, trusted):
    trusted.services.clear()
    before = snapshot()
    refused(redeem(make_id_jag()), before, 400, "invalid_target", "id_jag_resource_not_allowed")
