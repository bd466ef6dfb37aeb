"""Admin: the read-only audit list with filters, the lineage tree with "revoke this
subtree" behind a confirmation, and "who has acted on my behalf"."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from delegation_idp.models import AuditEvent, TokenLineage
from tests.helpers import decode


@pytest.fixture
def admin_client(client: Any, db: Any) -> Any:
    admin = get_user_model().objects.create_superuser("admin", "admin@example.com", "admin-pw-123")
    client.force_login(admin)
    return client


def row(token: str) -> TokenLineage:
    return TokenLineage.objects.get(jti=decode(token)[1]["jti"])


def test_audit_list_is_read_only_and_filters(cast, chain, exchange, admin_client):
    exchange("agent1", chain[0], "https://unknown.example.com")
    url = reverse("admin:delegation_idp_auditevent_changelist")
    page = admin_client.get(url)
    assert page.status_code == 200
    assert b"Add audit event" not in page.content
    denied = admin_client.get(url, {"decision": "denied"})
    assert denied.context["cl"].result_count == AuditEvent.objects.filter(decision="denied").count() >= 1
    agent = admin_client.get(url, {"agent": cast["agent2"].client_id})
    assert (
        agent.context["cl"].result_count
        == AuditEvent.objects.filter(client_id=cast["agent2"].client_id).count()
    )
    user = admin_client.get(url, {"user": str(cast.user.pk)})
    assert user.context["cl"].result_count == AuditEvent.objects.filter(user_id=str(cast.user.pk)).count()
    dated = admin_client.get(
        url, {"created__gte": "2000-01-01 00:00:00+00:00", "created__lt": "2000-01-02 00:00:00+00:00"}
    )
    assert dated.context["cl"].result_count == 0
    event = AuditEvent.objects.first()
    change = admin_client.post(
        reverse("admin:delegation_idp_auditevent_change", args=[event.pk]), {"reason": "tampered"}
    )
    assert change.status_code == 403
    assert (
        admin_client.post(reverse("admin:delegation_idp_auditevent_delete", args=[event.pk])).status_code
        == 403
    )
    assert AuditEvent.objects.get(pk=event.pk).reason != "tampered"


def test_tree_page_shows_the_whole_tree_from_the_root(cast, chain, admin_client):
    response = admin_client.get(reverse("admin:delegation_idp_tokenlineage_tree", args=[row(chain[2]).pk]))
    assert response.status_code == 200
    nodes = response.context["nodes"]
    assert [n.row.jti for n in nodes] == [row(t).jti for t in chain]
    assert {n.status for n in nodes} == {"active"}
    assert b"Revoke this subtree" in response.content


def test_revoke_this_subtree_asks_first_then_revokes_only_the_subtree(cast, chain, admin_client):
    target = row(chain[1])
    url = reverse("admin:delegation_idp_tokenlineage_revoke", args=[target.pk])
    confirm = admin_client.get(url)
    assert confirm.status_code == 200
    assert [a.row.jti for a in confirm.context["affected"]] == [row(t).jti for t in chain[1:]]
    assert confirm.context["live"] == 3
    assert row(chain[1]).revoked_at is None, "GET revokes nothing"
    done = admin_client.post(url)
    assert done.status_code == 302
    assert row(chain[0]).revoked_at is None
    for token in chain[1:]:
        assert row(token).revocation_reason == "admin"
    tree = admin_client.get(done["Location"])
    assert [n.status for n in tree.context["nodes"]] == ["active", "revoked", "revoked", "revoked"]


def test_revoking_needs_the_change_permission(cast, chain, client):
    from django.contrib.auth.models import Permission

    viewer = get_user_model().objects.create_user("viewer", "v@example.com", "pw-viewer-123", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_tokenlineage"))
    client.force_login(viewer)
    target = row(chain[1])
    assert client.get(reverse("admin:delegation_idp_tokenlineage_tree", args=[target.pk])).status_code == 200
    url = reverse("admin:delegation_idp_tokenlineage_revoke", args=[target.pk])
    assert client.post(url).status_code == 403
    assert row(chain[1]).revoked_at is None


def test_who_has_acted_on_my_behalf(cast, chain, exchange, admin_client):
    exchange("agent1", chain[0], "https://unknown.example.com")  # refused: unknown audience
    response = admin_client.get(reverse("admin:delegation_idp_tokenlineage_acted", args=[cast.user.pk]))
    assert response.status_code == 200
    chains = {entry.chain for entry in response.context["acted"]}
    assert chains == {
        (),
        ("https://agent1.example.com",),
        ("https://agent2.example.com", "https://agent1.example.com"),
        ("https://mcp-server1.example.com", "https://agent2.example.com", "https://agent1.example.com"),
    }
    assert all(entry.live == entry.tokens == 1 for entry in response.context["acted"])
    denied = list(response.context["denied"])
    assert len(denied) == 1 and denied[0].error == "invalid_target"
    assert (
        admin_client.get(reverse("admin:delegation_idp_tokenlineage_acted", args=["999999"])).status_code
        == 404
    )


def test_lineage_list_links_to_the_tree(cast, chain, admin_client):
    response = admin_client.get(reverse("admin:delegation_idp_tokenlineage_changelist"))
    assert response.status_code == 200
    assert (
        reverse("admin:delegation_idp_tokenlineage_tree", args=[row(chain[0]).pk]).encode()
        in response.content
    )
