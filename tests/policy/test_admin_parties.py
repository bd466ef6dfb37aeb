"""The party and rule admin pages: parties by name, the read-only client id, the JWK set field
(never ``null``, checked as client authentication reads it, shown one line per key), the
warning and the "rules" column for an actor without rules, rule titles and precedence with
the move controls and the rule list's editable position, and reissuing a client secret."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from delegation_idp import jose
from delegation_idp.models import DelegationRule, Party
from delegation_idp.provider.agents import register_party
from tests.conftest import Agent

PARTIES = "/admin/delegation_idp/party/"
RULES = "/admin/delegation_idp/delegationrule/"


def change_url(party: Party) -> str:
    return reverse("admin:delegation_idp_party_change", args=[party.pk])


def move_url(rule: DelegationRule) -> str:
    return reverse("admin:delegation_idp_delegationrule_move", args=[rule.pk])


def reissue_url(party: Party) -> str:
    return reverse("admin:delegation_idp_party_reissue_secret", args=[party.pk])


@pytest.fixture
def setup(world: Any) -> dict[str, Any]:
    """alpha (two rules), beta (none), the store (a resource server)."""
    alpha, beta = world.agent("alpha"), world.agent("beta")
    store = world.resource("store")
    first = world.rule(alpha, [store], "tasks.read", direct=True, description="alpha reads the store")
    second = world.rule(alpha, [store, beta], "tasks.write", upstream=[beta])
    return {
        "alpha": world.party(alpha),
        "beta": world.party(beta),
        "store": store,
        "first": first,
        "second": second,
        "agents": {"alpha": alpha, "beta": beta},
    }


def party_form(party: Party, **overrides: Any) -> dict[str, Any]:
    """The change form of a party without rules, as its page submits it."""
    data: dict[str, Any] = {
        "uri": party.uri,
        "name": party.name,
        "kind": party.kind,
        "contact": party.contact,
        "enabled": "on" if party.enabled else "",
        "jwks": "",
        "resource_prefixes": party.resource_prefixes,
        "metadata_url": "",
        "client_ids": "{}",
        "delegation_rules-TOTAL_FORMS": "0",
        "delegation_rules-INITIAL_FORMS": "0",
        "delegation_rules-MIN_NUM_FORMS": "0",
        "delegation_rules-MAX_NUM_FORMS": "1000",
        "_save": "Save",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v != "" or k in ("jwks", "contact", "resource_prefixes")}


# -- the party list ----------------------------------------------------------------------


def test_party_list_names_parties_and_counts_their_rules(admin_client, setup):
    page = admin_client.get(PARTIES).content.decode()
    for party in (setup["alpha"], setup["beta"], setup["store"]):
        assert f"<strong>{party.name}</strong>" in page and party.uri in page
    rows = {row.split("</tr>")[0] for row in page.split("<tr")}
    beta_row = next(r for r in rows if setup["beta"].uri in r)
    alpha_row = next(r for r in rows if setup["alpha"].uri in r)
    store_row = next(r for r in rows if setup["store"].uri in r)
    assert "⚠ none" in beta_row and "idp-no-rules" in beta_row
    assert '<td class="field-rule_count">2</td>' in alpha_row and "⚠" not in alpha_row
    assert "not an actor" in store_row
    assert "delegation_idp/admin.css" in page


# -- the party page ----------------------------------------------------------------------


def test_the_client_id_is_read_only_and_the_empty_jwk_set_is_empty(admin_client, setup):
    party = setup["alpha"]
    page = admin_client.get(change_url(party)).content.decode()
    assert f'id="party-client-id">{party.application.client_id}<' in page
    assert 'name="application"' not in page, "no raw, editable client field"
    textarea = page.split('name="jwks"')[1].split("</textarea>")[0]
    assert "null" not in textarea and textarea.rstrip().endswith(">")
    assert "No keys: the client authenticates with its secret." in page


def test_a_resource_server_may_still_link_a_client_by_hand(admin_client, setup):
    page = admin_client.get(change_url(setup["store"])).content.decode()
    assert 'name="application"' in page


def test_the_change_page_lists_its_rules_by_title_in_precedence_order(admin_client, setup):
    page = admin_client.get(change_url(setup["alpha"])).content.decode()
    summary = page.split('id="party-summary"')[1].split("</section>")[0]
    assert summary.index("alpha reads the store") < summary.index("alpha → beta, store")
    assert f"rule {setup['first'].pk}:" not in page
    # audiences and upstream actors by name, linked
    assert f'href="{change_url(setup["beta"])}"><strong>beta</strong>' in summary
    assert 'id="no-rules-warning"' not in page
    # the move controls: POST forms with the CSRF token, the first can't move up
    assert summary.count('name="csrfmiddlewaretoken"') == 2
    assert f'action="{move_url(setup["first"])}"' in summary
    first_row = summary.split(f'data-rule="{setup["first"].pk}"')[1].split("</tr>")[0]
    assert 'value="up" class="idp-move-up"' in first_row and "disabled>↑" in first_row


def test_an_actor_without_rules_is_warned_about(admin_client, setup):
    page = admin_client.get(change_url(setup["beta"])).content.decode()
    assert 'id="no-rules-warning"' in page and "has no delegation rules" in page
    assert 'id="no-rules-warning"' not in admin_client.get(change_url(setup["store"])).content.decode()


@pytest.fixture
def ec_key() -> jose.SigningKey:
    return jose.generate_key("ES256")


def test_a_public_jwk_set_is_saved_and_shown_one_line_per_key(admin_client, setup, ec_key):
    party = setup["beta"]
    jwks = {"keys": [{**ec_key.public_jwk(), "kid": "beta-2026"}]}
    response = admin_client.post(change_url(party), party_form(party, jwks=json.dumps(jwks)))
    assert response.status_code == 302, response.content.decode()[:3000]
    party.refresh_from_db()
    assert party.jwks == jwks
    page = admin_client.get(change_url(party)).content.decode()
    line = page.split('class="idp-jwks"')[1].split("</li>")[0]
    for part in ("beta-2026", "EC P-256", "ES256", "sig"):
        assert part in line
    # the box shows the set as indented JSON, and an empty box clears it
    assert "&quot;keys&quot;: [" in page
    assert admin_client.post(change_url(party), party_form(party, jwks="  ")).status_code == 302
    party.refresh_from_db()
    assert party.jwks is None


def _private(key: jose.SigningKey) -> dict[str, Any]:
    return json.loads(key.jwk.export_private())


@pytest.mark.parametrize(
    "value,message",
    [
        ('{"kty": "EC"}', "A JWK set is a JSON object with a &quot;keys&quot; list"),
        ("[1, 2]", "A JWK set is a JSON object"),
        ("{not json", "Not JSON that a JWK set can be"),
        ('{"keys": [], "keys": []}', "Not JSON that a JWK set can be"),
        ('{"keys": []}', "The set has no keys"),
        ("private", "private key members"),
        ('{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', "symmetric (oct) key"),
        ("duplicate", "another key has the same kid"),
    ],
    ids=[
        "not-a-set",
        "a-list",
        "malformed",
        "duplicate-member",
        "no-keys",
        "private",
        "oct",
        "duplicate-kid",
    ],
)
def test_what_is_not_a_public_jwk_set_is_refused_with_a_clear_error(
    admin_client, setup, ec_key, value, message
):
    party = setup["beta"]
    if value == "private":
        value = json.dumps({"keys": [_private(ec_key)]})
    elif value == "duplicate":
        other = jose.generate_key("ES256")
        value = json.dumps(
            {"keys": [{**ec_key.public_jwk(), "kid": "k"}, {**other.public_jwk(), "kid": "k"}]}
        )
    response = admin_client.post(change_url(party), party_form(party, jwks=value))
    assert response.status_code == 200
    page = response.content.decode()
    errors = page.split('class="errorlist')[1].split("</ul>")[0]
    assert message in errors, errors
    party.refresh_from_db()
    assert party.jwks is None


# -- rules: titles, precedence, move controls ---------------------------------------------


def test_rule_list_titles_rules_and_edits_their_precedence(admin_client, setup):
    page = admin_client.get(RULES).content.decode()
    assert "alpha reads the store" in page and "alpha → beta, store" in page
    assert f"rule {setup['first'].pk} for" not in page
    assert 'name="form-0-position"' in page
    first, second = setup["first"], setup["second"]
    data = {
        "form-TOTAL_FORMS": "2",
        "form-INITIAL_FORMS": "2",
        "form-MIN_NUM_FORMS": "0",
        "form-MAX_NUM_FORMS": "1000",
        "form-0-id": str(first.pk),
        "form-0-position": "5",
        "form-1-id": str(second.pk),
        "form-1-position": "1",
        "_save": "Save",
    }
    response = admin_client.post(RULES, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert list(DelegationRule.objects.values_list("pk", flat=True)) == [second.pk, first.pk]


def test_move_up_and_down(admin_client, setup):
    first, second = setup["first"], setup["second"]
    response = admin_client.post(move_url(second), {"direction": "up", "next": change_url(setup["alpha"])})
    assert response.status_code == 302 and response["Location"] == change_url(setup["alpha"])
    assert list(DelegationRule.objects.values_list("pk", "position")) == [(second.pk, 1), (first.pk, 2)]
    page = admin_client.get(response["Location"]).content.decode()
    assert "is now number 1 in precedence" in page
    admin_client.post(move_url(second), {"direction": "down"})
    assert list(DelegationRule.objects.values_list("pk", flat=True)) == [first.pk, second.pk]


def test_move_refuses_get_bad_directions_and_foreign_next(admin_client, setup):
    rule = setup["second"]
    assert admin_client.get(move_url(rule) + "?direction=up").status_code == 405
    assert admin_client.post(move_url(rule), {"direction": "sideways"}).status_code == 400
    response = admin_client.post(move_url(rule), {"direction": "up", "next": "https://evil.example.net/"})
    assert response["Location"].startswith(change_url(setup["alpha"]))
    assert DelegationRule.objects.get(pk=rule.pk).position == 1


def test_move_needs_the_change_permission_and_the_csrf_token(setup, django_user_model):
    rule = setup["second"]
    anonymous = Client()
    assert anonymous.post(move_url(rule), {"direction": "up"}).status_code == 302  # to the login page
    viewer = django_user_model.objects.create_user("viewer", password="pw-viewer-123", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_delegationrule"))
    staff = Client()
    staff.force_login(viewer)
    assert staff.post(move_url(rule), {"direction": "up"}).status_code == 403
    admin = django_user_model.objects.create_superuser("root2", "root2@example.com", "pw-root-123456")
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin)
    assert strict.post(move_url(rule), {"direction": "up"}).status_code == 403
    assert DelegationRule.objects.get(pk=rule.pk).position == 2


def test_the_read_only_rules_page_names_parties_and_has_no_controls(admin_client, setup):
    url = reverse("admin:delegation_idp_party_rules", args=[setup["beta"].pk])
    page = admin_client.get(url).content.decode()
    assert "alpha → beta, store" in page and "<strong>alpha</strong>" in page
    assert "<form" not in page.split('id="content-main"')[1]


# -- reissuing a client secret ------------------------------------------------------------


@pytest.fixture
def service(world: Any) -> tuple[Party, Agent]:
    """A client-credentials agent (no redirect URIs) with its secret."""
    reg = register_party("https://service.example.com", "Service", Party.AGENT)
    party = reg.party
    return party, Agent("service", reg.client_id, reg.client_secret or "", party.uri, "")


def credentials_work(token_endpoint: Any, agent: Agent) -> bool:
    status = token_endpoint({"grant_type": "client_credentials"}, agent).status_code
    assert status in (200, 401), status
    return status == 200


def test_reissue_asks_then_shows_the_new_secret_once(admin_client, service, token_endpoint, caplog):
    party, old = service
    caplog.set_level(logging.DEBUG)
    change = admin_client.get(change_url(party)).content.decode()
    assert f'href="{reissue_url(party)}"' in change
    # GET is the confirmation page: nothing is reissued.
    confirm = admin_client.get(reissue_url(party))
    assert confirm.status_code == 200 and 'id="confirm-reissue"' in confirm.content.decode()
    assert credentials_work(token_endpoint, old)
    # POST without the confirmation: the question again.
    assert 'id="confirm-reissue"' in admin_client.post(reissue_url(party)).content.decode()
    assert credentials_work(token_endpoint, old)

    response = admin_client.post(reissue_url(party), {"confirm": "yes"})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    assert "has a new client secret" in page
    secret = page.split('id="client-secret">')[1].split("<")[0]
    new = Agent("service", old.client_id, secret, party.uri, "")
    assert secret != old.client_secret and len(secret) >= 40
    assert not credentials_work(token_endpoint, old), "the old secret is refused"
    assert credentials_work(token_endpoint, new)
    assert secret not in admin_client.get(change_url(party)).content.decode(), "shown once"
    party.application.refresh_from_db()
    assert secret not in party.application.client_secret, "stored hashed"
    assert all(secret not in record.getMessage() for record in caplog.records), "never logged"


def test_reissue_needs_staff_the_change_permission_and_csrf(service, token_endpoint, django_user_model):
    party, old = service
    assert Client().post(reissue_url(party), {"confirm": "yes"}).status_code == 302  # to the login page
    viewer = django_user_model.objects.create_user("viewer", password="pw-viewer-123", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_party"))
    staff = Client()
    staff.force_login(viewer)
    assert staff.post(reissue_url(party), {"confirm": "yes"}).status_code == 403
    assert staff.get(reissue_url(party)).status_code == 403
    root = django_user_model.objects.create_superuser("root3", "root3@example.com", "pw-root-123456")
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(root)
    assert strict.post(reissue_url(party), {"confirm": "yes"}).status_code == 403
    assert credentials_work(token_endpoint, old)


def test_the_reissue_action_asks_for_one_party(admin_client, service, setup, token_endpoint):
    party, old = service
    response = admin_client.post(PARTIES, {"action": "reissue_secret", "_selected_action": [party.pk]})
    assert response.status_code == 200 and 'id="confirm-reissue"' in response.content.decode()
    assert credentials_work(token_endpoint, old), "the action only asks"
    several = admin_client.post(
        PARTIES, {"action": "reissue_secret", "_selected_action": [party.pk, setup["alpha"].pk]}, follow=True
    )
    assert "one party&#x27;s secret at a time" in several.content.decode()
    store = admin_client.post(
        PARTIES, {"action": "reissue_secret", "_selected_action": [setup["store"].pk]}, follow=True
    )
    assert "has no client secret to reissue" in store.content.decode()


def test_a_party_without_a_secret_has_no_reissue(admin_client, setup):
    store = setup["store"]
    assert f'href="{reissue_url(store)}"' not in admin_client.get(change_url(store)).content.decode()
    response = admin_client.post(reissue_url(store), {"confirm": "yes"})
    assert response.status_code == 302 and response["Location"] == change_url(store)
