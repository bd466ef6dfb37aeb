"""Leg 2: redeeming an ID-JAG with the RFC 7523 jwt-bearer grant
(draft-ietf-oauth-identity-assertion-authz-grant section 5)."""

from __future__ import annotations

from typing import Any

import pytest

from delegation_idp import jose
from delegation_idp.conf import idp_settings
from delegation_idp.idjag import GRANT_PROFILE
from delegation_idp.models import AuditEvent, ExternalIdentity, TokenLineage, TrustedIssuer
from delegation_idp.rfc7523 import GRANT_TYPE
from tests.helpers import decode
from tests.idjag.conftest import ENTERPRISE, ENTERPRISE_JWKS, StaticFetcher

pytestmark = pytest.mark.usefixtures("trusted")


@pytest.mark.rfc("7523-2.1")
def test_an_id_jag_is_redeemed_for_an_access_token(redeem, make_id_jag, cast, make_validator):
    response = redeem(make_id_jag(), resource=cast.resource_server, scope="tasks.read")
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert (body["token_type"], body["scope"]) == ("Bearer", "tasks.read")
    header, claims = decode(body["access_token"])
    assert header["typ"] == "at+jwt"
    assert claims["aud"] == cast.resource_server
    assert claims["client_id"] == cast["agent2"].client_id
    assert claims["sub"] == idp_settings.SUBJECT_RESOLVER(cast.user)  # the local user's subject
    assert claims["act"] == {"sub": "https://agent.enterprise.example.com"}
    seen = make_validator(cast.resource_server).validate(body["access_token"])
    assert seen.actors == ("https://agent.enterprise.example.com",)
    assert seen.scopes == frozenset({"tasks.read"})


@pytest.mark.rfc("draft-ietf-oauth-identity-assertion-authz-grant-5.1")
def test_the_scope_is_the_intersection(redeem, make_id_jag, cast):
    response = redeem(make_id_jag(scope="tasks.read tasks.write"), scope="tasks.write profile")
    assert response.json()["scope"] == "tasks.write"
    response = redeem(make_id_jag(scope="tasks.read"))
    assert response.json()["scope"] == "tasks.read"


def test_without_a_resource_parameter_the_id_jags_resource_is_the_audience(redeem, make_id_jag, cast):
    claims = decode(redeem(make_id_jag()).json()["access_token"])[1]
    assert claims["aud"] == cast.resource_server


def test_a_nested_chain_is_carried_on(redeem, make_id_jag):
    chain = {
        "sub": "https://agent2.enterprise.example.com",
        "act": {"sub": "https://agent1.enterprise.example.com"},
    }
    claims = decode(redeem(make_id_jag(act=chain)).json()["access_token"])[1]
    assert claims["act"] == chain


def test_recorded_in_lineage_and_audit(redeem, make_id_jag, cast):
    claims = decode(redeem(make_id_jag()).json()["access_token"])[1]
    row = TokenLineage.objects.get(jti=claims["jti"])
    assert (row.grant_type, row.parent_jti, row.root_jti, row.user_id) == (
        GRANT_TYPE,
        "",
        claims["jti"],
        cast.user.pk,
    )
    assert row.chain == ("https://agent.enterprise.example.com",)
    event = AuditEvent.objects.get(jti=claims["jti"])
    assert (event.event, event.decision, event.reason, event.grant_type) == (
        "id_jag_redemption",
        "granted",
        "allowed",
        GRANT_TYPE,
    )
    assert event.client_id == cast["agent2"].client_id


def test_the_redeemed_token_is_revocable_and_introspectable(
    redeem, make_id_jag, cast, introspect, revoke_endpoint
):
    token = redeem(make_id_jag()).json()["access_token"]
    assert introspect(token, cast["agent2"]).json()["active"] is True
    assert revoke_endpoint(token, cast["agent2"]).status_code == 200
    assert introspect(token, cast["agent2"]).json()["active"] is False


def test_the_mcp_sdks_request_is_accepted_as_it_sends_it(make_id_jag, cast, client):
    """The request ``IdentityAssertionOAuthProvider`` builds (client_secret_post, client_id,
    resource, scope), sent byte for byte."""
    from mcp.client.auth.extensions.identity_assertion import IdentityAssertionOAuthProvider

    class Storage:
        async def get_tokens(self) -> None:
            return None

        async def set_tokens(self, tokens: Any) -> None:
            return None

    async def assertion(audience: str, resource: str) -> str:
        return make_id_jag(resource=resource)

    agent = cast["agent2"]
    provider = IdentityAssertionOAuthProvider(
        server_url=cast.resource_server,
        storage=Storage(),
        client_id=agent.client_id,
        client_secret=agent.client_secret,
        issuer="http://testserver",
        assertion_provider=assertion,
    )
    provider._token_endpoint = "http://testserver/o/token/"
    built = provider._build_token_request("tasks.read", make_id_jag(resource=provider._resource))
    response = client.post("/o/token/", built.content, content_type=built.headers["Content-Type"])
    assert response.status_code == 200, response.content
    assert response.json()["scope"] == "tasks.read"


@pytest.mark.rfc("draft-ietf-oauth-identity-assertion-authz-grant-6")
def test_metadata_lists_the_grant_and_the_profile(client):
    metadata = client.get("/.well-known/oauth-authorization-server").json()
    assert GRANT_TYPE in metadata["grant_types_supported"]
    assert metadata["authorization_grant_profiles_supported"] == [GRANT_PROFILE]


# -- keys: cached, refreshed on an unknown kid, rate-limited --------------------------------------


def test_the_jwks_is_fetched_once_and_cached(redeem, make_id_jag):
    assert redeem(make_id_jag()).status_code == 200
    assert redeem(make_id_jag()).status_code == 200
    assert StaticFetcher.fetched == [ENTERPRISE_JWKS]


def test_a_rotated_key_is_found_by_one_refetch_and_an_unknown_kid_waits(redeem, make_id_jag, enterprise_key):
    assert redeem(make_id_jag()).status_code == 200
    rotated = jose.generate_key("ES256")
    StaticFetcher.documents[ENTERPRISE_JWKS] = {"keys": [enterprise_key.public_jwk(), rotated.public_jwk()]}
    # The set was fetched a moment ago: a refresh now is rate-limited, the new kid unknown yet.
    response = redeem(make_id_jag(key=rotated))
    assert response.json()["error"] == "invalid_grant"
    assert len(StaticFetcher.fetched) == 1


def test_an_unknown_kid_refetches_once_the_interval_has_passed(redeem, make_id_jag, enterprise_key):
    from django.core.cache import cache

    from delegation_idp.provider import trusted_issuers

    assert redeem(make_id_jag()).status_code == 200
    rotated = jose.generate_key("ES256")
    StaticFetcher.documents[ENTERPRISE_JWKS] = {"keys": [enterprise_key.public_jwk(), rotated.public_jwk()]}
    cache.delete(trusted_issuers._cache_key("refresh", ENTERPRISE, ENTERPRISE_JWKS))  # the interval passed
    assert redeem(make_id_jag(key=rotated)).status_code == 200
    assert len(StaticFetcher.fetched) == 2
    assert redeem(make_id_jag(key=jose.generate_key("ES256"))).json()["error"] == "invalid_grant"
    assert len(StaticFetcher.fetched) == 2  # the made-up kid waits for the next interval


def test_a_changed_jwks_uri_is_fetched_at_once(redeem, make_id_jag, trusted, enterprise_key):
    """The admin moved the issuer's key set (its old host compromised): the set cached from the
    old address is not used for the new one."""
    from delegation_idp.models import TrustedIssuer

    assert redeem(make_id_jag()).status_code == 200
    moved = f"{ENTERPRISE}/keys-v2"
    StaticFetcher.documents[moved] = {"keys": []}
    TrustedIssuer.objects.filter(pk=trusted.pk).update(jwks_uri=moved)
    assert redeem(make_id_jag()).json()["error"] == "invalid_grant"  # the new set lacks the kid
    assert StaticFetcher.fetched == [ENTERPRISE_JWKS, moved]


def test_a_failed_fetch_is_not_tried_again_within_the_interval(redeem, make_id_jag):
    StaticFetcher.documents.pop(ENTERPRISE_JWKS)
    for _ in range(5):
        assert redeem(make_id_jag()).status_code == 503
    assert StaticFetcher.fetched == [ENTERPRISE_JWKS]


# -- users ---------------------------------------------------------------------------------------


def test_just_in_time_users_are_linked_to_issuer_and_sub(redeem, make_id_jag, trusted, cast):
    TrustedIssuer.objects.filter(pk=trusted.pk).update(user_mapping=TrustedIssuer.JUST_IN_TIME)
    # The enterprise's sub equals a local username: just-in-time never maps it onto that user.
    first = decode(redeem(make_id_jag(sub=cast.user.get_username())).json()["access_token"])[1]
    link = ExternalIdentity.objects.get(issuer=trusted, subject=cast.user.get_username())
    assert link.user.pk != cast.user.pk
    assert not link.user.has_usable_password()
    again = decode(redeem(make_id_jag(sub=cast.user.get_username())).json()["access_token"])[1]
    assert first["sub"] == again["sub"] == idp_settings.SUBJECT_RESOLVER(link.user)
    assert ExternalIdentity.objects.count() == 1


def test_an_existing_user_by_another_claim(redeem, make_id_jag, trusted, cast):
    TrustedIssuer.objects.filter(pk=trusted.pk).update(subject_claim="email", user_field="email")
    cast.user.email = "user@enterprise.example.com"
    cast.user.save()
    response = redeem(make_id_jag(sub="opaque-123", email="user@enterprise.example.com"))
    assert response.status_code == 200, response.content
    assert decode(response.json()["access_token"])[1]["sub"] == idp_settings.SUBJECT_RESOLVER(cast.user)


@pytest.mark.rfc("status-list-21-6.2")
def test_the_redeemed_access_token_takes_a_status_list_entry(redeem, make_id_jag):
    from tests.statuslist.conftest import reference

    token = redeem(make_id_jag()).json()["access_token"]
    idx, uri = reference(token)
    row = TokenLineage.objects.get(jti=decode(token)[1]["jti"])
    assert row.status_list is not None
    assert (row.status_idx, row.status_list.slug) == (idx, uri.rsplit("/", 1)[1])
