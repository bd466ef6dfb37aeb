"""``manage.py disableagent`` and ``enableagent``: the admin's *Disable* and *Enable* actions on
the command line. Disabling revokes every live token that names the party."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import CommandError

from delegation_idp.models import Party, TokenLineage
from delegation_idp.provider import agents
from tests.cli.conftest import SCOPE, run
from tests.helpers import assert_oauth_error, decode


@pytest.fixture
def tokens(parties: Any) -> dict[str, str]:
    """alice's token for Alpha, and Alpha's exchange of it for Beta (which names Beta)."""
    run("createrule", "Alpha", "--audience", "Beta", "--scope", SCOPE, "--from-user")
    run("createrule", "Beta", "--audience", "Store", "--scope", SCOPE, "--upstream", "Alpha")
    user_token = parties.user_token(parties.alpha)
    response = parties.exchange(parties.alpha, user_token, parties.beta.uri)
    assert response.status_code == 200, response.content
    return {"user": user_token, "for_beta": response.json()["access_token"]}


def lineage(token: str) -> TokenLineage:
    return TokenLineage.objects.get(jti=decode(token)[1]["jti"])


def test_disabling_revokes_the_live_tokens_naming_the_party(parties: Any, tokens: dict[str, str]) -> None:
    data = run("disableagent", "Beta", "--yes", "--json").json()
    assert data == {"uri": parties.beta.uri, "enabled": False, "changed": True, "tokens_revoked": 1}
    assert not Party.objects.get(uri=parties.beta.uri).enabled
    assert lineage(tokens["for_beta"]).revocation_reason == "party_disabled"
    assert lineage(tokens["user"]).revoked_at is None  # names Alpha only
    # Beta may no longer exchange, nor Alpha address Beta.
    assert_oauth_error(
        parties.exchange(parties.beta, tokens["for_beta"], parties.store.uri), 400, "unauthorized_client"
    )
    assert_oauth_error(
        parties.exchange(parties.alpha, tokens["user"], parties.beta.uri), 400, "invalid_target"
    )


def test_disabling_again_changes_nothing_and_asks_nothing(parties: Any, tokens: dict[str, str]) -> None:
    run("disableagent", "Beta", "--yes")
    out = run("disableagent", "Beta").stdout  # no --yes: nothing to confirm
    assert "already disabled; nothing changed" in out
    assert run("disableagent", "Beta", "--json").json()["changed"] is False


@pytest.mark.parametrize("answer", ["n", "", EOFError])
def test_without_yes_it_asks_and_a_no_changes_nothing(
    parties: Any, tokens: dict[str, str], monkeypatch: Any, answer: Any
) -> None:
    def ask(*args: Any) -> str:
        if answer is EOFError:
            raise EOFError
        return str(answer)

    monkeypatch.setattr("builtins.input", ask)
    with pytest.raises(CommandError, match="Aborted; nothing was changed"):
        run("disableagent", "Beta")
    assert Party.objects.get(uri=parties.beta.uri).enabled
    assert lineage(tokens["for_beta"]).revoked_at is None


def test_the_prompt_counts_the_live_tokens_and_a_yes_disables(
    parties: Any, tokens: dict[str, str], monkeypatch: Any
) -> None:
    monkeypatch.setattr("builtins.input", lambda *args: "y")
    result = run("disableagent", parties.beta.client_id)
    assert "and revoke its 1 live tokens? [y/N]" in result.stderr
    assert "Disabled Beta <https://beta.example.com>; 1 live tokens revoked." in result.stdout
    assert lineage(tokens["for_beta"]).revoked_at is not None


def test_enabling_again_leaves_revoked_tokens_revoked(parties: Any, tokens: dict[str, str]) -> None:
    run("disableagent", "Beta", "--yes")
    assert run("enableagent", "Beta", "--json").json() == {
        "uri": parties.beta.uri,
        "enabled": True,
        "changed": True,
    }
    assert "already enabled; nothing changed" in run("enableagent", "Beta").stdout
    assert Party.objects.get(uri=parties.beta.uri).enabled
    assert lineage(tokens["for_beta"]).revoked_at is not None
    # Beta's revoked token stays useless; Alpha may address Beta again, with a new token.
    assert_oauth_error(
        parties.exchange(parties.beta, tokens["for_beta"], parties.store.uri), 400, "invalid_request"
    )
    again = parties.exchange(parties.alpha, tokens["user"], parties.beta.uri)
    assert again.status_code == 200, again.content
    assert parties.exchange(parties.beta, again.json()["access_token"], parties.store.uri).status_code == 200


def test_live_tokens_naming_counts_unrevoked_unexpired_ones(parties: Any, tokens: dict[str, str]) -> None:
    beta = Party.objects.get(uri=parties.beta.uri)
    alpha = Party.objects.get(uri=parties.alpha.uri)
    assert (agents.live_tokens_naming(alpha), agents.live_tokens_naming(beta)) == (2, 1)
    TokenLineage.objects.filter(jti=lineage(tokens["user"]).jti).update(expires_at="2000-01-01T00:00:00Z")
    assert agents.live_tokens_naming(alpha) == 1


def test_an_unknown_party_is_a_command_error(parties: Any) -> None:
    for command in ("disableagent", "enableagent"):
        with pytest.raises(CommandError, match="No registered party is named 'Gamma'"):
            run(command, "Gamma", "--yes") if command == "disableagent" else run(command, "Gamma")
