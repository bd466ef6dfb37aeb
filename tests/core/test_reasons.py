"""The catalogue of reason codes (``core.reasons.Reason``) and the OAuth errors raised for them
(``core.errors.refusal``): every member answers with the error and status it says, and the
policy's refusals read the same from either."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from delegation_idp.core import policy
from delegation_idp.core.errors import OAuthError, refusal
from delegation_idp.core.reasons import Family, Reason

pytestmark = pytest.mark.rfc("6749-5.2")

REFUSALS = [member for member in Reason if member is not Reason.ALLOWED]
# The errors that are not answered with 400 (RFC 6749 section 5.2, RFC 6585 section 4, RFC 9110).
SPECIAL_STATUS = {
    "invalid_client": 401,
    "invalid_token": 401,  # RFC 6750 section 3.1
    "slow_down": 429,
    "server_error": 500,
    "temporarily_unavailable": 503,
}
# Members whose status is the request's own condition rather than their error's.
STATUS_OF_THE_REQUEST = {
    Reason.METHOD_NOT_ALLOWED: 405,
    Reason.REQUEST_TOO_LARGE: 413,
    Reason.CLIENT_MANAGED_BY_ADMIN: 403,  # RFC 7592 section 2: Forbidden
    Reason.STATUS_LIST_NOT_FOUND: 404,
    Reason.STATUS_LIST_NOT_ACCEPTABLE: 406,  # RFC 9110 section 15.5.7
    Reason.STATUS_LIST_HISTORY_UNSUPPORTED: 501,  # draft-ietf-oauth-status-list section 8.4
    Reason.POLLING_TOO_FAST: 400,  # OpenID CIBA Core section 11: slow_down is a 400 there
    Reason.APPROVAL_NOT_FOUND: 404,  # the approval page: no such request for this user
    Reason.APPROVAL_ALREADY_DECIDED: 409,  # the approval page: the request is no longer pending
}
public_words = st.none() | st.text(min_size=1, max_size=40)


@pytest.mark.parametrize("member", REFUSALS, ids=[m.value for m in REFUSALS])
def test_every_refusal_raises_the_class_of_its_error_with_its_status(member):
    exc = refusal(member)
    assert isinstance(exc, OAuthError)
    assert type(exc).error == member.error == exc.as_dict()["error"]
    assert exc.reason is member
    assert exc.status == member.status
    if member in STATUS_OF_THE_REQUEST:
        assert member.status == STATUS_OF_THE_REQUEST[member]
    elif member.error in SPECIAL_STATUS:
        assert member.status == SPECIAL_STATUS[member.error]
    else:
        assert member.status == 400
    assert member.family in set(Family)
    assert member.description and "http" not in member.description


@given(member=st.sampled_from(REFUSALS), description=public_words)
def test_a_refusal_says_its_own_words_or_the_precise_ones_it_is_given(member, description):
    exc = refusal(member, description, headers={"Retry-After": "1"})
    body = json.loads(exc.json)
    assert body == {"error": member.error, "error_description": description or member.description}
    assert exc.headers == {"Retry-After": "1"}
    assert str(exc) == member.value


@given(member=st.sampled_from(REFUSALS), other=st.sampled_from(REFUSALS))
def test_no_error_class_accepts_a_reason_of_another_error(member, other):
    cls = type(refusal(member))
    if other.error == member.error:
        assert cls(other).reason is other
    else:
        with pytest.raises(ValueError):
            cls(other)


def test_allowed_is_no_refusal():
    assert Reason.ALLOWED.allowed and Reason.ALLOWED.error == "" and Reason.ALLOWED.status == 200
    assert not any(member.allowed for member in REFUSALS)


@pytest.mark.parametrize("error", sorted({m.error for m in REFUSALS}))
def test_every_error_code_has_a_generic_member(error):
    """What django-oauth-toolkit or oauthlib raise (an error code, no reason) finds a member
    answered with that very error."""
    assert Reason.for_error(error).error == error


# The codes the evaluator decides with (core.policy): every one of them is in the catalogue.
POLICY_CODES = (
    "not_an_agent",
    "actor_disabled",
    "chain_actor_disabled",
    "may_act_mismatch",
    "depth_exceeded",
    "cycle",
    "target_unknown",
    "no_rule",
    "audience_not_permitted",
    "upstream_not_permitted",
    "user_not_permitted",
    "rule_not_in_effect",
    "scope_exceeds_subject",
    "scope_not_permitted",
)


def test_the_listed_codes_are_codes_of_the_evaluator():
    assert {m.value for m in policy.Reason} >= {*POLICY_CODES, "allowed"}


@pytest.mark.parametrize("code", POLICY_CODES)
def test_the_policys_refusals_read_the_same_in_the_catalogue(code):
    """Every reason the evaluator refuses with is in the catalogue, with the same OAuth error
    and the same public words: the decision and the audit trail say the same thing."""
    catalogued = Reason(code)
    decision = policy.Decision(allowed=False, reason=policy.Reason(code))
    assert decision.error == catalogued.error
    assert decision.description == catalogued.description
    assert catalogued.family in {Family.POLICY, Family.CLIENT}
