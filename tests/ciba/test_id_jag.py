"""An ID-JAG asked for with the user's approval: the poll proves the key the request proved
(RFC 9449), while the ID-JAG itself stays unbound (draft-ietf-oauth-identity-assertion-authz-
grant defines no binding) and answers ``token_type`` ``N_A``."""

from __future__ import annotations

from typing import Any

import pytest

from delegation_idp.idjag import TOKEN_TYPE as ID_JAG
from delegation_idp.models import ApprovalRequest, DelegationRule, TokenLineage
from tests.e2e.rfc9449.conftest import Prover
from tests.helpers import assert_oauth_error, decode, snapshot
from tests.idjag.conftest import AS_ISSUER, MCP_RESOURCE, external_as, id_jag_rule  # noqa: F401

pytestmark = pytest.mark.django_db


def test_an_id_jag_with_approval_is_polled_with_the_requests_key(
    backchannel: Any,
    poll: Any,
    decide: Any,
    user_token: str,
    cast: Any,
    id_jag_rule: DelegationRule,  # noqa: F811
) -> None:
    id_jag_rule.approval = DelegationRule.APPROVAL_ALWAYS
    id_jag_rule.save()
    key = Prover()
    asked = backchannel(
        "agent1",
        user_token,
        audience=AS_ISSUER,
        resource=MCP_RESOURCE,
        scope="tasks.read",
        requested_token_type=ID_JAG,
        authorization_details=None,
        HTTP_DPOP=key.proof(url="http://testserver/o/bc-authorize/"),
    )
    assert asked.status_code == 200, asked.content
    approval = ApprovalRequest.objects.get()
    assert approval.jkt == key.jkt and approval.requested_token_type == ID_JAG
    decide(cast.user, approval, "approve")
    before = snapshot()
    assert_oauth_error(poll("agent1", asked.json()["auth_req_id"]), 400, "invalid_dpop_proof")
    assert snapshot() == before
    answer = poll("agent1", asked.json()["auth_req_id"], **key.header())
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["issued_token_type"] == ID_JAG and body["token_type"] == "N_A"
    header, claims = decode(body["access_token"])
    assert header["typ"] == "oauth-id-jag+jwt" and "cnf" not in claims
    assert claims["aud"] == AS_ISSUER and claims["act"] == {"sub": cast["agent1"].uri}
    row = TokenLineage.objects.get(jti=claims["jti"])
    assert row.jkt == "" and row.approval_id == approval.pk
