"""The admin's "Try a delegation" page, redesigned: the decision as a badge with its reason
code and OAuth error; no issued chain (nor anything else a token would have) for a refusal;
the audiences the agent's rules would allow for the chain, user and scope given; every party
by name with its URI, linked; each rule titled by its description."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from delegation_idp.models import DelegationRule, Party
from delegation_idp.provider.agents import allow

TRY_URL = "/admin/delegation_idp/party/try/"
SCOPE = "tasks.read tasks.write"

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(cast) -> Client:
    browser = Client()
    browser.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))
    return browser


def party(uri: str) -> Party:
    return Party.objects.get(uri=uri)


def try_it(root: Client, actor: str, audiences: list[str], **params: Any) -> tuple[dict[str, Any], str]:
    query = {
        "actor": party(actor).pk,
        "audiences": [party(uri).pk for uri in audiences],
        "subject_scope": SCOPE,
        **params,
    }
    response = root.get(TRY_URL, query)
    assert response.status_code == 200
    assert response.context["form"].is_valid(), response.context["form"].errors
    return response.context["result"], response.content.decode()


def section(content: str, element_id: str) -> str:
    """The HTML of the element with ``element_id`` (a table, a row, a cell or a module)."""
    start = content.index(f'id="{element_id}"')
    tag = content.rfind("<", 0, start)
    name = re.match(r"<(\w+)", content[tag:]).group(1)
    depth, at = 0, tag
    for match in re.finditer(rf"<(/?){name}\b", content[tag:]):
        depth += -1 if match.group(1) else 1
        if depth == 0:
            at = tag + match.end()
            break
    return content[tag : content.index(">", at) + 1]


def link_of(uri: str) -> str:
    """How the page names a party: its name, linked to its page, its URI below."""
    p = party(uri)
    return (
        f'<a href="/admin/delegation_idp/party/{p.pk}/change/"><strong>{html.escape(p.name)}</strong></a>'
        f'</span><br><span class="idp-uri">{p.uri}</span>'
    )


def test_an_allowed_exchange(root, cast):
    agent1, agent2, mcp = (cast[n].uri for n in ("agent1", "agent2", "mcp-server1"))
    result, content = try_it(root, agent2, [mcp], chain=agent1)
    assert result["reason"] == "allowed" and result["error"] is None
    decision = section(content, "try-decision")
    assert '<span class="idp-status idp-status-allowed">✓ allowed</span>' in decision
    assert 'id="try-reason">allowed<' in decision and "try-error" not in decision
    # The issued chain, nearest first, by name with URI and linked: Agent 2, then Agent 1.
    chain = section(content, "try-chain")
    assert chain.index(link_of(agent2)) < chain.index(link_of(agent1))
    assert link_of(mcp) in section(content, "try-audience")
    assert 'id="try-scope">tasks.read tasks.write<' in content
    assert link_of(agent2) in section(content, "try-actor")
    assert link_of(agent1) in section(content, "try-given-chain")
    # The matching rule, titled by its description and linked.
    rule = DelegationRule.objects.get(actor__uri=agent2)
    rule_url = f"/admin/delegation_idp/delegationrule/{rule.pk}/change/"
    assert f'<a href="{rule_url}">{html.escape(rule.description)}</a>' in content
    allowed = section(content, "try-allowed-audiences")
    assert link_of(mcp) in allowed and html.escape(rule.description) in allowed


def test_a_refusal_shows_no_issued_chain_and_the_audiences_the_rules_allow(root, cast):
    """Agent 2 asks for the resource server, which its rules do not name: refused, and the
    page says which audience they do allow (MCP server 1)."""
    agent1, agent2, mcp = (cast[n].uri for n in ("agent1", "agent2", "mcp-server1"))
    result, content = try_it(root, agent2, [cast.resource_server], chain=agent1)
    assert (result["reason"], result["error"]) == ("audience_not_permitted", "invalid_target")
    decision = section(content, "try-decision")
    assert '<span class="idp-status idp-status-refused">✕ refused</span>' in decision
    assert 'id="try-reason">audience_not_permitted<' in decision
    assert 'id="try-error">invalid_target<' in decision
    # Nothing a token would have: no issued chain, no granted scope, no token audience.
    for absent in ("issued chain", 'id="try-chain"', 'id="try-scope"', 'id="try-audience"', "matching rule"):
        assert absent not in content, absent
    assert result["issued_chain"] == () and result["issued_chain_links"] == []
    # The chain tried is still shown, as the subject token's.
    assert link_of(agent1) in section(content, "try-given-chain")
    requested = section(content, "try-requested")
    assert (
        link_of(cast.resource_server) in requested and "not among the audiences the rules allow" in requested
    )
    allowed = section(content, "try-allowed-audiences")
    assert link_of(mcp) in allowed and cast.resource_server not in allowed
    assert [a["uri"] for a in result["allowed_audiences"]] == [mcp]
    # Each rule: its description, its audiences by name, its outcome as a badge and a code.
    rules = section(content, "try-rules")
    rule = DelegationRule.objects.get(actor__uri=agent2)
    assert html.escape(rule.description) in rules and link_of(mcp) in rules
    assert (
        '<span class="idp-status idp-status-refused">✕ refused</span> <code>audience_not_permitted</code>'
        in rules
    )


def test_the_allowed_audiences_follow_the_chain_user_and_scope(root, cast):
    agent1, agent2, mcp = (cast[n].uri for n in ("agent1", "agent2", "mcp-server1"))
    allow(party(agent1), [party(cast.resource_server)], "tasks.read", direct_from_user=True)
    # Agent 1 asks for MCP server 1, which no rule of its names: both others are listed,
    # each with the scope it would grant and the rule that would allow it.
    result, content = try_it(root, agent1, [mcp])
    assert result["reason"] == "audience_not_permitted"
    listed = {a["uri"]: (a["scope"], a["rule"]) for a in result["allowed_audiences"]}
    first = DelegationRule.objects.filter(actor__uri=agent1).order_by("pk")
    assert listed == {
        agent2: (SCOPE, first[0].description),
        cast.resource_server: ("tasks.read", f"rule {first[1].pk} (no description)"),
    }
    assert f"rule {first[1].pk} (no description)" in section(content, "try-rules")
    # The same scope as the request: asking for tasks.write leaves only Agent 2.
    result, _ = try_it(root, agent1, [mcp], requested_scope="tasks.write")
    assert [a["uri"] for a in result["allowed_audiences"]] == [agent2]
    # A chain the rules do not continue: none.
    result, content = try_it(root, agent2, [mcp])
    assert result["reason"] == "upstream_not_permitted" and result["allowed_audiences"] == []
    assert 'id="try-allowed-none"' in content
    # An ID-JAG goes only to an external authorization server, and none is registered.
    result, _ = try_it(root, agent1, [agent2], request_kind="id_jag")
    assert result["allowed_audiences"] == []
    # At the authorization endpoint: the rules directly from a user token, for the scopes
    # asked for (both rules grant tasks.read; only Agent 2's grants tasks.write too).
    user = cast.user.get_username()
    result, content = try_it(root, agent1, [agent2], request_kind="authorize", username=user)
    assert result["reason"] == "allowed"
    assert {a["uri"] for a in result["allowed_audiences"]} == {agent2}
    result, _ = try_it(
        root, agent1, [agent2], request_kind="authorize", username=user, subject_scope="tasks.read"
    )
    assert {a["uri"] for a in result["allowed_audiences"]} == {agent2, cast.resource_server}
    assert "none: the token carries no act" in section(content, "try-chain")


def test_the_allowed_audiences_are_exactly_those_the_page_allows_one_by_one(root, cast):
    """The list is no second policy: each audience it names is allowed when tried alone, and
    every other party is refused."""
    agent1 = cast["agent1"].uri
    allow(party(agent1), [party(cast.resource_server)], "tasks.read", direct_from_user=True)
    listed, _ = try_it(root, agent1, [cast["mcp-server1"].uri])
    names = {a["uri"] for a in listed["allowed_audiences"]}
    for target in Party.objects.exclude(uri=agent1):
        result, _ = try_it(root, agent1, [target.uri])
        assert result["decision"].allowed is (target.uri in names), target.uri


def test_the_form_comes_after_the_answer_and_keeps_the_request(root, cast):
    agent1, agent2 = cast["agent1"].uri, cast["agent2"].uri
    _, content = try_it(root, agent1, [agent2])
    assert content.index('id="try-outcome"') < content.index('id="try-form"')
    assert "delegation_idp/admin.css" in content
    selected = section(content, "id_actor")
    assert re.search(rf'<option value="{party(agent1).pk}" selected>', selected)


def test_a_redemption_names_the_client_and_the_owners(root, cast):
    from delegation_idp.models import TrustedIssuer

    trusted = TrustedIssuer.objects.create(
        issuer="https://idp.enterprise.example",
        name="Enterprise",
        jwks_uri="https://idp.enterprise.example/jwks",
    )
    trusted.clients.add(party(cast["agent1"].uri).application)
    response = root.get(
        TRY_URL,
        {
            "request_kind": "redeem",
            "trusted_issuer": trusted.pk,
            "client": party(cast["agent1"].uri).application.pk,
            "id_jag_sub": cast.user.get_username(),
            "id_jag_resources": cast.resource_server,
            "id_jag_scope": SCOPE,
        },
    )
    content = response.content.decode()
    assert 'id="try-reason">' in content
    assert link_of(cast["agent1"].uri) in content  # the redeeming client, by name


def test_an_empty_may_act_stays_empty(root, cast):
    _, content = try_it(root, cast["agent1"].uri, [cast["agent2"].uri])
    assert re.search(r'<textarea name="may_act"[^>]*>\s*</textarea>', content)
