"""A revocation that commits between an exchange's checks and its issuance never lets
the new token out. Here the interleaving is forced in one process;
test_race_postgres.py runs real concurrent requests against PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model

from delegation_idp.lineage import issuance, revocation
from delegation_idp.models import AuditEvent, Party, SigningKey, TokenLineage
from delegation_idp.rfc8693 import grant
from tests.helpers import assert_oauth_error, decode, snapshot


@pytest.fixture(autouse=True, params=["one statement", "one query per table"])
def issuance_check(request: Any, monkeypatch: Any) -> str:
    """Each interleaving against both forms of the issuance re-check: the single locked
    statement (PostgreSQL, SQLite) and the per-table fallback other databases use."""
    if request.param != "one statement":
        monkeypatch.setattr(issuance, "ONE_STATEMENT_VENDORS", frozenset())
    return str(request.param)


@pytest.fixture
def after_decision(monkeypatch: Any):
    """Run ``action`` after the grant decided to allow and before it issues."""

    def install(action: Any) -> None:
        original = grant.decide

        def decide(*args: Any, **kwargs: Any) -> Any:
            decision = original(*args, **kwargs)
            action()
            return decision

        monkeypatch.setattr(grant, "decide", decide)

    return install


def _interleaved_refusal(
    exchange: Any, cast: Any, chain: list[str], reason: str, status: int = 400, error: str = "invalid_request"
) -> None:
    before = snapshot()
    response = exchange("agent2", chain[1], cast["mcp-server1"].uri)
    assert_oauth_error(response, status, error)
    after = snapshot()
    # Nothing was issued (the revocation itself may have deleted AccessToken rows).
    assert after[0] <= before[0] and after[1] == before[1]
    event = AuditEvent.objects.filter(event="token_exchange").latest("id")
    assert (event.decision, event.reason, event.error) == ("denied", reason, error)
    assert not TokenLineage.objects.filter(jti=event.jti).exists()


def test_parent_revoked_between_check_and_issue(cast, chain, exchange, after_decision):
    after_decision(lambda: revocation.revoke_subtree(decode(chain[0])[1]["jti"]))
    _interleaved_refusal(exchange, cast, chain, "subject_revoked")


def test_party_disabled_between_check_and_issue(cast, chain, exchange, after_decision):
    # A bare UPDATE: the disablement has committed, its revocation query has not run yet.
    target = cast["mcp-server1"].uri
    after_decision(lambda: Party.objects.filter(uri=target).update(enabled=False))
    _interleaved_refusal(exchange, cast, chain, "party_disabled")


def test_user_deactivated_between_check_and_issue(cast, chain, exchange, after_decision):
    after_decision(lambda: get_user_model().objects.filter(pk=cast.user.pk).update(is_active=False))
    _interleaved_refusal(exchange, cast, chain, "subject_user_inactive")


def test_key_revoked_between_check_and_issue(cast, chain, exchange, after_decision):
    kid = decode(chain[1])[0]["kid"]
    after_decision(lambda: SigningKey.objects.filter(kid=kid).update(state=SigningKey.REVOKED))
    # The key that would sign the new token: the client may retry, and is then judged afresh.
    _interleaved_refusal(exchange, cast, chain, "key_revoked", 503, "temporarily_unavailable")


def test_other_grants_by_a_disabled_agent_are_refused_at_issuance(cast, client, token_endpoint):
    from unittest import mock

    from delegation_idp.core import policy
    from tests.conftest import authorize_code, code_form
    from tests.helpers import assert_oauth_error, snapshot

    agent = cast["agent1"]
    code, verifier = authorize_code(client, agent, cast.user, cast.scope)
    # Disabled without the receivers (a bare UPDATE), and after the validator's own
    # check (patched to have passed): the issuance transaction refuses, nothing is stored.
    Party.objects.filter(uri=agent.uri).update(enabled=False)
    before = snapshot()
    with mock.patch.object(policy, "may_obtain_tokens", return_value=None):
        response = token_endpoint(
            code_form(agent, code, verifier),
            agent,
        )
    assert_oauth_error(response, 400, "unauthorized_client")
    assert snapshot() == before
