"""An agent named on the command line: by identity URI, client id or display name, never guessed."""

from __future__ import annotations

from typing import Any

import pytest

from delegation_idp.models import Party
from delegation_idp.provider.agents import AmbiguousParty, NoSuchParty, find_party, register_party


def test_by_identity_uri_client_id_or_name(parties: Any) -> None:
    alpha = Party.objects.get(uri=parties.alpha.uri)
    assert find_party(parties.alpha.uri) == alpha
    assert find_party(parties.alpha.client_id) == alpha
    assert find_party("Alpha") == alpha
    assert find_party("alpha") == alpha  # display names are matched case-insensitively
    assert find_party("Store") == parties.store


def test_a_name_two_parties_share_is_refused_not_guessed(parties: Any) -> None:
    register_party("https://alpha2.example.com", "alpha")
    with pytest.raises(AmbiguousParty, match="use the identity URI") as refused:
        find_party("Alpha")
    assert {p.uri for p in refused.value.matches} == {parties.alpha.uri, "https://alpha2.example.com"}
    # The identity URI is unique: it always works.
    assert find_party(parties.alpha.uri).uri == parties.alpha.uri


def test_a_client_id_equal_to_another_partys_name_is_ambiguous(parties: Any) -> None:
    register_party("https://gamma.example.com", "Gamma", client_id="beta")
    with pytest.raises(AmbiguousParty):
        find_party("beta")


def test_the_identity_uri_wins_over_another_partys_name(parties: Any) -> None:
    register_party("https://gamma.example.com", parties.alpha.uri)
    assert find_party(parties.alpha.uri).uri == parties.alpha.uri


def test_unknown_names_no_party(parties: Any) -> None:
    with pytest.raises(NoSuchParty):
        find_party("https://nobody.example.com")
    with pytest.raises(NoSuchParty):
        find_party("Alpha", kinds=(Party.RESOURCE_SERVER,))
