"""The admin's display conventions (delegation_idp.admin.display)."""

from __future__ import annotations

import pytest

from delegation_idp.admin.display import PartyNames, party_link, status
from delegation_idp.models import Party

pytestmark = pytest.mark.django_db


def test_a_party_is_shown_by_name_with_its_uri_and_linked(cast):
    party = Party.objects.get(uri=cast["agent1"].uri)
    html = party_link(party)
    assert party.name in html and party.uri in html
    assert f"/admin/delegation_idp/party/{party.pk}/change/" in html


def test_names_for_a_page_take_one_query(cast, django_assert_num_queries):
    ids = [cast[name].client_id for name in ("agent1", "agent2")]
    with django_assert_num_queries(1):
        names = PartyNames(client_ids=[*ids, "not-a-party"], uris=[cast.resource_server])
    assert Party.objects.get(uri=cast["agent2"].uri).name in names.client(ids[1])
    assert "not-a-party" in names.client("not-a-party") and "<a" not in names.client("not-a-party")
    assert "<a" in names.uri(cast.resource_server)


def test_a_status_is_a_word_and_a_symbol_not_colour_alone():
    for value, word in (("revoked", "revoked"), ("allowed", "allowed"), ("active", "active")):
        html = status(value)
        assert word in html and f"idp-status-{value}" in html
    assert "&lt;b&gt;" in status("<b>")  # escaped, never markup
