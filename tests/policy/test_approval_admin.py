"""The user in the loop in the admin (OpenID CIBA): a rule's approval fields, checked by its
form and shown in the rule list and the rule tables; the read-only approval requests; the
approver on a token's lineage page."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from delegation_idp.admin.approvals import approval_terms
from delegation_idp.admin.rules import DelegationRuleForm
from delegation_idp.ciba import GRANT_TYPE
from delegation_idp.models import ApprovalRequest, DelegationRule, Party, TokenLineage
from tests.conftest import ACCESS_TOKEN_TYPE

pytestmark = pytest.mark.django_db

RULES_URL = "/admin/delegation_idp/delegationrule/"
APPROVALS_URL = "/admin/delegation_idp/approvalrequest/"
SCOPE = "tasks.read tasks.write"


@pytest.fixture
def root(cast: Any) -> Client:
    browser = Client()
    browser.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))
    return browser


@pytest.fixture
def rule(cast: Any) -> DelegationRule:
    """The seed's rule for agent1 toward agent2 (directly from a user token)."""
    return DelegationRule.objects.get(actor__uri=cast["agent1"].uri, audiences__uri=cast["agent2"].uri)


def form_data(rule: DelegationRule, **approval: Any) -> dict[str, Any]:
    """The rule's form as stored, with these approval fields (absent ones not posted)."""
    data: dict[str, Any] = {
        "actor": rule.actor_id,
        "description": rule.description,
        "enabled": "on",
        "position": rule.position,
        "audiences": [p.pk for p in rule.audiences.all()],
        "max_scope": rule.max_scope,
        "allow_direct_from_user": "on",
        "upstream_actors": [],
        "max_depth": "" if rule.max_depth is None else rule.max_depth,
        "users": [],
        "groups": [],
        "valid_from": "",
        "valid_until": "",
    }
    data.update({k: "" if v is None else v for k, v in approval.items()})
    return data


# -- the form --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "approval,field",
    [
        ({"approval": "above"}, "approval"),
        ({"approval": "above", "approval_scopes": "", "approval_min_depth": None}, "approval"),
        ({"approval": "above", "approval_scopes": "tasks.write admin"}, "approval_scopes"),
        ({"approval": "always", "approval_scopes": "payments"}, "approval_scopes"),
        ({"approval": "above", "approval_min_depth": 0}, "approval_min_depth"),
        ({"approval": "always", "approval_lifetime": 9}, "approval_lifetime"),
        ({"approval": "always", "approval_lifetime": 24 * 3600 + 1}, "approval_lifetime"),
        ({"approval": "always", "approval_reuse_seconds": -1}, "approval_reuse_seconds"),
        ({"approval": "sometimes"}, "approval"),
        ({"approval": "above", "approval_scopes": 'tasks."write'}, "approval_scopes"),
    ],
)
def test_the_form_refuses_approval_terms_that_make_no_sense(rule, approval, field):
    form = DelegationRuleForm(data=form_data(rule, **approval), instance=rule)
    assert not form.is_valid()
    assert field in form.errors, form.errors


def test_an_approval_depth_beyond_the_rules_largest_depth_is_refused(rule):
    form = DelegationRuleForm(
        data={**form_data(rule, approval="above", approval_min_depth=3), "max_depth": 2}, instance=rule
    )
    assert not form.is_valid() and "approval_min_depth" in form.errors


@pytest.mark.parametrize(
    "approval,stored",
    [
        ({}, ("never", "", None, None, 0)),  # posted without the fields: never, as before
        ({"approval": "always"}, ("always", "", None, None, 0)),
        (
            {"approval": "above", "approval_scopes": " tasks.write  ", "approval_lifetime": 10},
            ("above", "tasks.write", None, 10, 0),
        ),
        (
            {"approval": "above", "approval_min_depth": 2, "approval_lifetime": 86400},
            ("above", "", 2, 86400, 0),
        ),
        ({"approval": "always", "approval_reuse_seconds": 600}, ("always", "", None, None, 600)),
    ],
)
def test_the_form_keeps_approval_terms_that_do(rule, approval, stored):
    form = DelegationRuleForm(data=form_data(rule, **approval), instance=rule)
    assert form.is_valid(), form.errors
    saved = form.save()
    assert (
        saved.approval,
        saved.approval_scopes,
        saved.approval_min_depth,
        saved.approval_lifetime,
        saved.approval_reuse_seconds,
    ) == stored


def test_the_change_page_has_the_approval_fieldset_and_saves_it(root, rule):
    page = root.get(f"{RULES_URL}{rule.pk}/change/").content.decode()
    assert "The user&#x27;s approval (OpenID CIBA)" in page
    for name in ("approval", "approval_scopes", "approval_min_depth", "approval_lifetime"):
        assert f'name="{name}"' in page
    assert "APPROVAL_REQUEST_LIFETIME" in page  # the lifetime's help text
    assert "approval_required" in page  # the fieldset's description
    response = root.post(
        f"{RULES_URL}{rule.pk}/change/",
        form_data(rule, approval="above", approval_scopes="tasks.write", approval_reuse_seconds=60),
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    rule.refresh_from_db()
    assert (rule.approval, rule.approval_scopes, rule.approval_reuse_seconds) == ("above", "tasks.write", 60)


def test_the_change_page_shows_the_forms_approval_errors(root, rule):
    response = root.post(f"{RULES_URL}{rule.pk}/change/", form_data(rule, approval="above"))
    assert response.status_code == 200
    assert "needs scopes that need approval, a depth, or both" in response.content.decode()
    rule.refresh_from_db()
    assert rule.approval == "never"


def test_a_party_registered_with_a_blank_inline_rule_still_works(root):
    """The party page's extra rule form, left blank, stays ignored with the approval fields."""
    response = root.post(
        "/admin/delegation_idp/party/add/",
        {
            "uri": "https://blank.example.com",
            "name": "Blank",
            "kind": Party.AGENT,
            "enabled": "on",
            "contact": "",
            "resource_prefixes": "",
            "delegation_rules-TOTAL_FORMS": "1",
            "delegation_rules-INITIAL_FORMS": "0",
            "delegation_rules-MIN_NUM_FORMS": "0",
            "delegation_rules-MAX_NUM_FORMS": "1000",
            "delegation_rules-0-approval": "never",
            "delegation_rules-0-approval_reuse_seconds": "0",
            "delegation_rules-0-enabled": "on",
        },
    )
    assert response.status_code in (200, 302)
    assert Party.objects.filter(uri="https://blank.example.com").exists()
    assert not DelegationRule.objects.filter(actor__uri="https://blank.example.com").exists()


# -- the rule list, titles and tables --------------------------------------------------------------


def test_the_rule_list_shows_the_users_approval_under_titles_and_filters_by_it(root, rule):
    rule.approval, rule.approval_scopes, rule.approval_reuse_seconds = "above", "tasks.write", 60
    rule.save()
    page = root.get(RULES_URL).content.decode()
    titles = re.findall(r'<th class="field-title">(.*?)</th>', page, re.S)
    assert len(titles) == DelegationRule.objects.count()
    marked = [t for t in titles if "idp-approval" in t]
    assert len(marked) == 1 and f"delegationrule/{rule.pk}/change/" in marked[0]
    assert "needs the user&#x27;s approval for tasks.write; reused for 60 s" in marked[0]
    only = root.get(RULES_URL, {"approval__exact": "above"})
    assert [r.pk for r in only.context["cl"].result_list] == [rule.pk]


def test_rule_tables_show_the_terms_under_the_title(root, rule, cast):
    rule.approval, rule.approval_lifetime = "always", 120
    rule.save()
    assert approval_terms(rule) == "needs the user's approval always; request lives 120 s"
    party = Party.objects.get(uri=cast["agent1"].uri)
    page = root.get(f"/admin/delegation_idp/party/{party.pk}/change/").content.decode()
    row = re.search(rf'<tr class="rule-row" data-rule="{rule.pk}".*?</tr>', page, re.S).group(0)
    assert "needs the user&#x27;s approval always; request lives 120 s" in row


@pytest.mark.parametrize(
    "fields,words",
    [
        ({"approval": "never", "approval_scopes": "tasks.write"}, ""),
        ({"approval": "above"}, ""),  # nothing to be above: never (the form refuses it)
        ({"approval": "above", "approval_min_depth": 2}, "needs the user's approval from depth 2"),
        (
            {"approval": "above", "approval_scopes": "b a", "approval_min_depth": 3},
            "needs the user's approval for a b or from depth 3",
        ),
    ],
)
def test_approval_terms_in_words(fields, words):
    assert approval_terms(DelegationRule(max_scope="a b", **fields)) == words


# -- the approval requests, read-only --------------------------------------------------------------


def approval_request(cast: Any, **fields: Any) -> ApprovalRequest:
    now = timezone.now()
    values: dict[str, Any] = {
        "auth_req_id_hash": "f" * 64,
        "client_id": cast["agent1"].client_id,
        "requester": cast["agent1"].uri,
        "user": cast.user,
        "subject_jti": "subject-jti",
        "chain": [cast["agent1"].uri],
        "audience": [cast["agent2"].uri],
        "scope": SCOPE,
        "requested_token_type": ACCESS_TOKEN_TYPE,
        "fingerprint": "0" * 64,
        "created_at": now,
        "expires_at": now + timedelta(minutes=5),
        **fields,
    }
    return ApprovalRequest.objects.create(**values)


def test_approval_requests_are_read_only(root, cast):
    approval = approval_request(cast)
    assert root.get(f"{APPROVALS_URL}add/").status_code == 403
    assert root.get(f"{APPROVALS_URL}{approval.pk}/delete/").status_code == 403
    change = f"{APPROVALS_URL}{approval.pk}/change/"
    page = root.get(change)
    assert page.status_code == 200 and 'type="submit" value="Save"' not in page.content.decode()
    assert root.post(change, {"status": "approved"}).status_code == 403
    listing = root.get(APPROVALS_URL)
    assert 'name="action"' not in listing.content.decode()  # no delete action either
    approval.refresh_from_db()
    assert approval.status == ApprovalRequest.PENDING


def test_no_page_shows_the_auth_req_id_digest(root, cast):
    secret = "0123456789abcdef" * 4
    approval = approval_request(cast, auth_req_id_hash=secret)
    for url in (APPROVALS_URL, f"{APPROVALS_URL}{approval.pk}/change/"):
        page = root.get(url).content.decode()
        assert secret not in page and "auth_req_id" not in page.lower().replace("auth_req_id_used", "")


def test_the_list_shows_the_status_as_the_user_sees_it(root, cast):
    past = timezone.now() - timedelta(hours=1)
    waiting = approval_request(cast, auth_req_id_hash="1" * 64)
    late = approval_request(cast, auth_req_id_hash="2" * 64, created_at=past, expires_at=past)
    denied = approval_request(
        cast, auth_req_id_hash="3" * 64, status="denied", decided_by=cast.user, decided_at=past
    )
    assert late.state == "expired"
    response = root.get(APPROVALS_URL)
    page = response.content.decode()
    assert "waiting for the user" in page and "expired" in page and "denied" in page
    assert "Agent 1" in page or cast["agent1"].uri in page  # the requesting agent by name
    by_state = {
        value: {r.pk for r in root.get(APPROVALS_URL, {"state": value}).context["cl"].result_list}
        for value in ("pending", "expired", "denied")
    }
    assert by_state == {"pending": {waiting.pk}, "expired": {late.pk}, "denied": {denied.pk}}


def test_search_by_user_and_by_agent(root, cast, django_user_model):
    bob = django_user_model.objects.create_user("bob", "bob@example.com", "pw-bob-123")
    mine = approval_request(cast, auth_req_id_hash="1" * 64)
    bobs = approval_request(cast, auth_req_id_hash="2" * 64, user=bob, client_id="other", requester="x")

    def found(term: str) -> set[Any]:
        return {r.pk for r in root.get(APPROVALS_URL, {"q": term}).context["cl"].result_list}

    assert found("bob") == {bobs.pk}
    agent_name = Party.objects.get(uri=cast["agent1"].uri).name
    assert found(agent_name) == {mine.pk}
    assert found(cast["agent1"].uri) == {mine.pk}


# -- the whole flow: the approver on the lineage page ------------------------------------------------


@pytest.mark.rfc("ciba-core-11")
def test_a_token_issued_on_approval_names_its_approver_on_its_lineage_page(
    root, cast, rule, client, user_token, token_endpoint
):
    rule.approval = "always"
    rule.save()
    asked = client.post(
        "/o/bc-authorize/",
        urlencode(
            {
                "subject_token": user_token,
                "subject_token_type": ACCESS_TOKEN_TYPE,
                "audience": cast["agent2"].uri,
                "binding_message": "Book the trip",
                "authorization_details": json.dumps([{"type": "trip_booking", "city": "Lyon"}]),
            }
        ),
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=cast["agent1"].basic,
    )
    assert asked.status_code == 200, asked.content
    auth_req_id = asked.json()["auth_req_id"]
    approval = ApprovalRequest.objects.get()
    client.force_login(cast.user)
    assert client.post(f"/o/approvals/{approval.pk}/", {"decision": "approve"}).status_code == 302
    client.logout()
    token = token_endpoint({"grant_type": GRANT_TYPE, "auth_req_id": auth_req_id}, cast["agent1"])
    assert token.status_code == 200, token.content
    row = TokenLineage.objects.get(approval=approval)

    page = root.get(f"/admin/delegation_idp/tokenlineage/{row.pk}/change/").content.decode()
    link = f'href="{APPROVALS_URL}{approval.pk}/change/"'
    assert link in page
    approved = re.search(rf"<a {link}>(.*?)</a>", page).group(1)
    assert approved.startswith(f"approved by {cast.user.get_username()} at ")

    listing = root.get(APPROVALS_URL).content.decode()
    assert f'href="/admin/delegation_idp/tokenlineage/{row.pk}/change/"' in listing  # its token
    assert "token issued" in listing
    assert cast.user.get_username() in listing  # decided by

    plain = TokenLineage.objects.exclude(pk=row.pk).first()
    page = root.get(f"/admin/delegation_idp/tokenlineage/{plain.pk}/change/").content.decode()
    assert f"{APPROVALS_URL}{approval.pk}/" not in page and "approved by" not in page


# -- the dry run ("Try a delegation") ----------------------------------------------------------------

TRY_URL = "/admin/delegation_idp/party/try/"


def try_it(root: Client, cast: Any, **params: Any) -> tuple[dict[str, Any], str]:
    query = {
        "actor": Party.objects.get(uri=cast["agent1"].uri).pk,
        "audiences": [Party.objects.get(uri=cast["agent2"].uri).pk],
        "subject_scope": SCOPE,
        **params,
    }
    response = root.get(TRY_URL, query)
    assert response.status_code == 200
    assert response.context["form"].is_valid(), response.context["form"].errors
    return response.context["result"], response.content.decode()


def test_the_try_page_says_allowed_after_the_users_approval_with_its_terms(root, cast, rule):
    rule.approval, rule.approval_reuse_seconds = "always", 90
    rule.save()
    result, page = try_it(root, cast)
    assert result["decision"].allowed and result["reason"] == "approval_required"
    assert result["error"] == "access_denied"
    assert result["approval"] == {
        "always": True,
        "scopes": [],
        "min_depth": None,
        "lifetime": 300,
        "lifetime_from_setting": True,
        "reuse_seconds": 90,
    }
    assert "allowed after the user&#x27;s approval" in page
    assert '<code id="try-reason">approval_required</code>' in page
    approval_row = re.search(r'<tr id="try-approval">.*?</tr>', page, re.S).group(0)
    assert "the request waits 300 s for the user (the APPROVAL_REQUEST_LIFETIME setting)" in approval_row
    assert "an approval also answers identical requests for 90 s" in approval_row
    assert 'id="try-chain"' in page  # the token the poll would get, once approved
    assert "after the user&#x27;s approval</span>" in page  # the allowed audiences say so too


def test_the_try_page_answers_what_the_token_endpoint_answers(root, cast, rule, exchange, user_token):
    rule.approval, rule.approval_scopes, rule.approval_lifetime = "above", "tasks.write", 60
    rule.save()
    result, _page = try_it(root, cast)
    assert result["reason"] == "approval_required" and result["approval"]["lifetime"] == 60
    refused = exchange("agent1", user_token, cast["agent2"].uri)
    assert refused.status_code == 400 and refused.json()["error"] == "access_denied"
    assert "backchannel" in refused.json()["error_description"]
    # Without the sensitive scope, no approval: plainly allowed, as the token endpoint allows.
    result, page = try_it(root, cast, requested_scope="tasks.read")
    assert result["reason"] == "allowed" and result["approval"] is None
    assert 'id="try-approval"' not in page
    assert exchange("agent1", user_token, cast["agent2"].uri, scope="tasks.read").status_code == 200


def test_the_authorization_endpoint_asks_no_approval(root, cast, rule):
    rule.approval = "always"
    rule.save()
    result, page = try_it(root, cast, request_kind="authorize")
    assert result["decision"].allowed and result["reason"] == "allowed" and result["approval"] is None


def test_a_refusal_carries_no_approval(root, cast, rule):
    rule.approval = "always"
    rule.save()
    result, page = try_it(root, cast, requested_scope="admin")
    assert not result["decision"].allowed and result["approval"] is None
    assert result["reason"] == "scope_exceeds_subject"
    assert 'id="try-approval"' not in page


@pytest.mark.parametrize("scopes", ["", "payments"])
def test_an_approval_depth_of_zero_means_the_same_with_or_without_scopes(scopes):
    """Depth 0 (which the form refuses, but a row may hold) is "every hop" for the pure view;
    the model's view must not read it as "never" just because no scope is named."""
    rule = DelegationRule(approval="above", approval_scopes=scopes, approval_min_depth=0, max_scope="a")
    view = rule.approval_view()
    assert view is not None and view.needed(frozenset({"a"}), 1)
