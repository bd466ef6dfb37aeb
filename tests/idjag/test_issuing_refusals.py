"""Leg 1 refused: each ID-JAG request that may not be issued gets its exact RFC 8693 error
(section 2.2.2), ``Cache-Control: no-store``, no token, nothing in lineage, and an audit
record with its reason; and an ID-JAG is never taken for an access token."""

from __future__ import annotations

from typing import Any

import pytest

from delegation_idp.models import AuditEvent, DelegationRule, Party
from delegation_idp.resource_server.validation import TokenError
from tests.helpers import assert_oauth_error, snapshot
from tests.idjag.conftest import AS_ISSUER, MCP_RESOURCE

pytestmark = pytest.mark.usefixtures("id_jag_rule")


def refused(response: Any, before: tuple[int, int], status: int, error: str, reason: str) -> None:
    assert_oauth_error(response, status, error)
    assert snapshot() == before, "a refused request issued something"
    event = AuditEvent.objects.filter(event="token_exchange").order_by("-id").first()
    assert event is not None
    assert (event.decision, event.error, event.reason) == ("denied", error, reason)
    assert event.jti == ""


@pytest.mark.rfc("draft-ietf-oauth-identity-assertion-authz-grant-4.3")
def test_two_audiences(request_id_jag, user_token, cast):
    before = snapshot()
    response = request_id_jag("agent1", user_token, audience=[AS_ISSUER, cast["agent2"].uri])
    refused(response, before, 400, "invalid_request", "id_jag_one_audience")


@pytest.mark.rfc("draft-ietf-oauth-identity-assertion-authz-grant-4.3")
def test_no_audience_only_a_resource(request_id_jag, user_token):
    before = snapshot()
    response = request_id_jag("agent1", user_token, audience=None)
    refused(response, before, 400, "invalid_request", "id_jag_one_audience")


def test_an_agent_without_a_rule_for_the_server(request_id_jag, issue_user_token):
    subject = issue_user_token("agent2")
    before = snapshot()
    response = request_id_jag("agent2", subject)  # its rules name the MCP server only
    refused(response, before, 400, "invalid_target", "audience_not_permitted")


def test_an_unregistered_authorization_server(request_id_jag, user_token):
    before = snapshot()
    response = request_id_jag(
        "agent1", user_token, audience="https://as.elsewhere.example.org", resource=None
    )
    refused(response, before, 400, "invalid_target", "target_unknown")


def test_a_disabled_authorization_server(request_id_jag, user_token):
    Party.objects.filter(uri=AS_ISSUER).update(enabled=False)
    before = snapshot()
    refused(request_id_jag("agent1", user_token), before, 400, "invalid_target", "target_unknown")


def test_scope_beyond_the_rule(request_id_jag, user_token):
    before = snapshot()
    response = request_id_jag("agent1", user_token, scope="tasks.write")
    refused(response, before, 400, "invalid_scope", "scope_not_permitted")


def test_a_resource_of_no_registered_party(request_id_jag, user_token):
    before = snapshot()
    response = request_id_jag("agent1", user_token, resource="https://unknown.example.org/mcp")
    refused(response, before, 400, "invalid_target", "target_unknown")


def test_an_audience_that_is_no_authorization_server(request_id_jag, user_token, cast):
    """A rule that lets agent1 reach agent2 does not make agent2 an ID-JAG audience."""
    before = snapshot()
    response = request_id_jag("agent1", user_token, audience=cast["agent2"].uri, resource=None)
    refused(response, before, 400, "invalid_target", "id_jag_not_an_authorization_server")


def test_a_resource_of_another_party(request_id_jag, user_token, cast, id_jag_rule):
    """Even when the rule names both, an ID-JAG names one trust domain: its server's."""
    id_jag_rule.audiences.add(Party.objects.get(uri=cast["agent2"].uri))
    before = snapshot()
    response = request_id_jag("agent1", user_token, resource=f"{cast['agent2'].uri}/api")
    refused(response, before, 400, "invalid_target", "id_jag_resource_elsewhere")


def test_an_access_token_for_an_authorization_server(request_id_jag, user_token):
    """The external server is reached with an ID-JAG only, never with an access token."""
    before = snapshot()
    response = request_id_jag("agent1", user_token, requested_token_type=None)
    refused(response, before, 400, "invalid_target", "id_jag_only_target")


def test_a_revoked_agent_gets_no_id_jag(request_id_jag, user_token, cast):
    Party.objects.filter(uri=cast["agent1"].uri).update(enabled=False)
    before = snapshot()
    response = request_id_jag("agent1", user_token)
    refused(response, before, 400, "unauthorized_client", "actor_disabled")


def test_a_disabled_rule_gives_no_id_jag(request_id_jag, user_token, id_jag_rule):
    DelegationRule.objects.filter(pk=id_jag_rule.pk).update(enabled=False)
    before = snapshot()
    # agent1's other rule (to agent2) comes closer: the audience is not permitted.
    refused(request_id_jag("agent1", user_token), before, 400, "invalid_target", "audience_not_permitted")


# -- an ID-JAG where an access token is expected -------------------------------------------------


@pytest.fixture
def id_jag(request_id_jag, user_token) -> str:
    response = request_id_jag("agent1", user_token)
    assert response.status_code == 200, response.content
    return str(response.json()["access_token"])


def test_an_id_jag_is_no_subject_token(exchange, id_jag, cast):
    before = snapshot()
    response = exchange("agent1", id_jag, cast["agent2"].uri)
    refused(response, before, 400, "invalid_request", "subject_bad_typ")


def test_an_id_jag_is_no_subject_for_another_id_jag(request_id_jag, id_jag):
    before = snapshot()
    refused(request_id_jag("agent1", id_jag), before, 400, "invalid_request", "subject_bad_typ")


def test_an_id_jag_is_refused_at_a_resource_server(make_validator, id_jag):
    validator = make_validator(AS_ISSUER)
    with pytest.raises(TokenError) as caught:
        validator.validate(id_jag)
    assert caught.value.error == "invalid_token"


def test_an_id_jag_is_inactive_at_introspection(introspect, id_jag, cast):
    response = introspect(id_jag, cast["agent1"])
    assert response.status_code == 200
    assert response.json() == {"active": False}


def test_a_refused_id_jag_request_is_audited_with_what_it_asked(request_id_jag, user_token):
    request_id_jag("agent1", user_token, scope="tasks.write")
    event = AuditEvent.objects.filter(event="token_exchange").order_by("-id").first()
    assert event is not None
    assert event.requested_audience == [AS_ISSUER, MCP_RESOURCE]
    assert event.requested_scope == "tasks.write"
    assert event.chain and event.subject
