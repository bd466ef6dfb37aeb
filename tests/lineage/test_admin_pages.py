"""The lineage and audit admin pages, through Django's test client: agents by name and URI,
search by an agent's name or URI and by jti, each filter, the status column, a bounded number of
queries for a page of many rows, the tree in issue order with a revoked branch marked, the revoke
control only with the permission, and staff only."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from delegation_idp.lineage import revocation
from delegation_idp.models import AuditEvent, TokenLineage
from tests.helpers import decode

from .admin_rows import many_rows, sibling_tree

LINEAGE = "admin:delegation_idp_tokenlineage_changelist"
AUDIT = "admin:delegation_idp_auditevent_changelist"


@pytest.fixture
def admin_client(client: Any, db: Any) -> Any:
    admin = get_user_model().objects.create_superuser("admin", "admin@example.com", "admin-pw-123")
    client.force_login(admin)
    return client


def row(token: str) -> TokenLineage:
    return TokenLineage.objects.get(jti=decode(token)[1]["jti"])


def jtis(response: Any) -> set[str]:
    assert response.status_code == 200, response.content[:500]
    return {r.jti for r in response.context["cl"].queryset}


def client_rows(client_id: str) -> set[str]:
    return set(TokenLineage.objects.filter(client_id=client_id).values_list("jti", flat=True))


# -- the lineage list ---------------------------------------------------------------------------


def test_lineage_list_names_agents_with_uri_and_shows_status(cast, chain, admin_client):
    revocation.revoke_subtree(row(chain[2]).jti, reason="admin")
    expired = row(chain[0])
    TokenLineage.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    page = admin_client.get(reverse(LINEAGE))
    html = page.content.decode()
    for name in ("agent1", "agent2", "mcp-server1"):
        agent = cast[name]
        party = agent.uri
        assert f'<span class="idp-uri">{party}</span>' in html
        assert agent.client_id not in re.findall(r'<td class="field-agent">(.*?)</td>', html, re.S)[0]
    assert "Agent 1 (orchestrator)" in html and "Agent 2" in html and "MCP server 1" in html
    statuses = {r.jti: r.status_value for r in page.context["cl"].result_list}
    assert statuses[expired.jti] == "expired"
    assert statuses[row(chain[1]).jti] == "active"
    assert statuses[row(chain[2]).jti] == statuses[row(chain[3]).jti] == "revoked"
    assert "✕ revoked" in html and "● active" in html and "○ expired" in html
    assert 'title="' + row(chain[1]).jti + '"' in html, "the whole jti in the shortened one's title"
    assert "&lt;" not in html.split('id="result_list"')[1].split("</table>")[0], "no markup shown as text"


def test_a_client_id_of_no_party_is_shown_as_it_is(cast, admin_client):
    from .admin_rows import lineage

    lineage("orphan-1", parent=None, client_id="no-such-client", issued=timezone.now())
    html = admin_client.get(reverse(LINEAGE)).content.decode()
    assert '<span class="idp-mono">no-such-client</span>' in html


@pytest.mark.parametrize("term", ["agent2", "Agent 2", "https://agent2.example.com", "AGENT2.EXAMPLE"])
def test_lineage_search_finds_an_agents_rows_by_name_or_uri(cast, chain, admin_client, term):
    expected = client_rows(cast["agent2"].client_id)
    assert expected
    assert jtis(admin_client.get(reverse(LINEAGE), {"q": term})) == expected


def test_lineage_search_by_jti_is_exact(cast, chain, admin_client):
    target = row(chain[1]).jti
    assert jtis(admin_client.get(reverse(LINEAGE), {"q": target})) == {target}
    assert jtis(admin_client.get(reverse(LINEAGE), {"q": target[:-1] + "#"})) == set()


def test_lineage_filters_narrow_by_agent_status_reason_and_date(cast, chain, admin_client):
    revocation.revoke_subtree(row(chain[2]).jti, reason="admin")
    TokenLineage.objects.filter(pk=row(chain[0]).pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    url = reverse(LINEAGE)
    mcp = cast["mcp-server1"].client_id
    assert jtis(admin_client.get(url, {"agent": mcp})) == client_rows(mcp) == {row(chain[3]).jti}
    assert jtis(admin_client.get(url, {"status": "active"})) == {row(chain[1]).jti}
    assert jtis(admin_client.get(url, {"status": "expired"})) == {row(chain[0]).jti}
    assert jtis(admin_client.get(url, {"status": "revoked"})) == {row(chain[2]).jti, row(chain[3]).jti}
    assert jtis(admin_client.get(url, {"revocation_reason": "admin"})) == {
        row(chain[2]).jti,
        row(chain[3]).jti,
    }
    assert jtis(admin_client.get(url, {"status": "revoked", "agent": mcp})) == {row(chain[3]).jti}
    old = {"issued_at__gte": "2000-01-01 00:00:00+00:00", "issued_at__lt": "2000-01-02 00:00:00+00:00"}
    assert jtis(admin_client.get(url, old)) == set()
    today = timezone.now().date()
    day = {
        "issued_at__gte": f"{today} 00:00:00+00:00",
        "issued_at__lt": f"{today + timedelta(days=1)} 00:00:00+00:00",
    }
    assert len(jtis(admin_client.get(url, day))) == 4
    page = admin_client.get(url).content.decode()
    assert "Agent 1 (orchestrator)" in page.split('id="changelist-filter"')[1], (
        "the agent filter names parties"
    )


def test_lineage_list_makes_the_same_few_queries_for_many_rows(
    cast, admin_client, django_assert_max_num_queries
):
    many_rows(cast, 3, "few")
    url = reverse(LINEAGE)
    admin_client.get(url)  # sessions, content types and the like warm up
    with django_assert_max_num_queries(12) as few:
        assert admin_client.get(url).status_code == 200
    many_rows(cast, 97, "many")
    with django_assert_max_num_queries(len(few.captured_queries)) as many:
        page = admin_client.get(url)
    assert page.context["cl"].result_count == 100
    assert len(many.captured_queries) == len(few.captured_queries)


# -- the tree -------------------------------------------------------------------------------------


def test_tree_nests_siblings_in_the_order_they_were_issued(cast, admin_client):
    rows = sibling_tree(cast)
    page = admin_client.get(reverse("admin:delegation_idp_tokenlineage_tree", args=[rows["grandchild"].pk]))
    assert page.status_code == 200
    (root,) = page.context["roots"]
    assert root.row.jti == "root-0001"
    assert [c.row.jti for c in root.children] == ["z-early", "m-middle", "a-late"], "by issued_at, not jti"
    assert [c.row.jti for c in root.children[1].children] == ["g-grand"]
    html = page.content.decode()
    assert (
        html.index('data-jti="z-early"') < html.index('data-jti="m-middle"') < html.index('data-jti="a-late"')
    )
    # nested lists: the grandchild's item is inside the middle one's
    middle = html[html.index('data-jti="m-middle"') : html.index('data-jti="a-late"')]
    assert 'data-jti="g-grand"' in middle and "<ul>" in middle
    # parties by name, the chain by names too
    assert "Agent 1 (orchestrator)" in html and "MCP server 1" in html
    chain = re.search(r'data-jti="g-grand".*?actors (.*?)</span></span>', html, re.S)
    assert chain and "Agent 2" in chain.group(1) and "Agent 1 (orchestrator)" in chain.group(1)
    assert "https://agent2.example.com" in chain.group(1), "each actor's URI in its title"


def test_a_revoked_branch_is_marked_in_word_and_class(cast, chain, admin_client):
    revocation.revoke_subtree(row(chain[1]).jti, reason="admin")
    html = admin_client.get(reverse("admin:delegation_idp_tokenlineage_tree", args=[row(chain[0]).pk]))
    html = html.content.decode()

    def item(token: str) -> str:
        return re.search(rf'<li class="([^"]*)" data-jti="{row(token).jti}"', html).group(1)

    assert "idp-tree-active" in item(chain[0]) and "revoked" not in item(chain[0])
    assert "idp-tree-revoked" in item(chain[1]) and "idp-tree-in-revoked" not in item(chain[1])
    for token in chain[2:]:
        assert "idp-tree-revoked" in item(token) and "idp-tree-in-revoked" in item(token)
    assert html.count("✕ revoked</span>") == 3
    assert html.count(">Revoke this subtree<") == 1, "only the active root can be revoked"


def test_the_revoke_control_needs_the_change_permission(cast, chain, client):
    viewer = get_user_model().objects.create_user("viewer", "v@example.com", "pw-viewer-123", is_staff=True)
    viewer.user_permissions.add(
        Permission.objects.get(codename="view_tokenlineage"), Permission.objects.get(codename="view_party")
    )
    client.force_login(viewer)
    target = row(chain[1])
    page = client.get(reverse("admin:delegation_idp_tokenlineage_tree", args=[target.pk]))
    assert page.status_code == 200 and "Agent 2" in page.content.decode()
    assert b"Revoke this subtree" not in page.content
    assert reverse("admin:delegation_idp_tokenlineage_revoke", args=[target.pk]).encode() not in page.content
    assert (
        client.get(reverse("admin:delegation_idp_tokenlineage_revoke", args=[target.pk])).status_code == 403
    )


def test_the_revoke_confirmation_names_the_parties_of_the_subtree(cast, chain, admin_client):
    page = admin_client.get(reverse("admin:delegation_idp_tokenlineage_revoke", args=[row(chain[1]).pk]))
    html = page.content.decode()
    assert "Agent 2" in html and "MCP server 1" in html and "csrfmiddlewaretoken" in html
    assert "Revoke this subtree</a>" not in html, "no revoke links inside the confirmation"


@pytest.mark.parametrize(
    "name,args",
    [
        (LINEAGE, []),
        (AUDIT, []),
        ("admin:delegation_idp_tokenlineage_tree", ["pk"]),
        ("admin:delegation_idp_tokenlineage_revoke", ["pk"]),
        ("admin:delegation_idp_tokenlineage_acted", ["user"]),
    ],
)
def test_non_staff_are_sent_to_the_login_page(cast, chain, client, name, args):
    member = get_user_model().objects.create_user("member", "m@example.com", "pw-member-123")
    client.force_login(member)
    values = {"pk": row(chain[1]).pk, "user": cast.user.pk}
    response = client.get(reverse(name, args=[values[a] for a in args]))
    assert response.status_code == 302 and "/login/" in response["Location"]
    if "revoke" in name:
        assert client.post(reverse(name, args=[values[a] for a in args])).status_code == 302
        assert row(chain[1]).revoked_at is None


# -- who acted ----------------------------------------------------------------------------------


def test_who_acted_names_each_chain_and_client(cast, chain, exchange, admin_client):
    exchange("agent1", chain[0], "https://unknown.example.com")
    html = admin_client.get(reverse("admin:delegation_idp_tokenlineage_acted", args=[cast.user.pk]))
    html = html.content.decode()
    acted = html.split('id="acted"')[1].split("</table>")[0]
    assert "MCP server 1" in acted and "Agent 2" in acted and "Agent 1 (orchestrator)" in acted
    assert cast["agent2"].client_id not in acted
    denied = html.split('id="denied"')[1].split("</table>")[0]
    assert "Agent 1 (orchestrator)" in denied and "target_unknown" in denied and "✕ refused" in denied


# -- the audit list and detail --------------------------------------------------------------------


def test_audit_list_names_agents_and_shows_decisions(cast, chain, exchange, admin_client):
    exchange("agent1", chain[0], "https://unknown.example.com")
    html = admin_client.get(reverse(AUDIT)).content.decode()
    assert "Agent 1 (orchestrator)" in html and "Agent 2" in html and "MCP server 1" in html
    assert '<span class="idp-uri">https://agent2.example.com</span>' in html
    assert "✓ allowed" in html and "✕ refused" in html
    assert "&lt;" not in html.split('id="result_list"')[1].split("</table>")[0], "no markup shown as text"
    assert "target_<wbr>unknown" in html, "a code wraps after its underscores only"
    assert 'title="The requested audience or resource is not permitted for this client."' in html


@pytest.mark.parametrize("term", ["agent2", "Agent 2", "agent2.example.com"])
def test_audit_search_finds_an_agents_events(cast, chain, admin_client, term):
    agent2 = cast["agent2"].client_id
    expected = set(AuditEvent.objects.filter(client_id=agent2).values_list("pk", flat=True))
    page = admin_client.get(reverse(AUDIT), {"q": term})
    assert expected and {e.pk for e in page.context["cl"].queryset} == expected


def test_audit_filters_by_reason_code_decision_agent_and_date(cast, chain, exchange, admin_client):
    exchange("agent1", chain[0], "https://unknown.example.com")
    exchange("agent2", chain[0], cast["mcp-server1"].uri)  # not agent2's token: refused
    url = reverse(AUDIT)

    def pks(**params: str) -> set[int]:
        page = admin_client.get(url, params)
        assert page.status_code == 200
        return {e.pk for e in page.context["cl"].queryset}

    def stored(**lookups: Any) -> set[int]:
        return set(AuditEvent.objects.filter(**lookups).values_list("pk", flat=True))

    assert pks(reason="target_unknown") == stored(reason="target_unknown") != set()
    assert pks(reason="allowed") == stored(reason="allowed") != set()
    assert pks(reason="no-such-reason") == set()
    assert pks(decision="denied") == stored(decision="denied")
    assert pks(decision="granted") == stored(decision="granted")
    agent1 = cast["agent1"].client_id
    assert pks(agent=agent1, decision="denied") == stored(client_id=agent1, decision="denied") != set()
    assert pks(created__gte="2000-01-01 00:00:00+00:00", created__lt="2000-01-02 00:00:00+00:00") == set()
    sidebar = admin_client.get(url).content.decode().split('id="changelist-filter"')[1]
    assert "target_unknown" in sidebar and "Agent 2" in sidebar
    present = set(AuditEvent.objects.values_list("reason", flat=True))
    from delegation_idp.core.reasons import Reason

    offered = set(re.findall(r"\?reason=([a-z_]+)", sidebar))
    assert offered == present & {r.value for r in Reason}, "the catalogue's codes the table holds"


def test_audit_list_makes_the_same_few_queries_for_many_rows(
    cast, admin_client, django_assert_max_num_queries
):
    many_rows(cast, 3, "few")
    url = reverse(AUDIT)
    admin_client.get(url)
    with django_assert_max_num_queries(14) as few:
        assert admin_client.get(url).status_code == 200
    many_rows(cast, 97, "many")
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert admin_client.get(url).context["cl"].result_count == 100


def test_audit_detail_names_the_agent_chain_and_audiences(cast, chain, admin_client):
    event = AuditEvent.objects.filter(client_id=cast["mcp-server1"].client_id, decision="granted").get()
    page = admin_client.get(reverse("admin:delegation_idp_auditevent_change", args=[event.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    chain_cell = html.split("field-chain_names")[1].split("</div>\n")[0]
    assert "Agent 2" in chain_cell and "Agent 1 (orchestrator)" in chain_cell
    assert "https://agent1.example.com" in chain_cell
    assert "MCP server 1" in html.split("field-agent")[1]
    assert cast.resource_server in html.split("field-requested_audience_names")[1]
    assert "Allowed." in html and "✓ allowed" in html
    tree = reverse(
        "admin:delegation_idp_tokenlineage_tree", args=[TokenLineage.objects.get(jti=event.jti).pk]
    )
    assert tree in html, "the event's token links to its lineage tree"
    assert "who has acted on this user&#x27;s behalf" in html or "who has acted on this user's behalf" in html
