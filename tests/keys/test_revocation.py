"""Emergency revocation: the service, the management command and the admin action."""

from __future__ import annotations

import io

import pytest
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from delegation_idp.models import SigningKey, TokenLineage
from delegation_idp.provider import keys, rotation
from tests.helpers import assert_oauth_error, decode


def kid_of(token: str) -> str:
    return decode(token)[0]["kid"]


@pytest.mark.django_db
def test_revoking_the_current_key_unpublishes_it_revokes_its_tokens_and_hands_over(
    cast, chain, exchange, introspect, jwks, issue_user_token
):
    compromised = kid_of(chain[0])
    upcoming = rotation.rotate_keys(force=True).created  # a published next key takes over
    result = rotation.revoke_key(compromised)
    assert (result.previous_state, result.successor) == ("current", upcoming)
    assert result.tokens_revoked == len(chain)
    row = SigningKey.objects.get(kid=compromised)
    assert row.state == "revoked" and row.revoked_at is not None
    assert bytes(row.private_key) == b""  # the compromised private key is wiped
    assert compromised not in jwks()
    assert jwks() == [upcoming]
    for token, agent in zip(chain, ["agent1", "agent2", "mcp-server1"], strict=False):
        assert introspect(token, agent) == {"active": False}
    assert_oauth_error(exchange("agent1", chain[0], cast["agent2"].uri), 400, "invalid_request")
    assert TokenLineage.objects.filter(kid=compromised, revoked_at__isnull=True).count() == 0
    fresh = issue_user_token()
    assert kid_of(fresh) == upcoming
    assert exchange("agent1", fresh, cast["agent2"].uri).status_code == 200


@pytest.mark.django_db
def test_revoking_without_next_key_creates_a_new_current_key(cast, user_token, issue_user_token):
    compromised = kid_of(user_token)
    result = rotation.revoke_key(compromised)
    assert result.successor and result.successor != compromised
    assert SigningKey.objects.get(state="current").kid == result.successor
    assert kid_of(issue_user_token()) == result.successor


@pytest.mark.django_db
def test_revoking_a_retired_key_revokes_only_its_tokens(clock, cast, issue_user_token, exchange, introspect):
    old_token = issue_user_token()
    old = kid_of(old_token)
    rotation.rotate_keys(force=True)
    clock.advance(300)
    current = rotation.rotate_keys().promoted
    new_token = issue_user_token()
    result = rotation.revoke_key(old)
    assert (result.previous_state, result.successor, result.tokens_revoked) == ("retired", None, 1)
    assert SigningKey.objects.get(state="current").kid == current
    assert introspect(old_token) == {"active": False}
    assert introspect(new_token)["active"] is True


@pytest.mark.django_db
def test_revoking_a_next_key_lets_rotation_schedule_another(clock):
    keys.ensure_current_key()
    upcoming = rotation.rotate_keys(force=True).created
    rotation.revoke_key(upcoming)
    clock.advance(300)
    result = rotation.rotate_keys()
    assert result.promoted is None  # a revoked next key never signs
    assert rotation.rotate_keys(force=True).created not in (None, upcoming)


@pytest.mark.django_db
def test_unknown_kid_raises():
    with pytest.raises(SigningKey.DoesNotExist):
        rotation.revoke_key("no-such-kid")


@pytest.mark.django_db
def test_rotation_sweeps_tokens_a_stale_process_signed_with_a_revoked_key(cast, user_token):
    kid = kid_of(user_token)
    rotation.revoke_key(kid)
    # A token recorded after the revocation (a process that had not yet noticed it):
    row = TokenLineage.objects.get(jti=decode(user_token)[1]["jti"])
    TokenLineage.objects.filter(pk=row.pk).update(revoked_at=None)
    assert rotation.rotate_keys().tokens_revoked == 1
    assert TokenLineage.objects.get(pk=row.pk).revoked_at is not None


# -- the management command --------------------------------------------------------------


@pytest.mark.django_db
def test_revoke_key_command_asks_and_revokes(cast, user_token, monkeypatch):
    kid = kid_of(user_token)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    with pytest.raises(CommandError, match="Aborted"):
        call_command("revoke_key", kid)
    assert SigningKey.objects.get(kid=kid).state == "current"
    prompts: list[str] = []
    monkeypatch.setattr("builtins.input", lambda prompt: prompts.append(prompt) or "yes")
    out = io.StringIO()
    call_command("revoke_key", kid, stdout=out)
    assert "1 live tokens" in prompts[0]
    assert SigningKey.objects.get(kid=kid).state == "revoked"
    assert "1 tokens revoked" in out.getvalue()
    with pytest.raises(CommandError, match="already revoked"):
        call_command("revoke_key", kid, "--yes")
    with pytest.raises(CommandError, match="No signing key"):
        call_command("revoke_key", "nope", "--yes")


@pytest.mark.django_db
def test_revoke_key_command_without_a_terminal_does_nothing(monkeypatch):
    kid = keys.ensure_current_key().kid

    def eof(prompt: str) -> str:
        raise EOFError

    monkeypatch.setattr("builtins.input", eof)
    with pytest.raises(CommandError):
        call_command("revoke_key", kid)
    assert SigningKey.objects.get(kid=kid).state == "current"


@pytest.mark.django_db
def test_rotate_keys_command_is_idempotent():
    out = io.StringIO()
    call_command("rotate_keys", "--force", "--json", stdout=out)
    import json

    first = json.loads(out.getvalue())
    assert first["created"] and first["promoted"] is None
    out = io.StringIO()
    call_command("rotate_keys", stdout=out)
    assert out.getvalue().startswith("created=- promoted=-")
    assert SigningKey.objects.filter(state="next").count() == 1


# -- the admin action ------------------------------------------------------------------


@pytest.fixture
def admin_client(db):
    """A separate browser: the token fixtures log their own client in and out."""
    from django.test import Client

    browser = Client()
    browser.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))
    return browser


CHANGELIST = "/admin/delegation_idp/signingkey/"


@pytest.mark.django_db
def test_admin_revoke_action_asks_for_confirmation_then_revokes(admin_client, cast, user_token, jwks):
    key = SigningKey.objects.get(kid=kid_of(user_token))
    form = {"action": "revoke", helpers.ACTION_CHECKBOX_NAME: [key.pk]}
    page = admin_client.post(CHANGELIST, form)
    assert page.status_code == 200
    assert page.templates[0].name == "admin/delegation_idp/signingkey/revoke_confirmation.html"
    html = page.content.decode()
    assert key.kid in html and 'name="post" value="yes"' in html
    assert SigningKey.objects.get(pk=key.pk).state == "current"  # nothing happened yet
    assert key.kid in jwks()

    done = admin_client.post(CHANGELIST, {**form, "post": "yes"}, follow=True)
    assert done.status_code == 200
    assert "Revoked 1 key and 1 tokens." in done.content.decode()
    assert SigningKey.objects.get(pk=key.pk).state == "revoked"
    assert key.kid not in jwks()
    assert SigningKey.objects.filter(state="current").count() == 1


@pytest.mark.django_db
def test_admin_revoke_needs_change_permission(client, db):
    key = keys.ensure_current_key()
    user = get_user_model().objects.create_user("viewer", password="pw", is_staff=True)
    from django.contrib.auth.models import Permission

    user.user_permissions.add(Permission.objects.get(codename="view_signingkey"))
    client.force_login(user)
    form = {"action": "revoke", helpers.ACTION_CHECKBOX_NAME: [key.pk], "post": "yes"}
    client.post(CHANGELIST, form)
    assert SigningKey.objects.get(pk=key.pk).state == "current"


@pytest.mark.django_db
def test_admin_rotate_button_and_private_key_never_shown(admin_client):
    # "Rotate keys now" is the list page's button (a confirmation page that POSTs), no longer
    # an action that needed a key ticked: tests/keys/test_admin_keys.py covers it in full.
    key = keys.ensure_current_key()
    response = admin_client.post(f"{CHANGELIST}rotate/", follow=True)
    assert "Published a new next key" in response.content.decode()
    assert SigningKey.objects.filter(state="next").count() == 1
    detail = admin_client.get(f"{CHANGELIST}{key.pk}/change/").content.decode()
    assert key.kid in detail
    assert '"d"' not in detail and "private_key" not in detail
