"""Every refusal of the token-exchange grant: exact status and error code, JSON,
``Cache-Control: no-store``, no token issued, and an audit record written."""

from __future__ import annotations

import time
from typing import Any

import pytest

from delegation_idp import jose
from delegation_idp.models import AuditEvent
from delegation_idp.provider.keys import keyset
from tests.conftest import ACCESS_TOKEN_TYPE
from tests.helpers import assert_oauth_error, decode, snapshot

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"


def base(token: str, audience: str = "https://agent2.example.com") -> dict[str, Any]:
    return {
        "grant_type": GRANT,
        "subject_token": token,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        "audience": audience,
    }


def resign(token: str, **changes: Any) -> str:
    """The same claims re-signed by the provider's own current key, with changes."""
    claims = decode(token)[1]
    claims.update(changes)
    return jose.sign(claims, keyset.signing_key())


# (id, status, error, builder(token, cast) -> (form, agent name or None))
CASES = [
    (
        "missing-subject-token",
        400,
        "invalid_request",
        lambda t, c: ({k: v for k, v in base(t).items() if k != "subject_token"}, "agent1"),
    ),
    (
        "missing-subject-token-type",
        400,
        "invalid_request",
        lambda t, c: ({k: v for k, v in base(t).items() if k != "subject_token_type"}, "agent1"),
    ),
    (
        "empty-subject-token",
        400,
        "invalid_request",
        lambda t, c: ({**base(t), "subject_token": ""}, "agent1"),
    ),
    (
        "repeated-subject-token",
        400,
        "invalid_request",
        lambda t, c: ({**base(t), "subject_token": [t, t]}, "agent1"),
    ),
    (
        "repeated-scope",
        400,
        "invalid_request",
        lambda t, c: ({**base(t), "scope": ["tasks.read", "tasks.read"]}, "agent1"),
    ),
    (
        "garbage-subject-token",
        400,
        "invalid_request",
        lambda t, c: ({**base(t), "subject_token": "not.a.jwt"}, "agent1"),
    ),
    (
        "unsupported-subject-token-type",
        400,
        "invalid_request",
        lambda t, c: ({**base(t), "subject_token_type": "urn:ietf:params:oauth:token-type:saml2"}, "agent1"),
    ),
    (
        "refresh-token-type",
        400,
        "invalid_request",
        lambda t, c: (
            {**base(t), "subject_token_type": "urn:ietf:params:oauth:token-type:refresh_token"},
            "agent1",
        ),
    ),
    (
        "unsupported-requested-token-type",
        400,
        "invalid_request",
        lambda t, c: (
            {**base(t), "requested_token_type": "urn:ietf:params:oauth:token-type:id_token"},
            "agent1",
        ),
    ),
    (
        "actor-token-without-type",
        400,
        "invalid_request",
        lambda t, c: ({**base(t), "actor_token": t}, "agent1"),
    ),
    (
        "actor-token-not-the-client",
        400,
        "invalid_request",
        lambda t, c: ({**base(t), "actor_token": t, "actor_token_type": ACCESS_TOKEN_TYPE}, "agent1"),
    ),
    (
        "invalid-actor-token",
        400,
        "invalid_request",
        lambda t, c: ({**base(t), "actor_token": "x.y.z", "actor_token_type": ACCESS_TOKEN_TYPE}, "agent1"),
    ),
    (
        "subject-token-for-another-agent",
        400,
        "invalid_request",
        lambda t, c: (base(t, "https://mcp-server1.example.com"), "agent2"),
    ),
    (
        "expired-subject-token",
        400,
        "invalid_request",
        lambda t, c: (base(resign(t, exp=int(time.time()) - 3600, iat=int(time.time()) - 7200)), "agent1"),
    ),
    (
        "foreign-issuer",
        400,
        "invalid_request",
        lambda t, c: (base(resign(t, iss="http://testserver.evil")), "agent1"),
    ),
    (
        "resigned-without-its-lineage",
        400,
        "invalid_request",
        lambda t, c: (base(resign(t, scope="tasks.read tasks.write profile")), "agent1"),
    ),
    (
        "never-issued-jti",
        400,
        "invalid_request",
        lambda t, c: (base(resign(t, jti="never-issued")), "agent1"),
    ),
    (
        "no-target",
        400,
        "invalid_request",
        lambda t, c: ({k: v for k, v in base(t).items() if k != "audience"}, "agent1"),
    ),
    (
        "unknown-audience",
        400,
        "invalid_target",
        lambda t, c: (base(t, "https://unknown.example.com"), "agent1"),
    ),
    (
        "audience-not-permitted",
        400,
        "invalid_target",
        lambda t, c: (base(t, "https://resource-server.example.com"), "agent1"),
    ),
    (
        "relative-resource",
        400,
        "invalid_target",
        lambda t, c: (
            {**{k: v for k, v in base(t).items() if k != "audience"}, "resource": "/tasks"},
            "agent1",
        ),
    ),
    (
        "fragment-resource",
        400,
        "invalid_target",
        lambda t, c: (
            {
                **{k: v for k, v in base(t).items() if k != "audience"},
                "resource": "https://agent2.example.com/#x",
            },
            "agent1",
        ),
    ),
    (
        "scope-beyond-subject",
        400,
        "invalid_scope",
        lambda t, c: ({**base(t), "scope": "tasks.read admin"}, "agent1"),
    ),
    ("no-client-authentication", 401, "invalid_client", lambda t, c: (base(t), None)),
    ("wrong-client-secret", 401, "invalid_client", lambda t, c: (base(t), "wrong-secret")),
    ("client-not-an-agent", 400, "unauthorized_client", lambda t, c: (base(t), "plain-client")),
    (
        "public-client",
        400,
        "unauthorized_client",
        lambda t, c: ({**base(t), "client_id": c["public-client"].client_id}, "-public"),
    ),
    (
        "unknown-grant-type",
        400,
        "unsupported_grant_type",
        lambda t, c: ({**base(t), "grant_type": "urn:example:unknown"}, "agent1"),
    ),
]


@pytest.mark.rfc("8693-2.2.2")
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_refusal(case, cast, user_token, token_endpoint, clients):
    _name, status, error, build = case
    form, agent_name = build(user_token, clients)
    before_tokens, before_events = snapshot(), AuditEvent.objects.count()
    agent = clients.get(agent_name) if agent_name and not agent_name.startswith("-") else None
    response = token_endpoint(form, agent)
    body = assert_oauth_error(response, status, error)
    assert body.get("error_description")
    if status == 401:
        assert "WWW-Authenticate" in response
    assert snapshot() == before_tokens, "a refused request must not issue a token"
    events = AuditEvent.objects.order_by("-id")
    assert events.count() == before_events + 1
    assert events[0].decision == "denied" and events[0].error == error
    # Tokens never reach the audit trail.
    assert user_token not in repr(events[0].__dict__)


def test_revoked_subject_token_is_refused(cast, user_token, exchange):
    from delegation_idp.lineage.revocation import revoke_subtree

    revoke_subtree(decode(user_token)[1]["jti"])
    before = snapshot()
    body = assert_oauth_error(exchange("agent1", user_token, cast["agent2"].uri), 400, "invalid_request")
    assert "active" in body["error_description"]
    assert snapshot() == before


def test_disabled_requester_is_refused(cast, user_token, exchange):
    from delegation_idp.models import Party

    Party.objects.filter(uri=cast["agent1"].uri).update(enabled=False)
    assert_oauth_error(exchange("agent1", user_token, cast["agent2"].uri), 400, "unauthorized_client")


def test_get_is_refused_with_json(client):
    response = client.get("/o/token/?grant_type=" + GRANT)
    assert_oauth_error(response, 405, "invalid_request")
    assert response["Allow"] == "POST"


def test_json_body_is_refused(cast, user_token, token_endpoint):
    import json

    response = token_endpoint(json.dumps(base(user_token)), cast["agent1"], content_type="application/json")
    assert_oauth_error(response, 400, "invalid_request")


def test_query_parameters_are_refused(cast, user_token, client):
    from urllib.parse import urlencode

    response = client.post(
        "/o/token/?" + urlencode({"subject_token": "x"}),
        urlencode(base(user_token)),
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=cast["agent1"].basic,
    )
    assert_oauth_error(response, 400, "invalid_request")


def test_subject_token_never_logged(cast, user_token, exchange, caplog):
    caplog.set_level("DEBUG")
    exchange("agent1", user_token, "https://unknown.example.com")
    exchange("agent1", user_token, cast["agent2"].uri)
    assert user_token not in caplog.text
    assert user_token.split(".")[2] not in caplog.text


def test_too_many_fields_is_a_json_invalid_request(cast, token_endpoint):
    from urllib.parse import urlencode

    body = urlencode([("grant_type", GRANT)] + [(f"f{i}", "x") for i in range(1500)])
    before, events = snapshot(), AuditEvent.objects.count()
    assert_oauth_error(token_endpoint(body, cast["agent1"]), 400, "invalid_request")
    assert snapshot() == before and AuditEvent.objects.count() == events + 1


def test_unbalanced_bracket_in_resource_is_invalid_target(cast, user_token, token_endpoint):
    form = {k: v for k, v in base(user_token).items() if k != "audience"}
    form["resource"] = "https://[x"
    assert_oauth_error(token_endpoint(form, cast["agent1"]), 400, "invalid_target")


def test_basic_scheme_is_case_insensitive(cast, user_token, token_endpoint):
    """RFC 9110 section 11.1: the view and the validator agree on ``basic``."""
    agent = cast["agent1"]
    lower = "basic " + agent.basic.split(" ", 1)[1]
    response = token_endpoint(base(user_token), None, HTTP_AUTHORIZATION=lower)
    assert response.status_code == 200, response.content
