"""The pure ID-JAG pieces: its claims (draft-ietf-oauth-identity-assertion-authz-grant
section 3), the target rule, and the lifetime setting's system check."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from delegation_idp import checks
from delegation_idp.core.errors import InvalidRequest
from delegation_idp.core.reasons import Reason
from delegation_idp.idjag import issued_claims, target_refusal
from delegation_idp.idjag.claims import AUTHORIZATION_SERVER
from delegation_idp.rfc8693.request import parse
from tests.helpers import with_idp

AS = "https://as.example.net"
KINDS = {
    AS: AUTHORIZATION_SERVER,
    "https://agent.example.com": "agent",
    "https://rs.example.com": "resource_server",
}


def claims(**extra):
    base = dict(issuer="https://idp", sub="u", audience=AS, client_id="c", jti="j", iat=1, exp=2)
    return issued_claims(**{**base, **extra})


@pytest.mark.rfc("draft-ietf-oauth-identity-assertion-authz-grant-3")
def test_required_claims_only_when_nothing_else_is_asked():
    assert claims() == {
        "iss": "https://idp",
        "sub": "u",
        "aud": AS,
        "client_id": "c",
        "jti": "j",
        "iat": 1,
        "exp": 2,
    }


def test_one_resource_is_a_string_several_a_list():
    assert claims(resources=("https://a/x",))["resource"] == "https://a/x"
    assert claims(resources=("https://a/x", "https://a/y"))["resource"] == ["https://a/x", "https://a/y"]


def test_scope_and_act_are_carried():
    built = claims(scope="a b", act={"sub": "https://agent", "act": {"sub": "https://first"}})
    assert built["scope"] == "a b"
    assert built["act"] == {"sub": "https://agent", "act": {"sub": "https://first"}}


URIS = st.sampled_from(sorted(KINDS))


@given(audiences=st.lists(URIS, max_size=3), targets=st.lists(URIS, max_size=3))
def test_an_id_jag_names_one_authorization_server_and_only_it(audiences, targets):
    reason = target_refusal(id_jag=True, audiences=audiences, targets=targets, kinds=KINDS)
    ok = audiences == [AS] and all(t == AS for t in targets)
    assert (reason is None) == ok


@given(targets=st.lists(URIS, max_size=3))
def test_an_access_token_never_names_an_authorization_server(targets):
    reason = target_refusal(id_jag=False, audiences=(), targets=targets, kinds=KINDS)
    assert (reason is Reason.ID_JAG_ONLY_TARGET) == (AS in targets)
    assert reason in (None, Reason.ID_JAG_ONLY_TARGET)


@pytest.mark.parametrize("audiences", [[], [AS, "https://rs.example.com"]])
def test_the_request_has_exactly_one_audience(audiences):
    form = [
        ("subject_token", "t"),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:access_token"),
        ("requested_token_type", "urn:ietf:params:oauth:token-type:id-jag"),
        ("resource", "https://rs.example.com/x"),
        *(("audience", a) for a in audiences),
    ]
    with pytest.raises(InvalidRequest) as caught:
        parse(form)
    assert caught.value.reason is Reason.ID_JAG_ONE_AUDIENCE


@pytest.mark.parametrize(
    ("value", "ids"),
    [
        (300, []),
        (10, []),
        (600, []),
        (9, ["delegation_idp.E036"]),
        (3600, ["delegation_idp.E036"]),
        ("300", ["delegation_idp.E036"]),
        (True, ["delegation_idp.E036"]),
    ],
)
def test_the_lifetime_check(value, ids):
    with with_idp(ID_JAG_LIFETIME=value):
        found = [m.id for m in checks.check_policy_options()]
    assert found == ids
