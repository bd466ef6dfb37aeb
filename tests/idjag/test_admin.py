"""Point 3: external authorization servers and trusted issuers in the admin, and ID-JAG
requests on the dry-run page and ``manage.py explain``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from delegation_idp.models import AuditEvent, Party, TokenLineage, TrustedIssuer
from tests.cli.conftest import run
from tests.idjag.conftest import AS_ISSUER

ADD_URL = "/admin/delegation_idp/party/add/"
TRY_URL = "/admin/delegation_idp/party/try/"
INLINE = {
    "delegation_rules-TOTAL_FORMS": "0",
    "delegation_rules-INITIAL_FORMS": "0",
    "delegation_rules-MIN_NUM_FORMS": "0",
    "delegation_rules-MAX_NUM_FORMS": "1000",
}


def add_party(admin_client: Any, **fields: Any) -> Any:
    data = {"kind": Party.AGENT, "enabled": "on", "contact": "", "resource_prefixes": "", **INLINE}
    data.update(fields)
    return admin_client.post(ADD_URL, data)


def test_an_external_authorization_server_is_added_without_a_client(admin_client, db):
    response = add_party(
        admin_client,
        uri="https://as.partner.example.net",
        name="Partner AS",
        kind=Party.AUTHORIZATION_SERVER,
        resource_prefixes="https://mcp.partner.example.net",
        metadata_url="https://as.partner.example.net/.well-known/oauth-authorization-server",
        client_ids=json.dumps({"https://agent1.example.com": "agent-one"}),
    )
    assert response.status_code == 302, response.content
    party = Party.objects.get(uri="https://as.partner.example.net")
    assert party.application is None
    assert party.client_ids == {"https://agent1.example.com": "agent-one"}
    assert party.client_id_for("https://agent1.example.com", "own") == "agent-one"
    assert party.client_id_for("https://agent2.example.com", "own") == "own"
    change = admin_client.get(f"/admin/delegation_idp/party/{party.pk}/change/")
    assert b"metadata_url" in change.content and b"client_ids" in change.content


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": Party.AGENT, "metadata_url": "https://as.example.net/.well-known/x"},
        {"kind": Party.AUTHORIZATION_SERVER, "client_ids": json.dumps({"https://a.example.com": 7})},
        {"kind": Party.AUTHORIZATION_SERVER, "metadata_url": "http://as.example.net/metadata"},
    ],
)
def test_nonsense_is_refused_and_nothing_is_created(admin_client, db, fields):
    response = add_party(admin_client, uri="https://x.example.net", name="X", **fields)
    assert response.status_code == 200  # the form again, with its error
    assert not Party.objects.filter(uri="https://x.example.net").exists()


@pytest.mark.usefixtures("id_jag_rule")
@pytest.mark.parametrize(
    ("kind", "target", "reason"),
    [
        ("id_jag", AS_ISSUER, "allowed"),
        ("exchange", AS_ISSUER, "id_jag_only_target"),
        ("id_jag", "https://agent2.example.com", "id_jag_not_an_authorization_server"),
    ],
)
def test_the_dry_run_covers_id_jag_requests(admin_client, cast, kind, target, reason):
    before = (AuditEvent.objects.count(), TokenLineage.objects.count())
    query = {
        "request_kind": kind,
        "actor": Party.objects.get(uri=cast["agent1"].uri).pk,
        "audiences": [Party.objects.get(uri=target).pk],
        "subject_scope": "tasks.read tasks.write",
    }
    response = admin_client.get(TRY_URL, query)
    assert response.status_code == 200
    assert response.context["form"].is_valid(), response.context["form"].errors
    assert response.context["result"]["reason"] == reason
    assert (AuditEvent.objects.count(), TokenLineage.objects.count()) == before


@pytest.mark.usefixtures("id_jag_rule")
def test_explain_asks_for_an_id_jag(cast):
    args = ("explain", cast["agent1"].uri, "--audience", AS_ISSUER, "--scope", "tasks.read", "--json")
    assert run(*args, "--id-jag").json()["reason"] == "allowed"
    assert run(*args).json()["reason"] == "id_jag_only_target"


def test_a_trusted_issuer_is_registered_in_the_admin(admin_client, cast):
    from oauth2_provider.models import get_application_model

    app = get_application_model().objects.get(client_id=cast["agent2"].client_id)
    service = Party.objects.get(uri=cast.resource_server)
    data = {
        "issuer": "https://idp.partner.example.net",
        "name": "Partner IdP",
        "enabled": "on",
        "jwks_uri": "https://idp.partner.example.net/jwks",
        "algorithms": "ES256",
        "clients": [app.pk],
        "services": [service.pk],
        "user_mapping": TrustedIssuer.JUST_IN_TIME,
        "subject_claim": "sub",
        "user_field": "",
    }
    response = admin_client.post("/admin/delegation_idp/trustedissuer/add/", data)
    assert response.status_code == 302, response.content
    issuer = TrustedIssuer.objects.get(issuer="https://idp.partner.example.net")
    assert list(issuer.clients.all()) == [app]
    assert list(issuer.services.all()) == [service]
    refused = admin_client.post(
        "/admin/delegation_idp/trustedissuer/add/",
        {**data, "issuer": "https://idp.other.example.net", "algorithms": "HS256"},
    )
    assert refused.status_code == 200
    assert not TrustedIssuer.objects.filter(issuer="https://idp.other.example.net").exists()
    assert admin_client.get("/admin/delegation_idp/trustedissuer/").status_code == 200
    assert admin_client.get("/admin/delegation_idp/externalidentity/").status_code == 200


def test_a_user_field_the_user_model_lacks_is_refused(admin_client, db):
    from django.core.exceptions import ValidationError

    issuer = TrustedIssuer(
        issuer="https://idp.x.example.net",
        name="X",
        jwks_uri="https://idp.x.example.net/jwks",
        user_field="no_such_field",
    )
    with pytest.raises(ValidationError):
        issuer.full_clean()
